/** `pibake build`: every card of the cluster in one command. */
import { readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { COMPRESSIONS } from '../bytes/formats.ts';
import type { PackageSource } from '../render/firstboot.ts';
import { defineCommand, withConfig, withJson, withNodes, withOut } from './options.ts';

/** `--packages`, shared with `pibake render` so a render shows what a build with it bakes. */
export const packagesOption = {
  type: 'string', choices: ['card', 'online'] as const satisfies readonly PackageSource[], default: 'card' as const,
  describe: 'card: fetch the role packages now and carry them on each card (first boot needs no network); online: each card installs them from its apt sources at first boot',
} as const;

export const command = defineCommand({
  builder: (y) =>
    withJson(withOut(withNodes(withConfig(y), 'build only these nodes'), 'output root; images go to <out>/<cluster>/'), 'print one JSON event per line on stdout (for CI)')
      .option('base', { type: 'string', describe: 'base image file (.img, .img.xz, .img.zst, .zip) or https URL; overrides the inventory' })
      .option('base-sha256', { type: 'string', describe: 'SHA-256 of --base (required for a URL)' })
      .option('jobs', { alias: 'j', type: 'number', default: Math.max(1, Math.min(4, os.availableParallelism())), describe: 'nodes baked at once' })
      .option('compress', { type: 'string', choices: COMPRESSIONS, describe: 'also write <node>.img.zst / .img.xz' })
      .option('bmap', { type: 'boolean', default: false, describe: 'also write <node>.img.bmap (bmaptool format)' })
      .option('force', { type: 'boolean', default: false, describe: 'bake every selected node even if up to date' })
      .option('sealed', { type: 'boolean', default: false, describe: 'release images: leave every secret out (needs no cluster.secrets.yaml); pibake seal/flash adds them' })
      .option('packages', packagesOption)
      .option('cache-dir', { type: 'string', describe: 'where base images, package lists and .debs are cached (default: XDG cache)' }),
  handler: async (args) => {
    const [{ buildCluster }, { jsonReporter, lineReporter, ttyReporter }] = await Promise.all([import('../build/build-cluster.ts'), import('../build/report.ts')]);
    const reporter = args.json ? jsonReporter() : process.stderr.isTTY ? ttyReporter() : lineReporter();
    const stopInterrupted = await cleanUpOnInterrupt(path.resolve(args.out));
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
        reporter,
      });
    } finally {
      reporter.close();
      stopInterrupted();
    }
  },
});

/**
 * On Ctrl-C, delete this process's unfinished files before exiting, so nothing half-written is
 * left; files from a crash are swept by the next build instead.
 */
async function cleanUpOnInterrupt(outRoot: string): Promise<() => void> {
  const { isPartialOf } = await import('../bytes/temp-name.ts');
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
