/**
 * `npm run bench [-- --size 3G] [--only a,b] [--work DIR] [--repeat N] [--image pattern|synth|FILE.img]`
 *
 * Times pibake's byte-moving steps against the bare tools doing the same job on the same bytes,
 * in one run, and prints the ratio and peak memory. Each measured run is a separate process under
 * GNU time, so peak RSS is per run: for ours, the node process itself (process.resourceUsage) and
 * the largest process of its tree (time's %M, covers the xz/zstd/cp children); for the bare tool,
 * its largest process.
 *
 * Adding a section: append a BenchSection to SECTIONS below. `ours` runs in a child process
 * (`--child NAME`), so it must only depend on the context; `bare` is a bash command line.
 * Fixtures are made once per work folder by `fixture()` (lazy, cached on disk).
 */
import { randomFillSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { cloneImage } from '../builder/image/copy.ts';
import { obtainBase } from '../builder/image/intake.ts';
import { synthesizeRaspiosImage } from '../test/helpers/synthesize.ts';
import { writeBmapFile } from '../builder/package/bmap.ts';
import { sha256File } from '../builder/bytes/checksums.ts';
import { compressArgs, compressImage } from '../builder/package/compress.ts';
import { buildSections } from './bench-build.ts';
import { checkSections } from './bench-checks.ts';
import { cliSections } from './bench-cli.ts';

const MiB = 1 << 20;

// ---- framework ------------------------------------------------------------------------------

export interface BenchContext {
  /** Scratch folder of this bench run (fixtures live here). */
  work: string;
  /** Apparent size of the test image in bytes (--size). */
  sizeBytes: number;
  /**
   * Test image (--image): 'pattern' (default), 'synth' (synthesizeRaspiosImage, real FAT + ext4),
   * or the path of a raw Raspberry Pi OS image to measure on (e.g. a real release, decompressed).
   */
  image: string;
}

export interface BenchSection {
  name: string;
  /** What the bare tool command does, shown in the table. */
  bare?: (ctx: BenchContext) => Promise<string> | string;
  /** pibake's way; runs in a child process. */
  ours: (ctx: BenchContext) => Promise<void>;
  /** Prepare inputs (untimed, in the parent, before both runs). */
  prepare?: (ctx: BenchContext) => Promise<void>;
  /** Remove outputs (untimed, after each run). */
  cleanup?: (ctx: BenchContext) => Promise<void>;
  /** Needs a real Raspberry Pi OS layout (FAT + ext4): skipped unless `--image synth` or an image file. */
  needsSynth?: boolean;
  /** Extra facts to print after the runs, e.g. sizes of the outputs. */
  report?: (ctx: BenchContext) => Promise<string>;
  /** The same for the bare tool's output (called before cleanup). */
  reportBare?: (ctx: BenchContext) => Promise<string>;
}

interface Measurement {
  seconds: number;
  /** Largest process of the run's tree, KiB (GNU time %M). */
  treeMaxRssKiB: number;
  /** The node process itself (ours only), KiB. */
  nodeMaxRssKiB?: number;
}

const SCRIPT = fileURLToPath(import.meta.url);

async function timed(command: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; wall: number; maxRssKiB: number }> {
  const statsFile = join(tmpdir(), `pibake-bench-time-${process.pid}-${Math.random().toString(16).slice(2)}`);
  try {
    const result = await execa('/usr/bin/time', ['-f', '%e %M', '-o', statsFile, ...command], {
      env: { ...process.env, ...extraEnv },
      stdout: 'pipe',
      stderr: 'inherit',
    });
    const [wall, rss] = (await readFile(statsFile, 'utf8')).trim().split('\n').pop()!.split(' ').map(Number);
    return { stdout: result.stdout, wall: wall!, maxRssKiB: rss! };
  } finally {
    await rm(statsFile, { force: true });
  }
}

async function runOurs(section: BenchSection, ctx: BenchContext): Promise<Measurement> {
  const { stdout, wall, maxRssKiB } = await timed([
    process.execPath, '--import', 'tsx', SCRIPT, '--child', section.name, '--work', ctx.work, '--size', String(ctx.sizeBytes),
    '--image', ctx.image,
  ]);
  const line = stdout.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
  if (!line) throw new Error(`section ${section.name}: child printed no result (wall ${wall}s)`);
  const { ms, maxRSS } = JSON.parse(line.slice('BENCH_RESULT '.length)) as { ms: number; maxRSS: number };
  return { seconds: ms / 1000, treeMaxRssKiB: maxRssKiB, nodeMaxRssKiB: maxRSS };
}

async function runBare(command: string): Promise<Measurement> {
  const { wall, maxRssKiB } = await timed(['bash', '-c', `set -euo pipefail; ${command}`]);
  return { seconds: wall, treeMaxRssKiB: maxRssKiB };
}

async function childMain(name: string, ctx: BenchContext): Promise<void> {
  const section = SECTIONS.find((s) => s.name === name);
  if (!section) throw new Error(`no section ${name}`);
  const started = performance.now();
  await section.ours(ctx);
  const ms = performance.now() - started;
  process.stdout.write(`BENCH_RESULT ${JSON.stringify({ ms, maxRSS: process.resourceUsage().maxRSS })}\n`);
}

function mib(kib: number | undefined): string {
  return kib === undefined ? '-' : `${(kib / 1024).toFixed(0)} MiB`;
}

function best(runs: Measurement[]): Measurement {
  return runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
}

async function parentMain(args: Args): Promise<void> {
  const work = args.work ?? (await mkdtemp(join(tmpdir(), 'pibake-bench-')));
  await mkdir(work, { recursive: true });
  const ctx: BenchContext = { work, sizeBytes: args.sizeBytes, image: args.image };
  const sections = args.only ? SECTIONS.filter((s) => args.only!.includes(s.name)) : SECTIONS;
  const rows: string[][] = [];
  try {
    const image = await fixture(ctx, 'raw');
    const info = await stat(image);
    console.log(`bench image: ${(info.size / 2 ** 30).toFixed(2)} GiB apparent, ${(info.blocks * 512 / 2 ** 30).toFixed(2)} GiB allocated; ` +
      `${(await import('node:os')).cpus().length} CPUs; best of ${args.repeat}; work ${work}`);
    for (const section of sections) {
      if (section.needsSynth && ctx.image === 'pattern') {
        console.log(`  ${section.name}: skipped (needs --image synth or --image FILE.img)`);
        continue;
      }
      await section.prepare?.(ctx);
      const ours: Measurement[] = [];
      const bare: Measurement[] = [];
      const bareCommand = section.bare ? await section.bare(ctx) : undefined;
      for (let i = 0; i < args.repeat; i += 1) {
        if (bareCommand) {
          bare.push(await runBare(bareCommand));
          const extra = i === args.repeat - 1 && section.reportBare ? await section.reportBare(ctx) : '';
          if (extra) console.log(`  ${section.name} (bare): ${extra}`);
          await section.cleanup?.(ctx);
        }
        ours.push(await runOurs(section, ctx));
        const extra = i === args.repeat - 1 && section.report ? await section.report(ctx) : '';
        if (extra) console.log(`  ${section.name}: ${extra}`);
        await section.cleanup?.(ctx);
      }
      const o = best(ours);
      const b = bare.length > 0 ? best(bare) : undefined;
      const row = [
        section.name,
        `${o.seconds.toFixed(2)} s`,
        b ? `${b.seconds.toFixed(2)} s` : '-',
        b ? `${(o.seconds / b.seconds).toFixed(2)}x` : '-',
        `${mib(o.nodeMaxRssKiB)} / ${mib(o.treeMaxRssKiB)}`,
        b ? mib(b.treeMaxRssKiB) : '-',
      ];
      rows.push(row);
      const difference = b ? `, ${o.seconds >= b.seconds ? '+' : '-'}${Math.abs(o.seconds - b.seconds).toFixed(2)} s` : '';
      console.log(`  ${section.name}: ours ${row[1]}, bare ${row[2]} (${row[3]}${difference})${bareCommand ? `  [bare: ${bareCommand.replaceAll(work, '$W')}]` : ''}`);
    }
    printTable(['section', 'ours', 'bare tool', 'ratio', 'ours peak RSS node / tree', 'bare peak RSS'], rows);
  } finally {
    if (!args.work) await rm(work, { recursive: true, force: true });
  }
}

function printTable(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(`\n${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  for (const row of rows) console.log(line(row));
}

interface Args {
  sizeBytes: number;
  image: string;
  only?: string[];
  work?: string;
  repeat: number;
  child?: string;
}

function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (!match) throw new Error(`--size ${text}: write e.g. 3G, 512M`);
  const power = { '': 0, K: 1, M: 2, G: 3, T: 4 }[match[2]!.toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  return Math.round(Number(match[1]) * 1024 ** power);
}

function parseArgs(argv: string[]): Args {
  const args: Args = { sizeBytes: 3 * 2 ** 30, repeat: 1, image: 'pattern' };
  for (let i = 0; i < argv.length; i += 1) {
    const value = argv[i + 1];
    switch (argv[i]) {
      case '--size': args.sizeBytes = parseSize(value!); i += 1; break;
      case '--only': args.only = value!.split(','); i += 1; break;
      case '--work': args.work = value; i += 1; break;
      case '--repeat': args.repeat = Number(value); i += 1; break;
      case '--child': args.child = value; i += 1; break;
      case '--image':
        if (value !== 'pattern' && value !== 'synth' && !existsSync(value ?? '')) throw new Error('--image pattern|synth|FILE.img (an existing raw image)');
        args.image = value === 'pattern' || value === 'synth' ? value : resolve(value!);
        i += 1;
        break;
      default: throw new Error(`unknown argument ${argv[i]} (use --size 3G, --only a,b, --work DIR, --repeat N, --image pattern|synth|FILE.img)`);
    }
  }
  return args;
}

// ---- fixtures -------------------------------------------------------------------------------

type FixtureName = 'raw' | 'xz';

/** Path of a fixture in the work folder, made on first use. */
export async function fixture(ctx: BenchContext, name: FixtureName): Promise<string> {
  const given = ctx.image !== 'pattern' && ctx.image !== 'synth';
  const raw = given ? ctx.image : join(ctx.work, `bench-${ctx.image}.img`);
  if (!existsSync(raw)) {
    if (ctx.image === 'synth') {
      // A real Raspberry Pi OS layout; its fill is incompressible random data, so the .img.xz
      // fixture takes much longer to make than with the pattern image.
      const sizeMiB = Math.floor(ctx.sizeBytes / MiB);
      const bootMiB = Math.min(512, Math.max(64, Math.floor(sizeMiB / 8)));
      // Half the image as data, within what the root filesystem can take (its 64 MiB base, 10% slack).
      const fillMiB = Math.floor(Math.min(sizeMiB / 2, (sizeMiB - bootMiB - 8 - 64) / 1.1 - 1));
      await synthesizeRaspiosImage({ path: raw, generation: 'trixie', sizeMiB, fillMiB, bootMiB });
    } else {
      await makeBenchImage(raw, ctx.sizeBytes);
    }
  }
  if (name === 'raw') return raw;
  const xz = given ? join(ctx.work, 'bench-file.img.xz') : `${raw}.xz`;
  if (!existsSync(xz)) {
    // -1: fast to make; the bench measures decompression. Multi-threaded so xz -dc can use threads.
    await execa('bash', ['-c', 'xz -T0 -1 -c "$1" > "$2.part" && mv "$2.part" "$2"', '_', raw, xz]);
  }
  return xz;
}

/**
 * The bench image: `sizeBytes` apparent, about half of it data. An MBR (so intake accepts it),
 * then 8 MiB data islands with 8 MiB holes between. Island data is random slices (256 B-8 KiB) of a
 * 512 KiB random dictionary: it compresses about 5:1 with xz -1, like a real image overall (its
 * .img.xz is ~1/5.7 of the raw size), and xz compresses it fast enough that making the .img.xz
 * fixture takes well under a minute per GiB of data on two cores (pure random bytes: far slower).
 * `--image synth` uses synthesizeRaspiosImage instead (real FAT + ext4 layout, random fill).
 */
async function makeBenchImage(path: string, sizeBytes: number): Promise<void> {
  const part = `${path}.part`;
  const dictionary = randomFillSync(Buffer.alloc(512 << 10));
  for (let i = 0; i < dictionary.length; i += 1) dictionary[i]! &= 0x3f;
  const handle = await open(part, 'w');
  try {
    await handle.truncate(sizeBytes);
    const island = 8 * MiB;
    const buffer = Buffer.allocUnsafe(island);
    const picks = new Uint32Array(1 << 16);
    for (let offset = 4 * MiB; offset + island <= sizeBytes; offset += 2 * island) {
      randomFillSync(picks);
      let at = 0;
      for (let p = 0; at < island; p = (p + 2) % picks.length) {
        const length = 256 + (picks[p]! % (8192 - 256));
        const from = picks[p + 1]! % (dictionary.length - length);
        at += dictionary.copy(buffer, at, from, from + Math.min(length, island - at));
      }
      await handle.write(buffer, 0, island, offset);
    }
  } finally {
    await handle.close();
  }
  const bootMiB = Math.min(512, Math.floor(sizeBytes / MiB / 4));
  await execa('sfdisk', ['-q', part], { input: `label: dos\nstart=8192, size=${bootMiB}MiB, type=c\ntype=83\n` });
  await execa('mv', [part, path]);
}

// ---- sections -------------------------------------------------------------------------------

const out = (ctx: BenchContext, name: string): string => join(ctx.work, name);
const allocated = async (path: string): Promise<string> => {
  const info = await stat(path);
  return `${(info.size / 2 ** 30).toFixed(2)} GiB apparent, ${((info.blocks * 512) / 2 ** 30).toFixed(2)} GiB allocated`;
};

export const SECTIONS: BenchSection[] = [
  {
    name: 'intake-xz',
    prepare: async (ctx) => {
      await fixture(ctx, 'xz');
    },
    bare: async (ctx) => `xz -T0 -dc ${await fixture(ctx, 'xz')} > ${out(ctx, 'bare.img')}`,
    ours: async (ctx) => {
      await obtainBase({ path: await fixture(ctx, 'xz') }, { cacheDir: out(ctx, 'cache') });
    },
    report: async (ctx) => {
      const { readdir } = await import('node:fs/promises');
      const cached = (await readdir(out(ctx, 'cache'))).find((n) => n.endsWith('.img'))!;
      return `cache image ${await allocated(join(out(ctx, 'cache'), cached))}; xz input ${((await stat(await fixture(ctx, 'xz'))).size / MiB).toFixed(0)} MiB`;
    },
    reportBare: async (ctx) => `output ${await allocated(out(ctx, 'bare.img'))}`,
    cleanup: async (ctx) => {
      await rm(out(ctx, 'cache'), { recursive: true, force: true });
      await rm(out(ctx, 'bare.img'), { force: true });
    },
  },
  {
    name: 'clone',
    bare: async (ctx) => `cp --sparse=always ${await fixture(ctx, 'raw')} ${out(ctx, 'clone.img')}`,
    ours: async (ctx) => {
      const method = await cloneImage(await fixture(ctx, 'raw'), out(ctx, 'clone.img'));
      await writeFile(out(ctx, 'clone.method'), method);
    },
    report: async (ctx) => `method ${await readFile(out(ctx, 'clone.method'), 'utf8')}; copy ${await allocated(out(ctx, 'clone.img'))}`,
    reportBare: async (ctx) => `copy ${await allocated(out(ctx, 'clone.img'))}`,
    cleanup: async (ctx) => {
      await rm(out(ctx, 'clone.img'), { force: true });
    },
  },
  {
    name: 'compress-zstd',
    bare: async (ctx) => `zstd ${compressArgs('zstd', await fixture(ctx, 'raw')).join(' ')} > ${out(ctx, 'bare.img.zst')}`,
    ours: async (ctx) => {
      await compressImage(await fixture(ctx, 'raw'), out(ctx, 'node.img.zst'), 'zstd', { threads: 0 });
    },
    report: async (ctx) => `archive ${((await stat(out(ctx, 'node.img.zst'))).size / MiB).toFixed(0)} MiB`,
    cleanup: async (ctx) => {
      await rm(out(ctx, 'node.img.zst'), { force: true });
      await rm(out(ctx, 'bare.img.zst'), { force: true });
    },
  },
  {
    name: 'bmap',
    bare: async (ctx) => `bmaptool create -o ${out(ctx, 'bare.bmap')} ${await fixture(ctx, 'raw')}`,
    ours: async (ctx) => {
      await writeBmapFile(await fixture(ctx, 'raw'), out(ctx, 'node.bmap'));
    },
    cleanup: async (ctx) => {
      await rm(out(ctx, 'node.bmap'), { force: true });
      await rm(out(ctx, 'bare.bmap'), { force: true });
    },
  },
  {
    name: 'sha256',
    bare: async (ctx) => `sha256sum ${await fixture(ctx, 'raw')} > /dev/null`,
    ours: async (ctx) => {
      await sha256File(await fixture(ctx, 'raw'));
    },
  },
  ...checkSections(fixture),
  ...buildSections(fixture),
  ...cliSections(),
];

// ---- entry ----------------------------------------------------------------------------------

const args = parseArgs(process.argv.slice(2));
if (args.child) {
  await childMain(args.child, { work: args.work!, sizeBytes: args.sizeBytes, image: args.image });
} else {
  await parentMain(args);
}
