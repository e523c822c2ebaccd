/** `pibake build`: every card of the cluster in one command. */
import { readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { buildCluster } from '../bake/build.ts';
import type { Compression } from '../bytes/formats.ts';
import { jsonReporter, lineReporter, ttyReporter } from '../bake/report.ts';
import { isPartialOf } from '../bytes/temp-name.ts';
import type { PackageSource } from '../render/firstboot.ts';

interface BuildArgs {
  config: string;
  base?: string;
  'base-sha256'?: string;
  node?: string[];
  out: string;
  jobs: number;
  compress?: Compression;
  bmap: boolean;
  force: boolean;
  sealed: boolean;
  json: boolean;
  packages: PackageSource;
  'cache-dir'?: string;
}

/** `--packages`, shared with `pibake render` so a render shows what a build with it bakes. */
export const packagesOption = {
  type: 'string', choices: ['card', 'online'] as const, default: 'card' as const,
  describe: 'card: fetch the role packages now and carry them on each card (first boot needs no network); online: each card installs them from its apt sources at first boot',
} as const;

export const buildCommand: CommandModule<object, BuildArgs> = {
  command: 'build',
  describe: 'Bake output/<cluster>/<node>.img for every node of the inventory (only what changed)',
  builder: (y) =>
    y
      .option('config', { alias: 'c', type: 'string', default: 'cluster.yaml', describe: 'the cluster inventory' })
      .option('base', { type: 'string', describe: 'base image file (.img, .img.xz, .img.zst, .zip) or https URL; overrides the inventory' })
      .option('base-sha256', { type: 'string', describe: 'SHA-256 of --base (required for a URL)' })
      .option('node', { type: 'string', array: true, describe: 'build only these nodes (repeatable)' })
      .option('out', { alias: 'o', type: 'string', default: 'output', describe: 'output root; images go to <out>/<cluster>/' })
      .option('jobs', { alias: 'j', type: 'number', default: Math.max(1, Math.min(4, os.availableParallelism())), describe: 'nodes baked at once' })
      .option('compress', { type: 'string', choices: ['zstd', 'xz'] as const, describe: 'also write <node>.img.zst / .img.xz' })
      .option('bmap', { type: 'boolean', default: false, describe: 'also write <node>.img.bmap (bmaptool format)' })
      .option('force', { type: 'boolean', default: false, describe: 'bake every selected node even if up to date' })
      .option('sealed', { type: 'boolean', default: false, describe: 'release images: leave every secret out (needs no cluster.secrets.yaml); pibake seal/flash adds them' })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON event per line on stdout (for CI)' })
      .option('packages', packagesOption)
      .option('cache-dir', { type: 'string', describe: 'where base images, package lists and .debs are cached (default: XDG cache)' }) as never,
  handler: async (args) => {
    const reporter = args.json ? jsonReporter() : process.stderr.isTTY ? ttyReporter() : lineReporter();
    const stopInterrupted = cleanUpOnInterrupt(path.resolve(args.out));
    try {
      await buildCluster({
        config: args.config,
        base: args.base,
        baseSha256: args['base-sha256'],
        nodes: args.node,
        out: args.out,
        jobs: args.jobs,
        compress: args.compress,
        bmap: args.bmap,
        force: args.force,
        sealed: args.sealed,
        packages: args.packages,
        cacheDir: args['cache-dir'],
        progress: process.stderr.isTTY === true && !args.json,
        reporter,
      });
    } finally {
      reporter.close();
      stopInterrupted();
    }
  },
};

/**
 * On Ctrl-C, delete this process's unfinished files before exiting, so nothing half-written is
 * left; files from a crash are swept by the next build instead.
 */
function cleanUpOnInterrupt(outRoot: string): () => void {
  const onSignal = async (signal: NodeJS.Signals) => {
    process.stderr.write(`\ninterrupted (${signal}): removing unfinished files\n`);

    try {
      for (const cluster of await readdir(outRoot)) {
        const dir = path.join(outRoot, cluster);
        const names = await readdir(dir).catch(() => [] as string[]);
        await Promise.all(names.filter((n) => isPartialOf(n, process.pid)).map((n) => rm(path.join(dir, n), { force: true, recursive: true })));
      }
    } finally {
      process.exit(130);
    }
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}
