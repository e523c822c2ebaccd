/**
 * `pibake render`: render each node's files into a folder, without touching any image. Shows
 * exactly what `pibake build` would bake, for review and for testing roles and overlays.
 */
import type { Argv, CommandModule } from 'yargs';
import { renderFolder } from '../bake/render-folder.ts';
import type { Generation } from '../inventory/types.ts';
import type { PackageSource } from '../render/firstboot.ts';
import { packagesOption } from './build.ts';

interface RenderArgs {
  config: string;
  node?: string[];
  out: string;
  generation?: Generation;
  base?: string;
  'base-sha256'?: string;
  'cache-dir'?: string;
  roles?: string;
  overlays?: string;
  cmdline?: string;
  packages: PackageSource;
}

export const renderCommandModule: CommandModule<object, RenderArgs> = {
  command: 'render',
  describe: 'Render every node\'s files (rootfs, boot partition, seeds) into a folder for review; touches no image',
  builder: (yargs: Argv) =>
    yargs
      .option('config', { alias: 'c', type: 'string', default: 'cluster.yaml', describe: 'cluster inventory' })
      .option('node', { alias: 'n', type: 'string', array: true, describe: 'render only these nodes (repeatable)' })
      .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'output folder (DIR/<node>/rootfs, bootfs, modes.txt)' })
      .option('base', { type: 'string', describe: 'the base image pibake build uses (file or https URL): its generation and packages, so the render is the build\'s' })
      .option('base-sha256', { type: 'string', describe: 'SHA-256 of --base (required for a URL)' })
      .option('cache-dir', { type: 'string', describe: 'where base images are cached (default: XDG cache)' })
      .option('generation', { choices: ['trixie', 'bookworm'] as const, describe: 'without --base: the Raspberry Pi OS generation to render for (default trixie)' })
      .option('roles', { type: 'string', describe: 'folder of role files (default: as build, roles/ beside the inventory, else pibake\'s own)' })
      .option('overlays', { type: 'string', describe: 'folder of overlays (default: as build, overlays/ beside the inventory, else pibake\'s own)' })
      .option('packages', packagesOption)
      .option('cmdline', { type: 'string', describe: 'a base cmdline.txt to apply the boot edits to (writes bootfs/cmdline.txt)' }) as unknown as Argv<RenderArgs>,
  handler: async (args) => {
    const written = await renderFolder({
      config: args.config, nodes: args.node, out: args.out, generation: args.generation,
      base: args.base, baseSha256: args['base-sha256'], cacheDir: args['cache-dir'], progress: process.stderr.isTTY === true,
      folders: { roles: args.roles, overlays: args.overlays }, cmdline: args.cmdline, packages: args.packages,
    });
    for (const dir of written) process.stdout.write(`rendered ${dir}\n`);
  },
};
