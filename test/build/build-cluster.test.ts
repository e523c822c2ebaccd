/**
 * End to end: pibake build on synthesized Raspberry Pi OS bases of both generations, judged by
 * fsck, sfdisk, mtools, debugfs, bmaptool and sha256sum.
 */
import { execa } from 'execa';
import { load } from 'js-yaml';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCluster, type BuildOptions } from '../../builder/build/build-cluster.ts';
import { lineReporter } from '../../builder/build/report.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { debugfs, ext4Stat, fsckExt4, fsckFat, mtype, sfdiskJson } from '../helpers/oracles.ts';

const NODES = [
  '  - { name: lb1, role: lb, ip: 10.0.0.10 }',
  '  - { name: web1, role: db, ip: 10.0.0.11 }',
  '  - { name: web2, role: db, ip: 10.0.0.12 }',
  '  - { name: web3, role: db, ip: 10.0.0.13 }',
];

function inventoryText(nodes: string[]): string {
  return [
    'cluster: { name: testcl, domain: testcl.lan }',
    'network: { cidr: 10.0.0.0/24, gateway: 10.0.0.1, dns: [10.0.0.1] }',
    'base: { path: ./unused.img }',
    'admin:',
    '  user: pi',
    '  generate_ssh_key: true',
    'nodes:',
    ...nodes,
    '',
  ].join('\n');
}

let work: string;
const bases: Record<'trixie' | 'bookworm', string> = { trixie: '', bookworm: '' };
const EPOCH = '1767225600'; // 2026-01-01T00:00:00Z

async function project(name: string, nodes = NODES): Promise<string> {
  const dir = path.join(work, name);
  await execa('mkdir', ['-p', dir]);
  const config = path.join(dir, 'cluster.yaml');
  await writeFile(config, inventoryText(nodes));
  return config;
}

function options(config: string, base: string, extra: Partial<BuildOptions> = {}): BuildOptions {
  const log: string[] = [];
  return {
    config,
    base,
    out: path.join(path.dirname(config), 'output'),
    jobs: 2,
    bmap: false,
    force: false,
    // Synthesized bases carry no apt sources: the carried-packages path is test/carry's.
    packages: 'online',
    cacheDir: path.join(work, 'cache'),
    reporter: lineReporter((line) => log.push(line)),
    ...extra,
  };
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pibake-build-'));
  process.env.SOURCE_DATE_EPOCH = EPOCH;
  for (const generation of ['trixie', 'bookworm'] as const) {
    bases[generation] = path.join(work, `${generation}.img`);
    await synthesizeRaspiosImage({ path: bases[generation], generation, sizeMiB: 400, bootMiB: 64, diskId: '5e3da7a1' });
  }
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('pibake build (trixie base)', () => {
  let config: string;
  let dir: string;

  beforeAll(async () => {
    config = await project('trixie');
    const result = await buildCluster(options(config, bases.trixie, { bmap: true, compress: 'zstd' }));
    dir = result.dir;
    expect(result.baked.sort()).toEqual(['lb1', 'web1', 'web2', 'web3']);
  });

  it('writes every output the operator needs', async () => {
    const names = (await readdir(dir)).sort();
    for (const node of ['lb1', 'web1', 'web2', 'web3']) {
      expect(names).toContain(`${node}.img`);
      expect(names).toContain(`${node}.img.zst`);
      expect(names).toContain(`${node}.img.bmap`);
    }
    expect(names).toEqual(expect.arrayContaining(['manifest.json', 'SHA256SUMS', 'known_hosts']));
    expect(names.filter((n) => n.endsWith('.partial'))).toEqual([]);
    await execa('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: dir });
    const knownHosts = await readFile(path.join(dir, 'known_hosts'), 'utf8');
    expect(knownHosts.trim().split('\n')).toHaveLength(4);
  });

  it('gives images that are fsck-clean on both partitions', async () => {
    for (const node of ['lb1', 'web1', 'web2', 'web3']) {
      const image = path.join(dir, `${node}.img`);
      await fsckFat(image);
      await fsckExt4(image);
    }
  });

  it('bakes the rendered haproxy.cfg into the load balancer only, with its mode', async () => {
    const lb = path.join(dir, 'lb1.img');
    const cfg = await debugfs(lb, 'cat /etc/haproxy/haproxy.cfg');
    for (const ip of ['10.0.0.11', '10.0.0.12', '10.0.0.13']) expect(cfg).toContain(ip);
    const stat = await ext4Stat(lb, '/etc/haproxy/haproxy.cfg');
    expect(stat.uid).toBe(0);
    expect(stat.mode).toMatch(/^0?640$/);
    expect(await debugfs(path.join(dir, 'web1.img'), 'stat /etc/haproxy/haproxy.cfg')).not.toMatch(/Inode:/);
  });

  it('puts each node its own seeds and a manifest, and leaves machine-id for first boot', async () => {
    for (const [node, ip] of [['lb1', '10.0.0.10'], ['web2', '10.0.0.12']] as const) {
      const image = path.join(dir, `${node}.img`);
      expect(await mtype(image, 'user-data')).toMatch(new RegExp(`hostname: ${node}\\b`));
      expect(await mtype(image, 'network-config')).toContain(`${ip}/24`);
      expect(await mtype(image, 'meta-data')).toMatch(new RegExp(`instance-id: ${node}-`));
      const manifest = JSON.parse(await debugfs(image, 'cat /etc/pibake/manifest.json')) as { node: string; digest: string };
      expect(manifest.node).toBe(node);
      // pibake status checks the card's digest against the build's record of it.
      const built = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as { nodes: Record<string, { publicDigest: string; digest: string }> };
      expect(manifest.digest).toBe(built.nodes[node]?.publicDigest);
      expect(manifest.digest).not.toBe(built.nodes[node]?.digest); // that one includes the secret values
      expect((await debugfs(image, 'cat /etc/machine-id')).trim()).toBe('uninitialized');
    }
  });

  it('keeps PARTUUIDs in agreement across MBR, cmdline.txt and fstab, distinct per card', async () => {
    const ids = new Set<string>();
    for (const node of ['lb1', 'web1', 'web2', 'web3']) {
      const image = path.join(dir, `${node}.img`);
      const id = (await sfdiskJson(image)).id.replace(/^0x/, '');
      ids.add(id);
      expect(await mtype(image, 'cmdline.txt')).toContain(`root=PARTUUID=${id}-02`);
      const fstab = await debugfs(image, 'cat /etc/fstab');
      expect(fstab).toContain(`PARTUUID=${id}-01`);
      expect(fstab).toContain(`PARTUUID=${id}-02`);
    }
    expect(ids.size).toBe(4);
  });

  it('puts no secret in any output beside the images, nor on any boot partition', async () => {
    const secretsFile = path.join(path.dirname(config), 'cluster.secrets.yaml');
    const { mode } = await import('node:fs/promises').then((fs) => fs.stat(secretsFile));
    expect(mode & 0o777).toBe(0o600);
    const doc = load(await readFile(secretsFile, 'utf8')) as { secrets: Record<string, string> };
    const values = Object.values(doc.secrets);
    expect(values.length).toBeGreaterThanOrEqual(3);
    const texts: string[] = [];
    for (const name of ['manifest.json', 'SHA256SUMS', 'known_hosts']) texts.push(await readFile(path.join(dir, name), 'utf8'));
    for (const node of ['lb1', 'web1', 'web2', 'web3']) {
      const image = path.join(dir, `${node}.img`);
      for (const file of ['user-data', 'meta-data', 'network-config', 'cmdline.txt']) texts.push(await mtype(image, file));
      texts.push(await debugfs(image, 'cat /etc/pibake/manifest.json'));
    }
    for (const value of values) for (const text of texts) expect(text).not.toContain(value);
  });

  it('writes .bmap files that bmaptool copy accepts, checksums included', async () => {
    const copy = path.join(work, 'bmap-copy.img');
    await execa('bmaptool', ['copy', '--bmap', path.join(dir, 'lb1.img.bmap'), path.join(dir, 'lb1.img'), copy]);
    const [a, b] = await Promise.all([execa('sha256sum', [path.join(dir, 'lb1.img')]), execa('sha256sum', [copy])]);
    expect(a.stdout.split(' ')[0]).toBe(b.stdout.split(' ')[0]);
    await rm(copy);
  });

  it('skips everything when nothing changed, and says nothing needed baking', async () => {
    const again = await buildCluster(options(config, bases.trixie, { bmap: true, compress: 'zstd' }));
    expect(again.baked).toEqual([]);
    expect(again.kept.sort()).toEqual(['lb1', 'web1', 'web2', 'web3']);
  });
});

describe('pibake build --json from a compressed base', () => {
  it('reports the base\'s unpacking as JSON events, the last saying it is whole, before the base event', async () => {
    const config = await project('json', NODES.slice(0, 2));
    const zst = path.join(work, 'json-base.img.zst');
    await execa('zstd', ['-q', '-1', '-f', bases.trixie, '-o', zst]);
    const cli = path.resolve('bin/pibake.js');
    const run = await execa('node', [cli, 'build', '--json', '-c', config, '--base', zst, '-o', path.join(work, 'json-out'),
      '--cache-dir', path.join(work, 'json-cache'), '--packages', 'online', '-n', 'lb1'], { env: { SOURCE_DATE_EPOCH: EPOCH } });
    const events = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as { type: string; [key: string]: unknown });
    const unpack = events.filter((e) => e.type === 'unpack');
    expect(unpack.length).toBeGreaterThanOrEqual(2);
    const { size: zstSize } = await stat(zst);
    const { size: imageSize } = await stat(bases.trixie);
    for (const e of unpack) expect(e).toEqual({ type: 'unpack', source: zst, read: expect.any(Number), total: zstSize, written: expect.any(Number), seconds: expect.any(Number), done: expect.any(Boolean) });
    expect(unpack.at(-1)).toMatchObject({ read: zstSize, written: imageSize, done: true });
    expect(unpack.filter((e) => e.done)).toHaveLength(1);
    expect(events.findIndex((e) => e.type === 'base')).toBeGreaterThan(events.lastIndexOf(unpack.at(-1) as (typeof events)[number]));
    expect(events.at(-1)).toMatchObject({ type: 'summary', baked: 1 });
    // The unpacking is drawn by the reporter only: nothing of it on stderr.
    expect(run.stderr).toBe('');
  });
});

describe('incremental builds', () => {
  it('adding a node bakes the new node and the load balancer, nothing else, and says why', async () => {
    const config = await project('grow');
    await buildCluster(options(config, bases.trixie));
    await writeFile(config, inventoryText([...NODES, '  - { name: web4, role: db, ip: 10.0.0.14 }']));
    const lines: string[] = [];
    const result = await buildCluster({ ...options(config, bases.trixie), reporter: lineReporter((l) => lines.push(l)) });
    expect(result.baked.sort()).toEqual(['lb1', 'web4']);
    expect(lines.join('')).toMatch(/lb1: baking — changed .*root:\/etc\/haproxy\/haproxy\.cfg.*; because the cluster changed: added web4 \(db\)/);
    expect(lines.join('')).toMatch(/web4: baking — new node/);
    // The layout still has one load balancer: the build says so in one line, and builds anyway.
    expect(lines.filter((l) => l.startsWith('warning: '))).toEqual([
      expect.stringMatching(/^warning: .*cluster\.yaml:\d+:\d+: single point of failure: lb1 is the only load balancer; .*\n$/),
    ]);
  });

  it('rebuilds an image that was deleted', async () => {
    const config = await project('deleted');
    const first = await buildCluster(options(config, bases.trixie, { nodes: ['web2'] }));
    await rm(path.join(first.dir, 'web2.img'));
    const second = await buildCluster(options(config, bases.trixie, { nodes: ['web2'] }));
    expect(second.baked).toEqual(['web2']);
  });
});

describe('reproducibility', () => {
  it('two builds from the same inputs give byte-identical images and archives', async () => {
    const a = await project('repro-a');
    const first = await buildCluster(options(a, bases.trixie, { compress: 'zstd', bmap: true }));
    // Same inventory and secrets in another folder: copy the secrets file so inputs are equal.
    const b = await project('repro-b');
    for (const name of await readdir(path.dirname(a))) {
      if (name.includes('secrets') || name.includes('admin')) {
        await writeFile(path.join(path.dirname(b), name), await readFile(path.join(path.dirname(a), name)), { mode: 0o600 });
      }
    }
    const second = await buildCluster(options(b, bases.trixie, { compress: 'zstd', bmap: true }));
    const sums = async (dir: string) => readFile(path.join(dir, 'SHA256SUMS'), 'utf8');
    expect(await sums(second.dir)).toBe(await sums(first.dir));
  });
});

describe('pibake build (bookworm base)', () => {
  it('gives fsck-clean images whose first boot runs firstrun.sh', async () => {
    const config = await project('bookworm');
    const result = await buildCluster(options(config, bases.bookworm));
    for (const node of ['lb1', 'web1']) {
      const image = path.join(result.dir, `${node}.img`);
      await fsckFat(image);
      await fsckExt4(image);
      expect(await mtype(image, 'cmdline.txt')).toContain('systemd.run=/boot/firmware/firstrun.sh');
      expect(await mtype(image, 'firstrun.sh')).toMatch(/^#!\/bin\/bash/);
      expect((await debugfs(image, 'cat /etc/hostname')).trim()).toBe(node);
    }
  });
});

describe('interrupted builds', () => {
  it('a build killed at random moments and rerun ends with correct images and no stale files', async () => {
    const config = await project('killed');
    const reference = await project('killed-reference');
    const expected = await buildCluster(options(reference, bases.trixie));
    // Share the reference's secrets so the finished images must be identical to it.
    for (const name of await readdir(path.dirname(reference))) {
      if (name.includes('secrets') || name.includes('admin')) {
        await writeFile(path.join(path.dirname(config), name), await readFile(path.join(path.dirname(reference), name)), { mode: 0o600 });
      }
    }
    const out = path.join(path.dirname(config), 'output');
    const cli = path.resolve('bin/pibake.js');
    const args = [cli, 'build', '--config', config, '--base', bases.trixie, '--out', out, '--cache-dir', path.join(work, 'cache'), '--jobs', '2', '--packages', 'online'];
    for (const delay of [400, 1500, 2500, 3500]) {
      const child = execa('node', args, { reject: false, env: { SOURCE_DATE_EPOCH: EPOCH } });
      await new Promise((r) => setTimeout(r, delay));
      child.kill('SIGKILL');
      await child;
    }
    await execa('node', args, { env: { SOURCE_DATE_EPOCH: EPOCH } });
    const dir = path.join(out, 'testcl');
    expect((await readdir(dir)).filter((n) => n.includes('.partial'))).toEqual([]);
    const sums = await readFile(path.join(dir, 'SHA256SUMS'), 'utf8');
    expect(sums).toBe(await readFile(path.join(expected.dir, 'SHA256SUMS'), 'utf8'));
    await execa('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: dir });
  });
});
