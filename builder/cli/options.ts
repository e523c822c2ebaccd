/**
 * The options every command spells the same way, and the one pattern commands are declared in.
 * A command module imports only this and types; its handler imports the work it calls when it
 * runs, so `pibake --version` and `pibake --help` load no pipeline code.
 */
import type { ArgumentsCamelCase, Argv } from 'yargs';

/** `--config -c`: the cluster inventory. */
export function withConfig<T>(y: Argv<T>, describe = 'the cluster inventory'): Argv<T & { config: string }> {
  return y.option('config', { alias: 'c', type: 'string', default: 'cluster.yaml', describe });
}

/** `--node -n NAME`, repeatable: only these nodes (all when absent). */
export function withNodes<T>(y: Argv<T>, describe: string): Argv<T & { node: string[] | undefined }> {
  return y.option('node', { alias: 'n', type: 'string', array: true, describe: `${describe} (repeatable)` });
}

/** `--node -n NAME` where a command is about exactly one node. */
export function withOneNode<T>(y: Argv<T>, describe: string): Argv<T & { node: string }> {
  return y.option('node', { alias: 'n', type: 'string', demandOption: true, describe });
}

/** `--out -o`: the output root (default ./output, as build writes) or a file or folder the command makes. */
export function withOut<T>(y: Argv<T>, describe: string, fallback = 'output'): Argv<T & { out: string }> {
  return y.option('out', { alias: 'o', type: 'string', default: fallback, describe });
}

/** `--out -o` that the user must give (no sensible default: a new file or folder). */
export function withRequiredOut<T>(y: Argv<T>, describe: string): Argv<T & { out: string }> {
  return y.option('out', { alias: 'o', type: 'string', demandOption: true, describe });
}

/** `--json`: machine-readable output on stdout instead of text. */
export function withJson<T>(y: Argv<T>, describe = 'print the result as JSON on stdout'): Argv<T & { json: boolean }> {
  return y.option('json', { type: 'boolean', default: false, describe });
}

/** Print a command's result: JSON when asked for, else its text lines. */
export function printResult(json: boolean, value: unknown, lines: () => string[]): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : lines().map((line) => `${line}\n`).join(''));
}

/**
 * A command's options and handler. The handler's arguments are the type the builder produces, so
 * the two cannot disagree and no cast is needed.
 */
export interface CommandParts<A> {
  builder: (y: Argv) => Argv<A>;
  handler: (args: ArgumentsCamelCase<A>) => Promise<void>;
}

/** A command ready to be attached to the parser, its argument type kept inside. */
export interface CommandDefinition {
  /** Adds the command and its options to the parser, without the handler (see run). */
  attach(y: Argv, command: string, describe: string): Argv;
  /**
   * Runs the handler on what the parser returned. It runs after parsing rather than inside yargs,
   * which renders the whole help text (about 40 ms) whenever it calls a command's handler.
   */
  run(parsed: unknown): Promise<void>;
}

export function defineCommand<A>(parts: CommandParts<A>): CommandDefinition {
  return {
    attach: (y, command, describe) => y.command(command, describe, parts.builder),
    run: (parsed) => parts.handler(parsed as ArgumentsCamelCase<A>),
  };
}
