/**
 * Benchmark of `pibake flash` against `bmaptool copy` and `dd bs=4M conv=fsync`, on the same image
 * in one run. The image is sparse with about half of it mapped (random data in alternating
 * segments), like a freshly baked card image. Targets: a regular file, and a loop device when run
 * as root (the bench attaches it; pibake itself never calls losetup).
 *
 *   npx tsx scripts/bench-flash.ts [--size GiB (default 3)] [--mapped 0.5] [--runs N (best of N)] [--zst] [--no-loop] [--dir /tmp]
 *
 * --zst adds a zstd-compressed source for pibake and bmaptool.
 * --sealed measures instead what sealing adds to a flash: a one-node cluster built from a
 * synthesized trixie base (--size GiB, --fill MiB of data, default 1 GiB and 600 MiB) with and
 * without --sealed, then `pibake flash` of each .img.zst to the same targets: the sealed one is
 * unpacked, sealed and mapped again before it is written. Bytes added: mapped bytes of the sealed
 * card against the unsealed image.
 * The source image is in the page cache for every tool alike (created just before); targets are
 * fresh sparse files each time. Timings include each tool's own startup and final fsync.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { synthesizeRaspiosImage } from '../test/helpers/synthesize.ts';

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const option = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? (args[i + 1] as string) : fallback;
};
const sizeGiB = Number(option('size', '3'));
const mapped = Number(option('mapped', '0.5'));
const runs = Math.max(1, Number(option('runs', '1')));
const withZst = args.includes('--zst');
const useLoop = !args.includes('--no-loop') && process.getuid?.() === 0;
const sealedMode = args.includes('--sealed');
const repo = new URL('../', import.meta.url).pathname;

async function makeImage(path: string, sizeBytes: number): Promise<number> {
  const segment = 32 * MiB;
  const data = randomBytes(segment);
  const handle = await open(path, 'w');
  let written = 0;
  try {
    await handle.truncate(sizeBytes);
    // Alternate data and holes so that `mapped` of the image holds data.
    const period = Math.round(segment / mapped);
    for (let offset = 0, n = 0; offset < sizeBytes; offset += period, n++) {
      data.writeUInt32LE(n, 0); // every segment differs
      const length = Math.min(segment, sizeBytes - offset);
      await handle.write(data, 0, length, offset);
      written += length;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  return written;
}

async function timed(label: string, fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  process.stderr.write(`  ${label}: ${seconds.toFixed(2)} s\n`);
  return seconds;
}

interface Target {
  kind: string;
  prepare(): Promise<string>;
  release(): Promise<void>;
}

function fileTarget(dir: string, size: number): Target {
  const path = join(dir, 'target.img');
  return {
    kind: 'file',
    async prepare() {
      await rm(path, { force: true });
      await (await open(path, 'w')).close();
      await truncate(path, size);
      return path;
    },
    release: () => rm(path, { force: true }),
  };
}

function loopTarget(dir: string, size: number): Target {
  const backing = join(dir, 'loop-backing.img');
  let dev = '';
  return {
    kind: 'loop device',
    async prepare() {
      await rm(backing, { force: true });
      await (await open(backing, 'w')).close();
      await truncate(backing, size);
      // eslint-disable-next-line no-restricted-syntax -- the bench attaches a stand-in card; pibake never does
      dev = (await execa('losetup', ['-f', '--show', backing])).stdout.trim();
      return dev;
    },
    async release() {
      // eslint-disable-next-line no-restricted-syntax -- detach the bench's own stand-in card
      if (dev) await execa('losetup', ['-d', dev], { reject: false });
      dev = '';
      await rm(backing, { force: true });
    },
  };
}

/** Each tool's best time on a fresh target; tools take turns within each round, so that load from elsewhere hits them alike. */
async function bestOfRounds(target: Target, tools: [string, (dev: string) => Promise<unknown>][]): Promise<Record<string, number>> {
  process.stderr.write(`target: ${target.kind}\n`);
  const seconds: Record<string, number> = {};
  for (let round = 0; round < runs; round++) {
    for (const [label, run] of tools) {
      const dev = await target.prepare();
      try {
        seconds[label] = Math.min(seconds[label] ?? Infinity, await timed(label, () => run(dev)));
      } finally {
        await target.release();
      }
    }
  }
  return seconds;
}

/** Mapped bytes of a bmap file (bmaptool's own count). */
async function mappedBytes(bmapFile: string): Promise<number> {
  const text = await readFile(bmapFile, 'utf8');
  const blocks = Number(/<MappedBlocksCount>\s*(\d+)/.exec(text)?.[1]);
  const blockSize = Number(/<BlockSize>\s*(\d+)/.exec(text)?.[1]);
  return blocks * blockSize;
}

async function sealedBench(): Promise<void> {
  const dir = await mkdtemp(join(option('dir', tmpdir()), 'pibake-bench-seal-'));
  const sizeMiB = Math.round(Number(option('size', '1')) * 1024);
  const fillMiB = Number(option('fill', '600'));
  const targets: Target[] = [fileTarget(dir, sizeMiB * MiB)];
  if (useLoop) targets.push(loopTarget(dir, sizeMiB * MiB));
  const pibake = (...argv: string[]) => execa('node', [join(repo, 'bin/pibake.js'), ...argv], { stdin: 'ignore', cwd: dir, env: { SOURCE_DATE_EPOCH: '1767225600' } });
  const rows: string[] = [];
  try {
    const base = join(dir, 'base.img');
    process.stderr.write(`base: synthesized trixie, ${sizeMiB} MiB with ${fillMiB} MiB of data, in ${dir}\n`);
    await synthesizeRaspiosImage({ path: base, generation: 'trixie', sizeMiB, fillMiB, bootMiB: 256 });
    const config = join(dir, 'cluster.yaml');
    await writeFile(config, ['cluster: { name: bench, domain: bench.lan }', 'network: { cidr: 10.0.0.0/24, gateway: 10.0.0.1 }',
      'base: { path: ./base.img }', 'admin: { user: pi, generate_ssh_key: true, password: generate }', 'nodes:',
      '  - { name: lb1, role: lb, ip: 10.0.0.10 }', '  - { name: web1, role: db, ip: 10.0.0.11 }', ''].join('\n'));
    // A synthesized base has no apt sources pibake could resolve the role packages against: they are left to first boot.
    const build = (out: string, extra: string[]) => pibake('build', '--config', config, '--base', base, '--out', out, '--compress', 'zstd', '--bmap', '--packages', 'online', '--cache-dir', join(dir, 'cache'), ...extra);
    await timed('build (unsealed)', () => build(join(dir, 'unsealed'), []));
    await timed('build --sealed', () => build(join(dir, 'sealed'), ['--sealed']));
    const unsealedZst = join(dir, 'unsealed/bench/lb1.img.zst');
    const sealedZst = join(dir, 'sealed/bench/lb1.img.zst');
    // What sealing adds to the card: the sealed-then-sealed image's mapped bytes against the unsealed one's.
    const card = join(dir, 'lb1-card.img');
    await timed('pibake seal (.zst in, raw image out)', () => pibake('seal', sealedZst, '--node', 'lb1', '--out', card, '--config', config));
    // Both mapped by bmaptool itself, so the two counts are alike.
    await execa('bmaptool', ['create', '-o', `${card}.bmap`, card]);
    await execa('bmaptool', ['create', '-o', join(dir, 'unsealed.bmap'), join(dir, 'unsealed/bench/lb1.img')]);
    const unsealedMapped = await mappedBytes(join(dir, 'unsealed.bmap'));
    const cardMapped = await mappedBytes(`${card}.bmap`);
    const flashOf = (source: string) => (dev: string) => pibake('flash', source, '--device', dev, '--yes', '--allow-non-removable', '--config', config);
    const tools: [string, (dev: string) => Promise<unknown>][] = [
      ['flash unsealed .zst', flashOf(unsealedZst)],
      ['flash sealed .zst (seals)', flashOf(sealedZst)],
    ];
    for (const target of targets) {
      const seconds = await bestOfRounds(target, tools);
      const plain = seconds['flash unsealed .zst'] as number;
      const sealedSeconds = seconds['flash sealed .zst (seals)'] as number;
      rows.push(`${target.kind.padEnd(12)} unsealed ${plain.toFixed(2)} s, sealed ${sealedSeconds.toFixed(2)} s: sealing adds ${(sealedSeconds - plain).toFixed(2)} s (x${(sealedSeconds / plain).toFixed(2)})`);
    }
    process.stdout.write(`seal bench: base ${sizeMiB} MiB, ${fillMiB} MiB data, best of ${runs}\n` +
      `bytes written: unsealed ${(unsealedMapped / MiB).toFixed(1)} MiB mapped, sealed card ${(cardMapped / MiB).toFixed(1)} MiB mapped: sealed card minus unsealed image ${((cardMapped - unsealedMapped) / 1024).toFixed(0)} KiB\n` +
      `temporary disk for the sealed copy: about ${(cardMapped / MiB).toFixed(0)} MiB beside the image\n${rows.join('\n')}\n`);
  } finally {
    for (const t of targets) await t.release();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(option('dir', tmpdir()), 'pibake-bench-flash-'));
  const size = Math.round(sizeGiB * 1024) * MiB;
  const image = join(dir, 'node.img');
  const bmap = `${image}.bmap`;
  const targets: Target[] = [fileTarget(dir, size)];
  if (useLoop) targets.push(loopTarget(dir, size));
  const rows: string[] = [];
  try {
    process.stderr.write(`image: ${sizeGiB} GiB, ${Math.round(mapped * 100)} % mapped, in ${dir}\n`);
    const dataBytes = await makeImage(image, size);
    await timed('bmaptool create', () => execa('bmaptool', ['create', '-o', bmap, image]));
    const pibake = (source: string, extra: string[]) => (dev: string) =>
      execa('node', [join(repo, 'bin/pibake.js'), 'flash', source, '--bmap', bmap, '--device', dev, '--yes', '--allow-non-removable', ...extra], { stdin: 'ignore' });
    const tools: [string, (dev: string) => Promise<unknown>][] = [
      ['pibake flash (verify)', pibake(image, [])],
      ['pibake flash --no-verify', pibake(image, ['--no-verify'])],
      ['bmaptool copy', (dev) => execa('bmaptool', ['-q', 'copy', '--bmap', bmap, image, dev])],
      ['dd bs=4M conv=fsync', (dev) => execa('dd', [`if=${image}`, `of=${dev}`, 'bs=4M', 'conv=fsync,notrunc', 'status=none'])],
    ];
    if (withZst) {
      // A compressed source: both tools decompress with zstd and skip the unmapped gaps.
      const zst = `${image}.zst`;
      await timed('zstd -1 -T0', () => execa('zstd', ['-q', '-1', '-T0', image, '-o', zst]));
      tools.push(
        ['pibake flash .zst (verify)', pibake(zst, [])],
        ['bmaptool copy .zst', (dev) => execa('bmaptool', ['-q', 'copy', '--bmap', bmap, zst, dev])],
      );
    }
    for (const target of targets) {
      const seconds = await bestOfRounds(target, tools);
      const base = seconds['pibake flash (verify)'] as number;
      const fast = seconds['pibake flash --no-verify'] as number;
      for (const [label] of tools) {
        const s = seconds[label] as number;
        rows.push(`${target.kind.padEnd(12)} ${label.padEnd(26)} ${s.toFixed(2).padStart(7)} s  ${(size / MiB / s).toFixed(0).padStart(6)} MiB/s of image` +
          `  x${(s / base).toFixed(2)} vs pibake(verify)  x${(s / fast).toFixed(2)} vs pibake(no-verify)`);
      }
    }
    process.stdout.write(`flash bench: image ${sizeGiB} GiB, ${(dataBytes / MiB).toFixed(0)} MiB mapped, best of ${runs}\n${rows.join('\n')}\n`);
  } finally {
    for (const t of targets) await t.release();
    await rm(dir, { recursive: true, force: true });
  }
}

await (sealedMode ? sealedBench() : main());
