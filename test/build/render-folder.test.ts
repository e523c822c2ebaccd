import { execa } from 'execa';
import { cp, lstat, mkdir, readFile, readdir, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCluster } from '../../builder/build/build-cluster.ts';
import { renderFolder } from '../../builder/build/render-folder.ts';
import { runTool } from '../../builder/common/exec.ts';
import { packageRoot } from '../../builder/common/paths.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import type { Inventory } from '../../builder/inventory/types.ts';
import { SMALL_CLUSTER_NODES, buildOptions, smallProject } from '../helpers/build-project.ts';
import { debugfsCat, mtype, partitionOffsets, scratchDir } from '../helpers/image.ts';
import { FIXTURE_OVERLAYS, FIXTURE_ROLES, sevenNodeInventory, withTempDir } from '../render/fixture.ts';

const mode = async (p: string) => (await lstat(p)).mode & 0o777;

describe('pibake render (renderFolder)', () => {
  it('writes rootfs, bootfs, modes.txt and known_hosts per node; secrets private on the host too', async () => {
    await withTempDir(async (dir) => {
      const inventory = sevenNodeInventory(dir);
      const load = async (): Promise<Inventory> => inventory;
      const out = path.join(dir, 'out');
      const options = { config: inventory.file, out, generation: 'trixie' as const, folders: { roles: FIXTURE_ROLES, overlays: FIXTURE_OVERLAYS }, load };
      await writeFile(path.join(dir, 'cmdline.txt'), 'console=tty1 root=PARTUUID=12345678-02 rootwait resize\n');
      const written = await renderFolder({ ...options, cmdline: path.join(dir, 'cmdline.txt') });
      expect(written).toEqual(inventory.nodes.map((n) => path.join(out, n.name)));
      const lb = path.join(out, 'lb');
      expect(await mode(path.join(lb, 'rootfs/etc/ssh/ssh_host_ed25519_key'))).toBe(0o600);
      expect(await mode(path.join(lb, 'rootfs/etc/haproxy/haproxy.cfg'))).toBe(0o600); // 0640 in the image, secret inside
      expect(await mode(path.join(lb, 'rootfs/usr/local/lib/pibake/ownership.sh'))).toBe(0o755);
      expect(await readlink(path.join(lb, 'rootfs/etc/systemd/system/regenerate_ssh_host_keys.service'))).toBe('/dev/null');
      const modes = await readFile(path.join(lb, 'modes.txt'), 'utf8');
      expect(modes).toContain('0640 0 0 file /etc/haproxy/haproxy.cfg\n');
      expect(modes).toContain('0600 0 0 file /etc/ssh/ssh_host_ed25519_key\n');
      expect(modes).toContain('0777 0 0 symlink /etc/systemd/system/regenerate_ssh_host_keys.service\n');
      const meta = await readFile(path.join(lb, 'bootfs/meta-data'), 'utf8');
      const id = /instance-id: (lb-[0-9a-f]{12})\n/.exec(meta)?.[1];
      expect(id).toBeDefined();
      expect(await readFile(path.join(lb, 'bootfs/cmdline.txt'), 'utf8')).toBe(`console=tty1 root=PARTUUID=12345678-02 rootwait resize ds=nocloud;i=${id} cfg80211.ieee80211_regdom=DE\n`);
      expect(await readFile(path.join(lb, 'boot-edits.txt'), 'utf8')).toBe(`cmdline.txt: cmdline: set ds=nocloud;i=${id}\ncmdline.txt: cmdline: set cfg80211.ieee80211_regdom=DE\n`);
      const known = await readFile(path.join(out, 'known_hosts'), 'utf8');
      expect(known.split('\n').filter(Boolean)).toHaveLength(7);
      expect(known).toMatch(/^lb,lb\.pilab\.lan,10\.0\.0\.10 ssh-ed25519 AAAA\S+\n/);

      // A second render replaces the earlier one and gives the same instance id (same content).
      await renderFolder({ ...options, nodes: ['lb'] });
      expect(await readFile(path.join(lb, 'bootfs/meta-data'), 'utf8')).toBe(meta);
      await expect(lstat(path.join(lb, 'bootfs/cmdline.txt'))).rejects.toThrow();
    });
  });

  it('refuses to replace a folder that is not an earlier render, and unknown nodes', async () => {
    await withTempDir(async (dir) => {
      const inventory = sevenNodeInventory(dir);
      const load = async (): Promise<Inventory> => inventory;
      const out = path.join(dir, 'out');
      await mkdir(path.join(out, 'db1'), { recursive: true });
      await writeFile(path.join(out, 'db1', 'precious.txt'), 'keep me');
      const options = { config: inventory.file, out, generation: 'bookworm' as const, folders: { roles: FIXTURE_ROLES, overlays: FIXTURE_OVERLAYS }, load };
      await expect(renderFolder({ ...options, nodes: ['db1'] })).rejects.toThrow(/not empty and not an earlier pibake render/);
      expect(await readFile(path.join(out, 'db1', 'precious.txt'), 'utf8')).toBe('keep me');
      await expect(renderFolder({ ...options, nodes: ['ghost', 'db1', 'phantom'] })).rejects.toThrow(/no node named ghost, phantom in /);
    });
  });
});

describe('pibake render (command line, real inventory loader)', () => {
  const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

  it('renders the shipped cluster.yaml with the fixture roles, and prints errors as single lines', async () => {
    await withTempDir(async (dir) => {
      const config = path.join(dir, 'cluster.yaml');
      // The fixture roles still have a fixed primary: give it web1, and the other db nodes the replica role.
      const shipped = await readFile(path.join(repo, 'cluster.yaml'), 'utf8');
      await writeFile(config, shipped.replace('web1, role: db', 'web1, role: primary').replace(/(web\d), role: db/g, '$1, role: replica'));
      const out = path.join(dir, 'out');
      const args = [path.join(repo, 'bin/pibake.js'), 'render', '--config', config, '--out', out, '--roles', FIXTURE_ROLES, '--overlays', FIXTURE_OVERLAYS];
      const { stdout } = await runTool('node', args);
      const nodes = stdout.trim().split('\n').map((l) => path.basename(l));
      expect(nodes.length).toBeGreaterThanOrEqual(3);
      for (const node of nodes) {
        const userData = path.join(out, node, 'bootfs/user-data');
        const result = await runTool('cloud-init', ['schema', '-c', userData], { reject: false, all: true });
        expect(result.exitCode, String(result.all)).toBe(0);
        expect(await mode(path.join(out, node, 'rootfs/etc/ssh/ssh_host_ed25519_key'))).toBe(0o600);
      }
      expect(await mode(path.join(dir, 'cluster.secrets.yaml'))).toBe(0o600);
      const bad = await runTool('node', [...args.slice(0, 2), '--config', path.join(dir, 'missing.yaml'), '--out', out, '--roles', FIXTURE_ROLES, '--overlays', FIXTURE_OVERLAYS], { reject: false });
      expect(bad.exitCode).toBe(1);
      expect(bad.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^error: .*missing\.yaml/)]);
    });
  });
});

/**
 * `pibake render` shows what `pibake build` bakes: for a project with its own roles/ and overlays/
 * beside the inventory and the build's base, every entry render writes is in the built card with
 * the same kind, mode, owner and bytes, build id and instance-id included (read back with debugfs
 * and mtools), and the card holds no rendered file render left out (its own manifest lists them).
 */
describe('pibake render and pibake build of the same project', () => {
  let scratch: Awaited<ReturnType<typeof scratchDir>>;
  let config: string;
  let base: string;

  beforeAll(async () => {
    scratch = await scratchDir('pibake-render-build-');
    base = path.join(scratch.dir, 'base.img');
    await synthesizeRaspiosImage({ path: base, generation: 'trixie', sizeMiB: 160, bootMiB: 64 });
    // pibake's roles and overlays copied beside the inventory, plus the project's own role
    // "gateway" (pibake ships none by that name) and its overlay.
    const dir = path.join(scratch.dir, 'project');
    config = await smallProject(dir, [...SMALL_CLUSTER_NODES, '  - { name: gw1, role: gateway, ip: 10.0.0.12 }']);
    await cp(path.join(packageRoot, 'roles'), path.join(dir, 'roles'), { recursive: true });
    await cp(path.join(packageRoot, 'overlays'), path.join(dir, 'overlays'), { recursive: true });
    await writeFile(path.join(dir, 'roles/gateway.yaml'), [
      'description: the project\'s own role',
      'overlays: [common, gateway]',
      'firstboot: [pibake-ownership.service]',
      'files:',
      '  /etc/gateway/token: { mode: "0640", owner: root, group: root }',
      '',
    ].join('\n'));
    await mkdir(path.join(dir, 'overlays/gateway/etc/gateway'), { recursive: true });
    await writeFile(path.join(dir, 'overlays/gateway/etc/gateway/token.hbs'), 'gateway of {{cluster.name}}\n');
  }, 120_000);
  afterAll(async () => scratch?.cleanup());

  it('give identical trees, entry for entry, build id included', async () => {
    const cacheDir = path.join(scratch.dir, 'cache');
    const result = await buildCluster(buildOptions(config, base, cacheDir));
    const out = path.join(scratch.dir, 'rendered');
    await renderFolder({ config, out, base, cacheDir, packages: 'online' });
    for (const name of ['lb1', 'web1', 'gw1']) {
      const image = path.join(result.dir, `${name}.img`);
      const node = path.join(out, name);
      const { root, boot } = await partitionOffsets(image);

      const entries = (await readFile(path.join(node, 'modes.txt'), 'utf8')).trim().split('\n').map((line) => {
        const [mode, uid, gid, kind, file] = line.split(' ') as [string, string, string, string, string];
        return { expected: `${kind} ${mode} ${uid}:${gid}`, kind, file };
      });
      const built = await readBack(image, root, entries, path.join(scratch.dir, `dump-${name}`));
      const differing: string[] = [];
      for (const [i, { expected, kind, file }] of entries.entries()) {
        const alike = built.stats[i] === expected &&
          (kind !== 'file' || (await readFile(path.join(built.dir, String(i)))).equals(await readFile(path.join(node, 'rootfs', file))));
        if (!alike) differing.push(`${file}: ${built.stats[i] === expected ? 'other bytes' : `built ${built.stats[i]}, rendered ${expected}`}`);
      }
      const bootFiles = await readdir(path.join(node, 'bootfs'));
      for (const file of bootFiles) {
        if (!(await mtype(image, boot, file)).equals(await readFile(path.join(node, 'bootfs', file)))) differing.push(`boot:${file}`);
      }
      const cmdline = (await mtype(image, boot, 'cmdline.txt')).toString('utf8');
      const edits = (await readFile(path.join(node, 'boot-edits.txt'), 'utf8')).trim().split('\n');
      for (const edit of edits) {
        const token = /^cmdline\.txt: cmdline: set (\S+)$/.exec(edit)?.[1];
        if (!token || !cmdline.split(/\s+/).includes(token)) differing.push(`boot-edit: ${edit}`);
      }
      expect({ name, differing }).toEqual({ name, differing: [] });
      expect(entries.length).toBeGreaterThan(10);
      expect(edits.some((e) => e.includes('ds=nocloud;i='))).toBe(true);

      // Nothing rendered for the card is missing from the folder: the card's manifest lists every
      // file baked from the rendering, but those the build id is bound into (checked above).
      const card = JSON.parse((await debugfsCat(image, root, '/etc/pibake/manifest.json')).toString('utf8')) as { files: Record<string, string> };
      const bound = ['root:/etc/pibake/node.json', 'boot:meta-data', 'boot-edit:cmdline.txt'];
      const folder = [...entries.map((e) => `root:${e.file}`), ...bootFiles.map((f) => `boot:${f}`), 'boot-edit:cmdline.txt'];
      expect([...new Set([...Object.keys(card.files), ...bound])].sort()).toEqual(folder.sort());
    }
    expect(await readFile(path.join(out, 'gw1/rootfs/etc/gateway/token'), 'utf8')).toBe('gateway of small\n');
    expect(await readFile(path.join(out, 'gw1/modes.txt'), 'utf8')).toContain('0640 0 0 file /etc/gateway/token\n');
  });
});

/**
 * Kind, mode and owner of each entry in the image's root filesystem ("file 0640 0:0", as in
 * modes.txt) and each file's bytes (dumped to `dir`/<index>): one debugfs run per image.
 */
async function readBack(image: string, root: number, entries: { kind: string; file: string }[], dir: string): Promise<{ stats: string[]; dir: string }> {
  await mkdir(dir);
  const commands = entries.flatMap(({ kind, file }, i) => [`stat "${file}"`, ...(kind === 'file' ? [`dump "${file}" "${path.join(dir, String(i))}"`] : [])]);
  const script = path.join(dir, 'commands');
  await writeFile(script, `${commands.join('\n')}\n`);
  const { stdout } = await execa('debugfs', ['-f', script, `${image}?offset=${root}`], { stderr: 'ignore' });
  // debugfs -f echoes each command as "debugfs: <command>" before its output.
  const stats = stdout.split(/^debugfs: /m).filter((part) => part.startsWith('stat ')).map((part) => {
    const [, type, mode] = /Type: (\w+)\s+Mode:\s+(\d+)/.exec(part) ?? [];
    const kind = { regular: 'file', directory: 'dir', symlink: 'symlink' }[type ?? ''] ?? `missing`;
    return `${kind} ${mode?.slice(-4)} ${/User:\s+(\d+)/.exec(part)?.[1]}:${/Group:\s+(\d+)/.exec(part)?.[1]}`;
  });
  return { stats, dir };
}
