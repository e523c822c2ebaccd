/** `pibake inspect IMAGE [--json]`: what pibake sees in a base image. Read-only. */
import { defineCommand, printResult, withJson } from './options.ts';

export const command = defineCommand({
  builder: (y) =>
    withJson(y.positional('image', { type: 'string', demandOption: true, describe: 'a Raspberry Pi OS or node image: .img, .img.xz, .img.zst or .zip' }), 'print the report as JSON'),
  handler: async (args) => {
    const { formatReport, inspectImage } = await import('../image/inspect.ts');
    const report = await inspectImage(args.image);
    printResult(args.json, report, () => formatReport(report));
  },
});
