/**
 * Bench sections for the command line as a user meets it at the prompt: `pibake --version` and a
 * second `pibake build` of the demo cluster that bakes nothing, each a whole process (start-up,
 * module loading and all), against `node -e 0`, the floor any Node program pays. They run on any
 * `--image`: the no-op build uses its own small synthesized base, as `npm run demo` does.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { packageRoot } from '../builder/common/paths.ts';
import { synthesizeRaspiosImage } from '../test/helpers/synthesize.ts';
import type { BenchContext, BenchSection } from './bench.ts';

const CLI = join(packageRoot, 'bin/pibake.js');

/** `pibake build` of the shipped cluster onto the demo's synthesized base (made once). */
async function demoBuildArgs(ctx: BenchContext): Promise<string[]> {
  const dir = join(ctx.work, 'cli-demo');
  const config = join(dir, 'cluster.yaml');
  const base = join(dir, 'demo-base-trixie.img');
  if (!existsSync(config)) {
    await mkdir(dir, { recursive: true });
    await copyFile(join(packageRoot, 'cluster.yaml'), config);
  }
  if (!existsSync(base)) await synthesizeRaspiosImage({ path: base, generation: 'trixie', sizeMiB: 1024 });
  return ['build', '--config', config, '--base', base, '--out', join(dir, 'output'), '--packages', 'online',
    '--cache-dir', join(dir, 'cache')];
}

async function pibake(args: string[]): Promise<void> {
  await execa(process.execPath, [CLI, ...args], { stdout: 'ignore' });
}

export function cliSections(): BenchSection[] {
  return [
    {
      name: 'cli-version',
      bare: () => `${process.execPath} -e 0`,
      ours: async () => pibake(['--version']),
    },
    {
      name: 'cli-noop-build',
      // The first build bakes every card; the measured ones find nothing changed.
      prepare: async (ctx) => pibake(await demoBuildArgs(ctx)),
      bare: () => `${process.execPath} -e 0`,
      ours: async (ctx) => pibake(await demoBuildArgs(ctx)),
      report: async () => 'a rebuild with nothing changed, at the prompt (5 nodes, 1 GiB synthesized base)',
    },
  ];
}
