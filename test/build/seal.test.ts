/**
 * Release images: `pibake build --sealed` and `pibake seal`, on a synthesized trixie base, judged by
 * grep (every byte of the release, images decompressed by zstd), debugfs rdump (files, modes and
 * owners of both root filesystems), the bytes of the boot partitions, e2fsck -fn and fsck.vfat -n.
 */
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { load } from 'js-yaml';
import { open, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCluster, type BuildResult } from '../../builder/build/build-cluster.ts';
import { lineReporter } from '../../builder/build/report.ts';
import { sealImage } from '../../builder/build/seal.ts';
import { formatError } from '../../builder/common/errors.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { wifiPsk } from '../../builder/render/seeds.ts';
import { buildOptions } from '../helpers/build-project.ts';
import { runPibake } from '../helpers/image.ts';
import { serveFolder } from '../helpers/https-server.ts';
import { debugfs, fsckExt4, fsckFat, partitionOffsets } from '../helpers/oracles.ts';

const EPOCH = '1767225600'; // 2026-01-01T00:00:00Z: both builds write the same timestamps
const PASSPHRASE = 'correct horse battery staple';
const NODES = ['lb1', 'web1'];

let work: string;
let base: string;
let config: string;
let unsealed: BuildResult;
let sealed: BuildResult;
const sealedLog: string[] = [];

function inventoryText(): string {
  return [
    'cluster: { name: small, domain: small.lan }',
    // The floating address gives lb1 its keepalived.conf (the VRRP password's first 8 characters).
    'network: { cidr: 10.0.0.0/24, gateway: 10.0.0.1, vip: 10.0.0.9 }',
    'base: { path: ./unused.img }',
    'admin: { user: pi, generate_ssh_key: true, password: generate }',
    `wifi: { country: GB, ssid: small-wifi, passphrase: "${PASSPHRASE}" }`,
    'nodes:',
    '  - { name: lb1, role: lb, ip: 10.0.0.10 }',
    '  - { name: web1, role: db, ip: 10.0.0.11 }',
    '',
  ].join('\n');
}

/**
 * Every value in cluster.secrets.yaml, each line of each private key, and the Wi-Fi passphrase and
 * PSK; the VRRP password also as the 8 characters keepalived takes of it (keepalived.conf holds only those).
 */
async function needles(): Promise<{ all: string[]; lb1: string[]; web1: string[] }> {
  const doc = load(await readFile(path.join(path.dirname(config), 'cluster.secrets.yaml'), 'utf8')) as {
    secrets: Record<string, string>; admin: Record<string, string>; host_keys: Record<string, { private: string }>;
  };
  const keyLines = (pem: string) => pem.split('\n').filter((l) => l && !l.startsWith('-----'));
  const out = [
    ...Object.values(doc.secrets),
    doc.admin.password as string, doc.admin.password_hash as string,
    ...keyLines(doc.admin.ssh_private_key as string),
    ...Object.values(doc.host_keys).flatMap((k) => keyLines(k.private)),
    PASSPHRASE, wifiPsk('small-wifi', PASSPHRASE),
    vrrpAuth(doc.secrets),
    'pibake-sealed-stand-in', // no stand-in may land either
  ];
  expect(out.length).toBeGreaterThan(20);
  // What the unsealed card of lb1 holds, for the control search.
  const lb1 = [doc.secrets.haproxy_stats_password as string, vrrpAuth(doc.secrets), doc.admin.password_hash as string, wifiPsk('small-wifi', PASSPHRASE),
    ...keyLines(doc.host_keys.lb1!.private)];
  // And of web1: every secret of the db role (Patroni's, the etcd token, the apps' passwords).
  const dbSecrets = ['postgres_superuser_password', 'replication_password', 'pg_rewind_password', 'patroni_rest_password', 'etcd_cluster_token',
    'web_db_password', 'app_db_password'].map((name) => doc.secrets[name] as string);
  const web1 = [...dbSecrets, doc.admin.password_hash as string, wifiPsk('small-wifi', PASSPHRASE), ...keyLines(doc.host_keys.web1!.private)];
  return { all: out, lb1, web1 };
}

function vrrpAuth(secrets: Record<string, string>): string {
  const password = secrets.vrrp_password;
  expect(password).toBeTruthy();
  return (password as string).slice(0, 8);
}

/** The needles grep finds in a stream (one pass over every byte, binary included). */
async function grepHits(patterns: string, command: string): Promise<string[]> {
  const result = await execa('sh', ['-c', `${command} | grep -a -o -F -f '${patterns}' | sort -u`], { reject: false });
  return result.stdout.split('\n').filter(Boolean);
}

/** Every path of the root filesystem with type, mode, owner and content hash, read back by debugfs rdump. */
async function rootTree(image: string, name: string): Promise<Map<string, string>> {
  const dir = path.join(work, `tree-${name}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir);
  const { root } = await partitionOffsets(image);
  await execa('debugfs', ['-R', `rdump / ${dir}`, `${image}?offset=${root}`]);
  const { stdout } = await execa('sh', ['-c', `cd '${dir}' && find . -mindepth 1 -printf '%P %y %m %U:%G %l\\n' | sort`]);
  const { stdout: sums } = await execa('sh', ['-c', `cd '${dir}' && find . -type f -print0 | xargs -0 -r sha256sum`]);
  const hash = new Map(sums.split('\n').filter(Boolean).map((l) => [l.slice(66).replace(/^\.\//, ''), l.slice(0, 64)]));
  const tree = new Map<string, string>();
  for (const line of stdout.split('\n').filter(Boolean)) {
    const p = line.slice(0, line.indexOf(' '));
    tree.set(`/${p}`, `${line.slice(p.length + 1)} ${hash.get(p) ?? ''}`.trim());
  }
  await rm(dir, { recursive: true, force: true });
  return tree;
}

async function bootBytes(image: string): Promise<Buffer> {
  const { boot, bootSize } = await partitionOffsets(image);
  const handle = await open(image, 'r');
  try {
    const buffer = Buffer.alloc(bootSize);
    await handle.read(buffer, 0, bootSize, boot);
    return buffer;
  } finally {
    await handle.close();
  }
}

/** Differing 4 KiB blocks of two images of equal size, split by partition. */
async function differingBlocks(a: string, b: string): Promise<{ boot: number; root: number; other: number }> {
  const { boot, bootSize, root } = await partitionOffsets(a);
  const [fa, fb] = await Promise.all([open(a, 'r'), open(b, 'r')]);
  const counts = { boot: 0, root: 0, other: 0 };
  try {
    const size = (await stat(a)).size;
    expect((await stat(b)).size).toBe(size);
    const chunk = 4 << 20;
    const ba = Buffer.alloc(chunk);
    const bb = Buffer.alloc(chunk);
    for (let offset = 0; offset < size; offset += chunk) {
      const n = Math.min(chunk, size - offset);
      await fa.read(ba, 0, n, offset);
      await fb.read(bb, 0, n, offset);
      for (let i = 0; i < n; i += 4096) {
        if (ba.compare(bb, i, i + 4096, i, i + 4096) === 0) continue;
        const at = offset + i;
        if (at >= boot && at < boot + bootSize) counts.boot++;
        else if (at >= root) counts.root++;
        else counts.other++;
      }
    }
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
  return counts;
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pibake-sealed-'));
  process.env.SOURCE_DATE_EPOCH = EPOCH;
  base = path.join(work, 'trixie.img');
  await synthesizeRaspiosImage({ path: base, generation: 'trixie', sizeMiB: 160, bootMiB: 64, diskId: '5e3da7a1' });
  await mkdir(path.join(work, 'project'));
  config = path.join(work, 'project/cluster.yaml');
  await writeFile(config, inventoryText());
  const cache = path.join(work, 'cache');
  unsealed = await buildCluster(buildOptions(config, base, cache, { out: path.join(work, 'unsealed') }));
  // The secrets file is there, as on an operator's machine: the sealed build must not read it.
  sealed = await buildCluster(buildOptions(config, base, cache, {
    out: path.join(work, 'sealed'), sealed: true, bmap: true, compress: 'zstd', reporter: lineReporter((line) => sealedLog.push(line)),
  }));
}, 300_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('pibake build --sealed', () => {
  it('leaves no secret and no private key in any byte of the release: images decompressed, .bmap, manifest, SHA256SUMS, log', async () => {
    const patterns = path.join(work, 'needles');
    const { all, lb1, web1 } = await needles();
    await writeFile(patterns, `${all.join('\n')}\n`, { mode: 0o600 });
    const names = (await readdir(sealed.dir)).sort();
    expect(names).toEqual(['.pibake.lock', 'SHA256SUMS', 'lb1.img', 'lb1.img.bmap', 'lb1.img.zst', 'manifest.json', 'web1.img', 'web1.img.bmap', 'web1.img.zst']);
    await writeFile(path.join(work, 'sealed.log'), sealedLog.join('\n'));
    const streams = [
      ...names.map((n) => (n.endsWith('.zst') ? `zstd -dc '${path.join(sealed.dir, n)}'` : `cat '${path.join(sealed.dir, n)}'`)),
      `cat '${path.join(work, 'sealed.log')}'`,
    ];
    for (const stream of streams) expect(await grepHits(patterns, stream), stream).toEqual([]);
    // The same search finds them in the unsealed images: it can fail.
    for (const [node, held] of [['lb1', lb1], ['web1', web1]] as const) {
      const control = await grepHits(patterns, `cat '${path.join(unsealed.dir, `${node}.img`)}'`);
      expect(control.sort(), node).toEqual([...new Set(held)].sort());
    }
    await execa('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: sealed.dir });
  });

  it('records that it is sealed and what each node still needs, in the manifest and on the card', async () => {
    const manifest = JSON.parse(await readFile(path.join(sealed.dir, 'manifest.json'), 'utf8')) as {
      sealed: boolean; nodes: Record<string, { sealed: boolean; secretFiles: string[] }>;
    };
    expect(manifest.sealed).toBe(true);
    const lb = manifest.nodes.lb1!;
    expect(lb.sealed).toBe(true);
    expect(lb.secretFiles).toEqual(expect.arrayContaining([
      '/etc/ssh/ssh_host_ed25519_key', '/etc/ssh/ssh_host_ed25519_key.pub', '/etc/haproxy/haproxy.cfg', '/etc/pibake/admin-password',
      '/etc/pibake/ssh/authorized_keys/pi', '/etc/NetworkManager/system-connections/wlan0.nmconnection',
    ]));
    const unsealedManifest = JSON.parse(await readFile(path.join(unsealed.dir, 'manifest.json'), 'utf8')) as typeof manifest;
    expect(unsealedManifest.sealed).toBe(false);
    for (const node of NODES) {
      const image = path.join(sealed.dir, `${node}.img`);
      const card = JSON.parse(await debugfs(image, 'cat /etc/pibake/manifest.json')) as { secretFiles: string[] };
      expect(card.secretFiles).toEqual(manifest.nodes[node]!.secretFiles);
      // The same record on the unsealed card: sealing only ever adds the secret files.
      expect(await debugfs(image, 'cat /etc/pibake/manifest.json')).toBe(await debugfs(path.join(unsealed.dir, `${node}.img`), 'cat /etc/pibake/manifest.json'));
      const guard = await debugfs(image, 'cat /usr/local/lib/pibake/secrets-check.sh');
      for (const file of manifest.nodes[node]!.secretFiles) expect(guard).toContain(`'${file}'`);
    }
  });

  it('is the unsealed image without the secret files: same boot partition, same root files, modes and owners otherwise', async () => {
    const manifest = JSON.parse(await readFile(path.join(sealed.dir, 'manifest.json'), 'utf8')) as { nodes: Record<string, { secretFiles: string[] }> };
    for (const node of NODES) {
      const sealedImage = path.join(sealed.dir, `${node}.img`);
      const unsealedImage = path.join(unsealed.dir, `${node}.img`);
      await fsckFat(sealedImage);
      await fsckExt4(sealedImage);
      expect((await bootBytes(sealedImage)).equals(await bootBytes(unsealedImage)), `boot partition of ${node}`).toBe(true);
      const a = await rootTree(sealedImage, `${node}-sealed`);
      const b = await rootTree(unsealedImage, `${node}-unsealed`);
      const onlyUnsealed = [...b.keys()].filter((p) => !a.has(p)).sort();
      const secretFiles = manifest.nodes[node]!.secretFiles;
      // The secret files, and folders that hold nothing else (made root:root 0755 by whoever adds the files).
      const onlyFolders = onlyUnsealed.filter((p) => !secretFiles.includes(p));
      expect(onlyFolders).toContain('/etc/pibake/ssh/authorized_keys');
      for (const p of onlyFolders) {
        expect(b.get(p), p).toBe('d 755 0:0');
        expect(secretFiles.some((f) => f.startsWith(`${p}/`)), p).toBe(true);
      }
      expect(onlyUnsealed.filter((p) => secretFiles.includes(p))).toEqual([...secretFiles].sort());
      expect([...a.keys()].filter((p) => !b.has(p))).toEqual([]);
      for (const [p, entry] of a) expect(entry, p).toBe(b.get(p));
    }
  });

  it('is reproducible and needs no secrets file: a build without one gives the same images', async () => {
    const secretsFile = path.join(path.dirname(config), 'cluster.secrets.yaml');
    await rename(secretsFile, `${secretsFile}.away`);
    try {
      const again = await buildCluster(buildOptions(config, base, path.join(work, 'cache'), { out: path.join(work, 'sealed-again'), sealed: true }));
      for (const node of NODES) expect(again.manifest.nodes[node]!.image.sha256, node).toBe(sealed.manifest.nodes[node]!.image.sha256);
      await expect(stat(secretsFile)).rejects.toThrow(); // none was made
    } finally {
      await rename(`${secretsFile}.away`, secretsFile);
    }
  }, 120_000);
});

describe('pibake seal', () => {
  it('gives the unsealed build of the node: same files, modes and owners, same boot partition, both filesystems clean', async () => {
    for (const node of NODES) {
      const card = path.join(work, `${node}-card.img`);
      const result = await sealImage({ image: path.join(sealed.dir, `${node}.img`), node, out: card, config });
      expect(result.added.sort()).toEqual([...sealed.manifest.nodes[node]!.secretFiles!].sort());
      expect((await stat(card)).mode & 0o777).toBe(0o600);
      await fsckFat(card);
      await fsckExt4(card);
      const unsealedImage = path.join(unsealed.dir, `${node}.img`);
      expect((await bootBytes(card)).equals(await bootBytes(unsealedImage)), `boot partition of ${node}`).toBe(true);
      const a = await rootTree(card, `${node}-card`);
      const b = await rootTree(unsealedImage, `${node}-unsealed`);
      expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
      for (const [p, entry] of a) expect(entry, p).toBe(b.get(p));
      // Bytes differ only in the root filesystem (where the files were placed, and its bookkeeping).
      const blocks = await differingBlocks(card, unsealedImage);
      expect(blocks.boot + blocks.other).toBe(0);
      console.log(`seal ${node}: ${blocks.root} of ${(await stat(card)).size / 4096} 4 KiB blocks differ from the unsealed build, all in the root filesystem`);
    }
  }, 120_000);

  it('refuses an image that is not sealed, a changed inventory, and a missing secrets file, in one line each', async () => {
    const lbSealed = path.join(sealed.dir, 'lb1.img');
    const failure = async (promise: Promise<unknown>) => formatError(await promise.then(() => new Error('it succeeded'), (e: unknown) => e)).join('\n');
    expect(await failure(sealImage({ image: path.join(unsealed.dir, 'lb1.img'), node: 'lb1', out: path.join(work, 'x.img'), config })))
      .toMatch(/lb1\.img is not a sealed image: it already holds \/etc\//);
    expect(await failure(sealImage({ image: lbSealed, node: 'web1', out: path.join(work, 'x.img'), config })))
      .toMatch(/lb1\.img is the image of node lb1 of cluster small, not of node web1/);
    const changed = path.join(work, 'changed/cluster.yaml');
    await mkdir(path.dirname(changed), { recursive: true });
    // Only haproxy.cfg, a secret-bearing file, changes: the card's record still tells.
    await writeFile(changed, `${inventoryText()}roles: { lb: { stats_user: operator } }\n`);
    await writeFile(path.join(path.dirname(changed), 'cluster.secrets.yaml'), await readFile(path.join(path.dirname(config), 'cluster.secrets.yaml')), { mode: 0o600 });
    expect(await failure(sealImage({ image: lbSealed, node: 'lb1', out: path.join(work, 'x.img'), config: changed })))
      .toMatch(/^error: lb1\.img was not built from cluster\.yaml as it is now: changed root:\/etc\/haproxy\/haproxy\.cfg \(hint: /);
    await rm(path.join(path.dirname(changed), 'cluster.secrets.yaml'));
    await writeFile(changed, inventoryText());
    const cli = await runPibake(['seal', lbSealed, '--node', 'lb1', '--out', path.join(work, 'x.img'), '--config', changed]);
    expect(cli.exitCode).not.toBe(0);
    expect(cli.stderr.trim().split('\n')).toHaveLength(1);
    expect(cli.stderr).toMatch(/no secrets file .*cluster\.secrets\.yaml/);
    expect((await readdir(work)).filter((n) => n.startsWith('x.img'))).toEqual([]);
  }, 120_000);
});

describe('pibake build --sealed and pibake seal on a bookworm base (firstrun.sh, host keys restored from /etc/pibake/ssh)', () => {
  it('gives the unsealed build: same boot partition, same root files, modes and owners', async () => {
    const bookworm = path.join(work, 'bookworm.img');
    await synthesizeRaspiosImage({ path: bookworm, generation: 'bookworm', sizeMiB: 160, bootMiB: 64, diskId: '5e3da7a2' });
    const cache = path.join(work, 'cache');
    const plain = await buildCluster(buildOptions(config, bookworm, cache, { out: path.join(work, 'bookworm-unsealed'), nodes: ['lb1'] }));
    const bare = await buildCluster(buildOptions(config, bookworm, cache, { out: path.join(work, 'bookworm-sealed'), nodes: ['lb1'], sealed: true }));
    expect(bare.manifest.nodes.lb1!.secretFiles).toEqual(expect.arrayContaining(['/etc/pibake/ssh/ssh_host_ed25519_key', '/etc/ssh/ssh_host_ed25519_key']));
    const unsealedImage = path.join(plain.dir, 'lb1.img');
    expect((await bootBytes(path.join(bare.dir, 'lb1.img'))).equals(await bootBytes(unsealedImage))).toBe(true);
    const card = path.join(work, 'bookworm-lb1-card.img');
    await sealImage({ image: path.join(bare.dir, 'lb1.img'), node: 'lb1', out: card, config });
    await fsckFat(card);
    await fsckExt4(card);
    expect((await bootBytes(card)).equals(await bootBytes(unsealedImage))).toBe(true);
    const a = await rootTree(card, 'bookworm-card');
    const b = await rootTree(unsealedImage, 'bookworm-unsealed');
    expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    for (const [p, entry] of a) expect(entry, p).toBe(b.get(p));
  }, 180_000);
});

/** A card of web1 written from its sealed image: the unsealed build's boot partition and root files, modes and owners; both filesystems clean. */
async function expectUnsealedWeb1(card: string, label: string): Promise<void> {
  const unsealedImage = path.join(unsealed.dir, 'web1.img');
  expect((await bootBytes(card)).equals(await bootBytes(unsealedImage))).toBe(true);
  const a = await rootTree(card, label);
  const b = await rootTree(unsealedImage, `${label}-unsealed`);
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [p, entry] of a) expect(entry, p).toBe(b.get(p));
  await fsckFat(card);
  await fsckExt4(card);
}

const canLoop = process.getuid?.() === 0 && process.platform === 'linux' && (existsSync('/sbin/losetup') || existsSync('/usr/sbin/losetup'));

describe.runIf(canLoop)('pibake flash of a sealed image to a loop device (root; tests only: pibake never attaches one)', () => {
  it('adds the node\'s secrets while writing: the card equals the unsealed build in files, modes, owners and boot partition', async () => {
    const backing = path.join(work, 'card.bin');
    await writeFile(backing, Buffer.alloc(0));
    await execa('truncate', ['-s', '200M', backing]);
    const dev = (await execa('losetup', ['-f', '--show', backing])).stdout.trim();
    try {
      const image = path.join(sealed.dir, 'web1.img.zst');
      const run = await runPibake(['flash', image, '--device', dev, '--yes', '--allow-non-removable', '--config', config]);
      expect(run.exitCode, run.stderr).toBe(0);
      expect(run.stderr).toContain(`${image} is sealed: adding the secrets of web1 from the secrets file beside ${config} first`);
      expect(run.stdout).toMatch(new RegExp(`^flashed ${image} with the secrets of web1 \\(sealed in [0-9.]+ s\\) to ${dev}: .* \\(bmap\\), verified, `));
      await expectUnsealedWeb1(dev, 'web1-loop');
      // The private copy it sealed (it held the secrets) is gone.
      expect((await readdir(sealed.dir)).filter((n) => !n.startsWith('.pibake.lock')).sort())
        .toEqual(['SHA256SUMS', 'lb1.img', 'lb1.img.bmap', 'lb1.img.zst', 'manifest.json', 'web1.img', 'web1.img.bmap', 'web1.img.zst']);
      // --no-seal writes the sealed image as it is (the card's guard will stop its first boot).
      const asIs = await runPibake(['flash', image, '--device', dev, '--yes', '--allow-non-removable', '--no-seal']);
      expect(asIs.exitCode, asIs.stderr).toBe(0);
      expect(await debugfs(dev, 'stat /etc/ssh/ssh_host_ed25519_key')).not.toMatch(/Inode:/);
    } finally {
      await execa('losetup', ['-d', dev], { reject: false });
    }
  }, 180_000);
});

describe('pibake flash of a sealed release by its https URL, as CI publishes it', () => {
  it('downloads and checks the image, reads manifest.json beside it and adds the node\'s secrets: the card equals the unsealed build', async () => {
    const server = await serveFolder(sealed.dir);
    try {
      const sums = await readFile(path.join(sealed.dir, 'SHA256SUMS'), 'utf8');
      const sha = /^([0-9a-f]{64}) {2}(\.\/)?web1\.img\.zst$/m.exec(sums)?.[1];
      expect(sha).toBeDefined();
      const url = `${server.base}/files/web1.img.zst`;
      const card = path.join(work, 'web1-from-url.img');
      const cache = path.join(work, 'url-cache');
      const run = await runPibake(['flash', url, '--sha256', sha ?? '', '--device', card, '--config', config], { ...server.childEnv, PIBAKE_CACHE_DIR: cache });
      expect(run.exitCode, run.stderr).toBe(0);
      expect(run.stderr).toContain(`${url} is sealed: adding the secrets of web1 from the secrets file beside ${config} first`);
      expect(run.stdout).toMatch(new RegExp(`^flashed ${url} with the secrets of web1 \\(sealed in [0-9.]+ s\\) to ${card}: .* \\(bmap\\), verified, `));
      expect(server.served.get('/files/manifest.json')).toBe(1);
      await expectUnsealedWeb1(card, 'web1-url');
      // The download and the sealed copy (it held the secrets) are gone.
      expect(await readdir(cache)).toEqual([]);
    } finally {
      server.close();
    }
  }, 180_000);
});
