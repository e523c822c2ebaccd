/** `pibake seal IMAGE --node NAME --out FILE`: a sealed release image made whole for one node. */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { sealImage } from '../bake/seal.ts';

interface SealArgs {
  image: string;
  node: string;
  out: string;
  config: string;
}

export const sealCommand: CommandModule<object, SealArgs> = {
  command: 'seal <image>',
  describe: 'Add a node\'s secrets (from cluster.secrets.yaml) to its sealed image, into a new image file for Imager, Etcher or dd',
  builder: (yargs: Argv<object>) =>
    yargs
      .positional('image', { type: 'string', demandOption: true, describe: 'the node\'s raw image from pibake build --sealed' })
      .option('node', { type: 'string', demandOption: true, describe: 'the node the image is for' })
      .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'the image file to write (holds the node\'s secrets: mode 0600)' })
      .option('config', { alias: 'c', type: 'string', default: 'cluster.yaml', describe: 'the inventory the image was built from; its secrets file beside it' }) as unknown as Argv<SealArgs>,
  handler: async (args: ArgumentsCamelCase<SealArgs>) => {
    const result = await sealImage({ image: args.image, node: args.node, out: args.out, config: args.config });
    process.stdout.write(`sealed ${args.node}: ${result.added.length} secret files added, ${result.out}\n`);
  },
};
