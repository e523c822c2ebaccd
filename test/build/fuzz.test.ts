/**
 * A seeded fuzzer over damaged bases (issues 11 and 16). From one good synthesized base it makes
 * mutants: MBR and partition entries, FAT boot sector and tables, ext4 superblock, group descriptors
 * and journal, truncations, damaged .xz/.zst/.zip, zips with two images, misnamed containers. Each
 * mutant goes through a whole `pibake build`; the outcome must be one of:
 *   - refused: one line per problem, no stack trace, naming the damaged structure; nothing at a final
 *     name; the cache exactly as before;
 *   - accepted: the card it bakes passes fsck.vfat -n and e2fsck -fn (the independent oracles).
 * "Accepted, and the output fails fsck" is counted apart and must be 0. After every mutant a build
 * from the good base must still work and find its card unchanged.
 *
 * Deterministic (PIBAKE_FUZZ_SEED, default 0x5eed) and bounded (PIBAKE_FUZZ_MUTANTS, default 24: each
 * family twice; about 30 s of CPU in all, fixtures included).
 */
import { execa } from 'execa';
import { copyFile, mkdir, mkdtemp, rm, stat, truncate } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCluster } from '../../builder/build/build-cluster.ts';
import { formatError, PibakeError } from '../../builder/common/errors.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { buildOptions, smallProject } from '../helpers/build-project.ts';
import { entriesOf, expectCleanImage, runPibake } from '../helpers/image.ts';
import { copyBase, debugfsWrite, geometryOf, prng, setPartition, writeAt, type BaseGeometry } from '../helpers/mutants.ts';

const SEED = Number(process.env.PIBAKE_FUZZ_SEED ?? 0x5eed);
const MUTANTS = Number(process.env.PIBAKE_FUZZ_MUTANTS ?? 24);

type Rng = ReturnType<typeof prng>;

interface Family {
  name: string;
  /** What a refusal of this family's mutants must name. */
  cause: RegExp;
  /** Writes a mutant of the good base (or of a container of it) and returns its path. */
  make(rng: Rng, target: string): Promise<string>;
}

let work: string;
let good: string;
let geo: BaseGeometry;
let config: string;
let cache: string;
let goodOut: string;
let goodImageSha: string;

const sha256 = async (file: string) => (await execa('sha256sum', [file])).stdout.split(' ')[0] as string;
const flip = async (rng: Rng, file: string, from: number, length: number, count: number) => {
  for (let i = 0; i < count; i++) await writeAt(file, from + rng.int(length), rng.bytes(1));
};

const PARTITION = /partition|not a disk image|partition table|overlap|beyond the end|larger than its partition/;
const FAT = /partition 1 \(FAT boot\)|partition 1 \(type [0-9a-f]+\) is not a FAT boot partition/;
const EXT4 = /partition 2 \(ext4 root\)|partition 2 \(the last\) has no ext4 filesystem/;
const CONTAINER = /is truncated or corrupt|is not (xz|zstd|a raw image|a zip archive): it is|is not a disk image|does not contain a disk image|is not a readable zip|contains no \.img|holds \d+ images/;

const FAMILIES: Family[] = [
  {
    name: 'MBR partition entries',
    cause: PARTITION,
    make: async (rng, target) => {
      await copyBase(good, target);
      const { boot, root } = geo;
      switch (rng.int(5)) {
        case 0: await flip(rng, target, 446, 32, 1 + rng.int(3)); break; // any bytes of entries 1-2
        case 1: await setPartition(target, 1, boot.start / 512, boot.size / 512 + 1 + rng.int(8192)); break; // overlap
        case 2: await setPartition(target, 2, root.start / 512, root.size / 512 + 1 + rng.int(1 << 20)); break; // past the end
        case 3: await setPartition(target, 2, root.start / 512, root.size / 512 - 1 - rng.int(4096)); break; // fs larger than partition
        default: await setPartition(target, 1 + rng.int(2), rng.int(64), 1 + rng.int(1 << 16)); break; // on the table
      }
      return target;
    },
  },
  {
    name: 'MBR signature and status',
    cause: PARTITION,
    make: async (rng, target) => {
      await copyBase(good, target);
      if (rng.int(2) === 0) await writeAt(target, 510, rng.bytes(2));
      else await writeAt(target, 446 + 16 * rng.int(2), Buffer.from([1 + rng.int(0x7f)]));
      return target;
    },
  },
  {
    name: 'FAT boot sector (BPB)',
    cause: FAT,
    make: async (rng, target) => {
      await copyBase(good, target);
      // The fields mtools and fsck.vfat trust: sector size, cluster size, reserved, FATs, root entries, sizes, root cluster.
      const fields: [number, number][] = [[11, 2], [13, 1], [14, 2], [16, 1], [17, 2], [19, 2], [32, 4], [36, 4], [44, 4]];
      const [offset, length] = rng.pick(fields);
      await writeAt(target, geo.boot.start + offset, rng.int(3) === 0 ? Buffer.alloc(length) : rng.bytes(length));
      return target;
    },
  },
  {
    name: 'FAT tables',
    cause: FAT,
    make: async (rng, target) => {
      await copyBase(good, target);
      const length = 64 + rng.int(4096);
      const copies = 1 + rng.int(geo.fat.count);
      for (let i = 0; i < copies; i++) await writeAt(target, geo.fat.start + i * geo.fat.bytes + rng.int(8192), rng.bytes(length));
      return target;
    },
  },
  {
    name: 'ext4 superblock',
    cause: EXT4,
    make: async (rng, target) => {
      await copyBase(good, target);
      if (rng.int(2) === 0) {
        await flip(rng, target, geo.root.start + 1024, 1024, 1 + rng.int(4)); // checksum catches it
      } else {
        // Valid checksum, nonsense values: debugfs recomputes the checksum.
        const field = rng.pick(['blocks_count', 'inodes_count', 'blocks_per_group', 'inodes_per_group', 'first_data_block',
          'log_block_size', 'free_blocks_count', 'free_inodes_count', 'state', 'journal_inum', 'first_ino', 'inode_size']);
        await debugfsWrite(target, geo.root.start, `ssv ${field} ${rng.int(1 << 20)}`);
      }
      return target;
    },
  },
  {
    name: 'ext4 group descriptors',
    cause: EXT4,
    make: async (rng, target) => {
      await copyBase(good, target);
      const length = 16 + rng.int(256);
      await writeAt(target, geo.gdt + rng.int(64), rng.int(2) === 0 ? Buffer.alloc(length) : rng.bytes(length));
      return target;
    },
  },
  {
    name: 'ext4 journal',
    cause: EXT4,
    make: async (rng, target) => {
      await copyBase(good, target);
      if (rng.int(3) === 0) await debugfsWrite(target, geo.root.start, 'feature needs_recovery');
      else await writeAt(target, geo.journal + rng.int(256), rng.bytes(16 + rng.int(512)));
      return target;
    },
  },
  {
    name: 'truncation',
    cause: /beyond the end|truncated|not a disk image|partition/,
    make: async (rng, target) => {
      await copyBase(good, target);
      await truncate(target, 512 + rng.int(geo.sizeBytes - 1024));
      return target;
    },
  },
  {
    name: '.xz damage',
    cause: CONTAINER,
    make: async (rng, target) => damagedContainer(rng, `${good}.xz`, `${target}.xz`),
  },
  {
    name: '.zst damage',
    cause: CONTAINER,
    make: async (rng, target) => damagedContainer(rng, `${good}.zst`, `${target}.zst`),
  },
  {
    name: '.zip damage',
    cause: CONTAINER,
    make: async (rng, target) => {
      if (rng.int(3) === 0) return path.join(work, 'two.zip'); // two images
      return damagedContainer(rng, path.join(work, 'good.zip'), `${target}.zip`);
    },
  },
  {
    name: 'misnamed container',
    cause: /is not (xz|zstd|a raw image|a zip archive): it is/,
    make: async (rng, target) => {
      const [from, suffix] = rng.pick([[good, '.img.xz'], [`${good}.xz`, '.img'], [`${good}.zst`, '.img.xz'], [path.join(work, 'good.zip'), '.img.zst']] as const);
      await copyFile(from, `${target}${suffix}`);
      return `${target}${suffix}`;
    },
  },
];

/** A copy of `source` truncated or with flipped bytes (past the magic, so the format is still recognised). */
async function damagedContainer(rng: Rng, source: string, target: string): Promise<string> {
  await copyFile(source, target);
  const { size } = await stat(target);
  if (rng.int(2) === 0) await truncate(target, 16 + rng.int(size - 32));
  else await flip(rng, target, 16, size - 16, 1 + rng.int(8));
  return target;
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pibake-fuzz-'));
  good = path.join(work, 'good.img');
  // As small as the layout allows (FAT32 needs 65525 clusters; ext4 64 MiB): fewer bytes to hash per mutant.
  await synthesizeRaspiosImage({ path: good, generation: 'trixie', sizeMiB: 120, bootMiB: 40, diskId: '5e3da7a1' });
  geo = await geometryOf(good);
  await execa('xz', ['-0', '-T0', '-k', good]);
  await execa('zstd', ['-q', '-1', '-k', good]);
  await execa('zip', ['-q', '-1', '-j', path.join(work, 'good.zip'), good]);
  await mkdir(path.join(work, 'two'));
  for (const name of ['a.img', 'b.img']) await copyBase(good, path.join(work, 'two', name));
  await execa('zip', ['-q', '-1', '-j', path.join(work, 'two.zip'), path.join(work, 'two', 'a.img'), path.join(work, 'two', 'b.img')]);
  config = await smallProject(path.join(work, 'project'));
  cache = path.join(work, 'cache');
  goodOut = path.join(work, 'out-good');
  const first = await buildCluster(buildOptions(config, good, cache, { out: goodOut, nodes: ['web1'] }));
  goodImageSha = await sha256(path.join(first.dir, 'web1.img'));
});
afterAll(() => rm(work, { recursive: true, force: true }));

interface Outcome { family: string; mutant: string; result: 'refused' | 'accepted, fsck-clean' | 'accepted, output fails fsck' | 'wrong or unnamed failure'; detail: string }

async function tryMutant(family: Family, file: string): Promise<Outcome> {
  const out = path.join(work, 'out-mutant');
  await rm(out, { recursive: true, force: true });
  const cacheBefore = await entriesOf(cache);
  const outcome = await buildCluster(buildOptions(config, file, cache, { out, nodes: ['web1'] })).then(() => undefined, (error: unknown) => error);
  const base = { family: family.name, mutant: path.basename(file) };
  if (outcome === undefined) {
    try {
      await expectCleanImage(path.join(out, 'small', 'web1.img'));
      return { ...base, result: 'accepted, fsck-clean', detail: '' };
    } catch (error) {
      return { ...base, result: 'accepted, output fails fsck', detail: (error as Error).message.split('\n').slice(0, 4).join(' | ') };
    }
  }
  const lines = formatError(outcome);
  const left = (await entriesOf(path.join(out, 'small'))).filter((n) => n.endsWith('.img') || n.endsWith('.partial'));
  const cacheAfter = await entriesOf(cache);
  const problems = [
    !(outcome instanceof PibakeError) && 'not a PibakeError (a crash)',
    lines.some((l) => /bug in pibake|\n|^\s+at /.test(l)) && 'a bug message or a stack trace',
    lines.length > 2 && `${lines.length} lines`,
    !family.cause.test(lines[0] ?? '') && 'the cause is not named',
    left.length > 0 && `left ${left.join(', ')}`,
    JSON.stringify(cacheAfter) !== JSON.stringify(cacheBefore) && `the cache changed: ${cacheAfter.filter((n) => !cacheBefore.includes(n)).join(', ')}`,
  ].filter(Boolean);
  return { ...base, result: problems.length === 0 ? 'refused' : 'wrong or unnamed failure', detail: `${problems.join('; ')}${problems.length ? ': ' : ''}${lines.join(' / ')}` };
}

describe('fuzzing the base image', () => {
  // Bounded by the mutant count (about 0.5 s each on two idle cores); the timeout only guards a hang.
  it(`${MUTANTS} seeded mutants: each refused with its cause named, or accepted with an fsck-clean card; a good build works after each`, { timeout: 300_000 }, async () => {
    const rng = prng(SEED);
    const outcomes: Outcome[] = [];
    for (let i = 0; i < MUTANTS; i++) {
      const family = FAMILIES[i % FAMILIES.length] as Family;
      const file = await family.make(rng, path.join(work, `mutant-${String(i).padStart(3, '0')}.img`));
      outcomes.push(await tryMutant(family, file));
      // The good rebuild: the good base still hits the cache and its card is still right.
      const again = await buildCluster(buildOptions(config, good, cache, { out: goodOut, nodes: ['web1'] }));
      expect(again.kept, `after ${family.name} mutant ${i}`).toEqual(['web1']);
      if (!file.endsWith('two.zip')) await rm(file, { force: true });
    }
    expect(await sha256(path.join(goodOut, 'small', 'web1.img'))).toBe(goodImageSha);
    const forced = await buildCluster(buildOptions(config, good, cache, { out: goodOut, nodes: ['web1'], force: true }));
    expect(forced.baked).toEqual(['web1']);
    await expectCleanImage(path.join(goodOut, 'small', 'web1.img'));

    const count = (result: Outcome['result']) => outcomes.filter((o) => o.result === result).length;
    console.log(`fuzz seed 0x${SEED.toString(16)}: ${outcomes.length} mutants; refused with the cause named ${count('refused')}; ` +
      `accepted, fsck-clean ${count('accepted, fsck-clean')}; accepted, output fails fsck ${count('accepted, output fails fsck')}; ` +
      `wrong or unnamed failures ${count('wrong or unnamed failure')}`);
    for (const family of FAMILIES) {
      const mine = outcomes.filter((o) => o.family === family.name);
      console.log(`  ${family.name}: ${mine.length} (${mine.filter((o) => o.result === 'refused').length} refused, ${mine.filter((o) => o.result === 'accepted, fsck-clean').length} accepted clean)`);
    }
    if (process.env.PIBAKE_FUZZ_VERBOSE) for (const o of outcomes) console.log(`  ${o.mutant} ${o.family}: ${o.result} ${o.detail}`);
    const bad = outcomes.filter((o) => o.result === 'accepted, output fails fsck' || o.result === 'wrong or unnamed failure');
    expect(bad.map((o) => `${o.family} (${o.mutant}): ${o.result}: ${o.detail}`)).toEqual([]);
  });

  it('through the real command line: one line on stderr, no stack trace, exit 1', async () => {
    const file = path.join(work, 'cli-mutant.img');
    await copyBase(good, file);
    await writeAt(file, geo.gdt, Buffer.alloc(geo.blockSize));
    const result = await runPibake(['build', '--config', config, '--base', file, '--out', path.join(work, 'out-cli'), '--cache-dir', cache, '--packages', 'online']);
    expect(result.exitCode).toBe(1);
    // Besides the layout's single-point-of-failure warnings (two nodes) and the log of the base's
    // unpacking into the cache (which its check follows), one error line, the last.
    const lines = result.stderr.trim().split('\n').filter((line) => !line.startsWith('warning: '));
    expect(lines.at(-2)).toMatch(/^unpacked cli-mutant\.img: /);
    expect(lines.filter((line) => !/^unpack(ing|ed) cli-mutant\.img: /.test(line))).toEqual([
      expect.stringMatching(/^error: cli-mutant\.img: partition 2 \(ext4 root\): the ext4 group descriptors are damaged/),
    ]);
    expect(lines.at(-1)).toMatch(/^error: /);
  });
});
