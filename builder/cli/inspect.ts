/** `pibake inspect IMAGE [--json]`: what pibake sees in a base image. Read-only. */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { formatReport, inspectImage } from '../image/inspect.ts';

interface InspectArgs {
  image: string;
  json: boolean;
}

export const inspectCommand: CommandModule<object, InspectArgs> = {
  command: 'inspect <image>',
  describe: 'Show partitions, filesystems, OS generation, cloud-init and first-boot files of an image',
  builder: (yargs: Argv<object>) =>
    yargs
      .positional('image', { type: 'string', demandOption: true, describe: 'a Raspberry Pi OS or node image: .img, .img.xz, .img.zst or .zip' })
      .option('json', { type: 'boolean', default: false, describe: 'print the report as JSON' }) as unknown as Argv<InspectArgs>,
  handler: async (args: ArgumentsCamelCase<InspectArgs>) => {
    const report = await inspectImage(args.image);
    const text = args.json ? JSON.stringify(report, null, 2) : formatReport(report).join('\n');
    process.stdout.write(`${text}\n`);
  },
};
