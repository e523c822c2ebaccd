/** `pibake seal IMAGE --node NAME --out FILE`: a sealed release image made whole for one node. */
import { defineCommand, printResult, withConfig, withJson, withOneNode, withRequiredOut } from './options.ts';

export const command = defineCommand({
  builder: (y) =>
    withJson(withRequiredOut(withOneNode(withConfig(
      y.positional('image', { type: 'string', demandOption: true, describe: 'the node\'s raw image from pibake build --sealed' }),
      'the inventory the image was built from; its secrets file beside it'),
    'the node the image is for'), 'the image file to write (holds the node\'s secrets: mode 0600)')),
  handler: async (args) => {
    const { sealImage } = await import('../build/seal.ts');
    const result = await sealImage({ image: args.image, node: args.node, out: args.out, config: args.config });
    printResult(args.json, { node: args.node, out: result.out, added: result.added },
      () => [`sealed ${args.node}: ${result.added.length} secret files added, ${result.out}`]);
  },
});
