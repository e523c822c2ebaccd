/** The pibake command line: parses arguments, runs one command, prints errors as single lines. */
import yargs, { type CommandModule } from 'yargs';
import { formatError } from '../common/errors.ts';
import { toolVersion } from '../common/paths.ts';
import { commands } from './commands.ts';

export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const parser = yargs(argv)
    .scriptName('pibake')
    .usage('$0 <command> [options]\n\nBake a flashable Raspberry Pi OS image for every node of a cluster, in user space.')
    .command(commands as unknown as CommandModule[])
    .demandCommand(1, 'name a command; see pibake --help')
    .strict()
    .help()
    .alias('h', 'help')
    // pibake's own version: yargs alone would look for a package.json from the current folder.
    .version(toolVersion)
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((message, error) => {
      throw error ?? new UsageError(message);
    });
  try {
    await parser.parseAsync();
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`error: ${error.message} (see pibake --help)\n`);
      return 2;
    }
    for (const line of formatError(error)) process.stderr.write(`${line}\n`);
    if (process.env.PIBAKE_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    exitCode = 1;
  }
  return exitCode;
}

class UsageError extends Error {}
