/** The pibake command line: parses arguments, runs one command, prints errors as single lines. */
import type { Argv } from 'yargs';
import { formatError } from '../common/errors.ts';
import { toolVersion } from '../common/paths.ts';
import { commandName, commands } from './commands.ts';
import { takeExitCode } from './exit-code.ts';

/**
 * Commands whose exit code is a state (pibake status: 0 healthy, 1 degraded, 2 down) say "could
 * not check at all" with 3, as monitoring plugins do, so a bad option never reads as a verdict.
 */
const STATE_COMMANDS = new Set(['status']);

export async function main(argv: string[]): Promise<number> {
  const failed = (usual: number) => (STATE_COMMANDS.has(argv[0] ?? '') ? 3 : usual);
  // Answered before the parser is even loaded: importing yargs costs more than Node's own start.
  if (argv.length === 1 && argv[0] === '--version') {
    process.stdout.write(`${toolVersion}\n`);
    return 0;
  }
  const { default: yargs } = await import('yargs');
  let exitCode: number;
  let parser = yargs(argv)
    .scriptName('pibake')
    .usage('$0 <command> [options]\n\nBake a flashable Raspberry Pi OS image for every node of a cluster, in user space.');
  // Only the command being run (its name is the first word that names one) is loaded; the others
  // are listed by name for --help, and never run.
  const chosen = commands.find((entry) => commandName(entry) === argv.find((word) => commands.some((e) => commandName(e) === word)));
  const definition = chosen ? (await chosen.load()).command : undefined;
  for (const entry of commands) {
    if (entry === chosen && definition) parser = definition.attach(parser, entry.command, entry.describe);
    else parser = parser.command(entry.command, entry.describe, {}, () => {
      throw new UsageError(`${commandName(entry)} was not loaded`);
    });
  }
  parser = parser
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
  skipHelpCache(parser);
  try {
    const parsed = await parser.parseAsync();
    // Parsing succeeded, so yargs took the loaded command (the others' stubs throw) and printed no
    // help (that exits): its handler runs now.
    await definition?.run(parsed);
    exitCode = takeExitCode() ?? 0;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`error: ${error.message} (see pibake --help)\n`);
      return failed(2);
    }
    for (const line of formatError(error)) process.stderr.write(`${line}\n`);
    if (process.env.PIBAKE_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    exitCode = failed(1);
  }
  return exitCode;
}

class UsageError extends Error {}

/**
 * yargs renders the whole help text (some 40 ms of string measuring) every time it runs a command,
 * for a handler that might ask for it. pibake's handlers run after parsing and never do, and --help
 * renders it when asked, so the cache is switched off. It is yargs' internal interface: should it
 * change, the guard leaves yargs as it is (only slower).
 */
function skipHelpCache(parser: Argv): void {
  const internal = parser as unknown as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } } };
  const usage = internal.getInternalMethods?.().getUsageInstance?.();
  if (typeof usage?.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => {};
}
