/** `pibake inspect IMAGE|URL [--sha256 HEX] [--json]`: what pibake sees in a base image. Read-only. */
import { defineCommand, printResult, withJson } from './options.ts';

export const command = defineCommand({
  builder: (y) =>
    withJson(y.positional('image', { type: 'string', demandOption: true, describe: 'a Raspberry Pi OS or node image: .img, .img.xz, .img.zst or .zip, or an https URL of one (needs --sha256)' }), 'print the report as JSON')
      .option('sha256', { type: 'string', describe: 'SHA-256 of the image file (as SHA256SUMS lists it): required for a URL, whose download is checked before it is read; checked for a file when given' }),
  handler: async (args) => {
    const [{ formatReport, inspectImage }, { withLocalImage }] = await Promise.all([import('../image/inspect.ts'), import('../image/remote.ts')]);
    // Progress of a download goes to stderr, like flash's; the report to stdout.
    const report = await withLocalImage(args.image, { sha256: args.sha256, progress: process.stderr }, (local) => inspectImage(local, args.image));
    printResult(args.json, report, () => formatReport(report));
  },
});
