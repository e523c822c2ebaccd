/**
 * `pibake render`: render each node's files into a folder, without touching any image. Shows
 * exactly what `pibake build` would bake, for review and for testing roles and overlays.
 */
import type { Generation } from '../common/base-image.ts';
import { packagesOption } from './build.ts';
import { defineCommand, printResult, withConfig, withJson, withNodes, withRequiredOut } from './options.ts';

export const command = defineCommand({
  builder: (y) =>
    withJson(withRequiredOut(withNodes(withConfig(y), 'render only these nodes'), 'output folder (DIR/<node>/rootfs, bootfs, modes.txt)'))
      .option('base', { type: 'string', describe: 'the base image pibake build uses (file or https URL): its generation and packages, so the render is the build\'s' })
      .option('base-sha256', { type: 'string', describe: 'SHA-256 of --base (required for a URL)' })
      .option('cache-dir', { type: 'string', describe: 'where base images are cached (default: XDG cache)' })
      .option('generation', { choices: ['trixie', 'bookworm'] as const satisfies readonly Generation[], describe: 'without --base: the Raspberry Pi OS generation to render for (default trixie)' })
      .option('roles', { type: 'string', describe: 'folder of role files (default: as build, roles/ beside the inventory, else pibake\'s own)' })
      .option('overlays', { type: 'string', describe: 'folder of overlays (default: as build, overlays/ beside the inventory, else pibake\'s own)' })
      .option('packages', packagesOption)
      .option('cmdline', { type: 'string', describe: 'a base cmdline.txt to apply the boot edits to (writes bootfs/cmdline.txt)' }),
  handler: async (args) => {
    // Loaded when the command runs: --help and --version load none of the pipeline.
    const { renderFolder } = await import('../build/render-folder.ts');
    const written = await renderFolder({
      config: args.config, nodes: args.node, out: args.out, generation: args.generation,
      base: args.base, baseSha256: args['base-sha256'], cacheDir: args['cache-dir'], progress: process.stderr.isTTY === true && !args.json,
      folders: { roles: args.roles, overlays: args.overlays }, cmdline: args.cmdline, packages: args.packages,
    });
    printResult(args.json, { rendered: written }, () => written.map((dir) => `rendered ${dir}`));
  },
});
