import { lstat, mkdir, readFile, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderCommand } from '../../builder/cli/render.ts';
import { runTool } from '../../builder/common/exec.ts';
import type { Inventory } from '../../builder/inventory/types.ts';
import { FIXTURE_OVERLAYS, FIXTURE_ROLES, sevenNodeInventory, withTempDir } from './fixture.ts';

const mode = async (p: string) => (await lstat(p)).mode & 0o777;

describe('pibake render (renderCommand)', () => {
  it('writes rootfs, bootfs, modes.txt and known_hosts per node; secrets private on the host too', async () => {
    await withTempDir(async (dir) => {
      const inventory = sevenNodeInventory(dir);
      const load = async (): Promise<Inventory> => inventory;
      const out = path.join(dir, 'out');
      const options = { config: inventory.file, out, generation: 'trixie' as const, roles: FIXTURE_ROLES, overlays: FIXTURE_OVERLAYS };
      await writeFile(path.join(dir, 'cmdline.txt'), 'console=tty1 root=PARTUUID=12345678-02 rootwait resize\n');
      const written = await renderCommand({ ...options, cmdline: path.join(dir, 'cmdline.txt') }, load);
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
      await renderCommand({ ...options, node: ['lb'] }, load);
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
      const options = { config: inventory.file, out, generation: 'bookworm' as const, roles: FIXTURE_ROLES, overlays: FIXTURE_OVERLAYS };
      await expect(renderCommand({ ...options, node: ['db1'] }, load)).rejects.toThrow(/not empty and not an earlier pibake render/);
      expect(await readFile(path.join(out, 'db1', 'precious.txt'), 'utf8')).toBe('keep me');
      await expect(renderCommand({ ...options, node: ['ghost'] }, load)).rejects.toThrow(/no node named "ghost"/);
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
