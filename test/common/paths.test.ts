/**
 * `pibake render` shows what `pibake build` bakes: for a project with its own roles/ and overlays/
 * beside the inventory, both load them (through one resolver), and every entry render writes is in
 * the built card with the same kind, mode, owner and bytes (read back with debugfs and mtools).
 */
import { execa } from 'execa';
import { cp, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCluster } from '../../builder/bake/build.ts';
import { renderCommand } from '../../builder/cli/render.ts';
import { packageRoot, roleFolders } from '../../builder/common/paths.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { SMALL_CLUSTER_NODES, buildOptions, smallProject } from '../helpers/build-project.ts';
import { debugfsCat, mtype, partitionOffsets, scratchDir } from '../helpers/image.ts';

let scratch: Awaited<ReturnType<typeof scratchDir>>;
let config: string;
let base: string;

beforeAll(async () => {
  scratch = await scratchDir('pibake-paths-');
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

describe('roles and overlays beside the inventory', () => {
  it('are the folders both build and render use; explicit folders win', () => {
    const dir = path.dirname(config);
    expect(roleFolders(config)).toEqual({ roles: path.join(dir, 'roles'), overlays: path.join(dir, 'overlays') });
    expect(roleFolders(path.join(scratch.dir, 'cluster.yaml'))).toEqual({ roles: path.join(packageRoot, 'roles'), overlays: path.join(packageRoot, 'overlays') });
    expect(roleFolders(config, { roles: '/r' })).toEqual({ roles: '/r', overlays: path.join(dir, 'overlays') });
  });

  it('render writes what build bakes, entry for entry', async () => {
    const result = await buildCluster(buildOptions(config, base, path.join(scratch.dir, 'cache')));
    const out = path.join(scratch.dir, 'rendered');
    await renderCommand({ config, out, generation: 'trixie', packages: 'online' });
    for (const name of ['lb1', 'web1', 'gw1']) {
      const image = path.join(result.dir, `${name}.img`);
      const node = path.join(out, name);
      const { root, boot } = await partitionOffsets(image);
      // The build id (node.json, the instance-id) is still made two ways, from the build's plan and
      // from the rendered content (issue 12, item 1): compared with each side's id masked.
      const renderedId = buildIdIn(await readFile(path.join(node, 'rootfs/etc/pibake/node.json')));
      const builtId = buildIdIn(await debugfsCat(image, root, '/etc/pibake/node.json'));
      const same = (built: Buffer, rendered: Buffer) => masked(built, builtId) === masked(rendered, renderedId);

      const entries = (await readFile(path.join(node, 'modes.txt'), 'utf8')).trim().split('\n').map((line) => {
        const [mode, uid, gid, kind, file] = line.split(' ') as [string, string, string, string, string];
        return { expected: `${kind} ${mode} ${uid}:${gid}`, kind, file };
      });
      const built = await readBack(image, root, entries, path.join(scratch.dir, `dump-${name}`));
      const differing: string[] = [];
      for (const [i, { expected, kind, file }] of entries.entries()) {
        const alike = built.stats[i] === expected &&
          (kind !== 'file' || same(await readFile(path.join(built.dir, String(i))), await readFile(path.join(node, 'rootfs', file))));
        if (!alike) differing.push(`${file}: ${built.stats[i] === expected ? 'other bytes' : `built ${built.stats[i]}, rendered ${expected}`}`);
      }
      for (const file of await readdir(path.join(node, 'bootfs'))) {
        if (!same(await mtype(image, boot, file), await readFile(path.join(node, 'bootfs', file)))) differing.push(`boot:${file}`);
      }
      expect({ name, differing }).toEqual({ name, differing: [] });
      expect(entries.length).toBeGreaterThan(10);
    }
    expect(await readFile(path.join(out, 'gw1/rootfs/etc/gateway/token'), 'utf8')).toBe('gateway of small\n');
    expect(await readFile(path.join(out, 'gw1/modes.txt'), 'utf8')).toContain('0640 0 0 file /etc/gateway/token\n');
  });
});

function buildIdIn(nodeJson: Buffer): string {
  return (JSON.parse(nodeJson.toString('utf8')) as { buildId: string }).buildId;
}

/** The text with a build id and its 12-digit short form (the instance-id's) masked. */
function masked(data: Buffer, buildId: string): string {
  return data.toString('latin1').replaceAll(buildId, '<build id>').replaceAll(buildId.slice(0, 12), '<short id>');
}

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
