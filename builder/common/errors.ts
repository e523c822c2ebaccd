/**
 * The one error type of pibake. Every failure a user can cause or fix is a PibakeError:
 * what is wrong, where (file:line:column when there is one), and a hint saying how to fix it.
 * The CLI prints these as single lines without a stack trace; anything else is a bug.
 */
export interface Location {
  file: string;
  line?: number;
  column?: number;
}

export interface Problem {
  message: string;
  hint?: string;
  location?: Location;
}

export interface PibakeErrorOptions {
  hint?: string;
  cause?: unknown;
  location?: Location;
  /** Further problems found in the same pass, so the user can fix them all at once. */
  problems?: Problem[];
}

export class PibakeError extends Error {
  readonly hint?: string;
  readonly location?: Location;
  readonly problems: Problem[];

  constructor(message: string, options: PibakeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PibakeError';
    this.hint = options.hint;
    this.location = options.location;
    this.problems = options.problems ?? [{ message, hint: options.hint, location: options.location }];
  }

  /** One error carrying every problem found, e.g. all validation failures of an inventory. */
  static fromProblems(summary: string, problems: Problem[]): PibakeError {
    return new PibakeError(summary, { problems });
  }
}

export function formatLocation(location: Location | undefined): string {
  if (!location) return '';
  let text = location.file;
  if (location.line !== undefined) text += `:${location.line}`;
  if (location.line !== undefined && location.column !== undefined) text += `:${location.column}`;
  return text;
}

export function formatProblem(problem: Problem): string {
  const where = formatLocation(problem.location);
  const hint = problem.hint ? ` (hint: ${problem.hint})` : '';
  return `${where ? `${where}: ` : ''}${problem.message}${hint}`;
}

/** The lines the CLI prints for an error: one per problem, `error: ` first. */
export function formatError(error: unknown): string[] {
  if (error instanceof PibakeError) return error.problems.map((p) => `error: ${formatProblem(p)}`);
  const message = error instanceof Error ? error.message : String(error);
  return [`error: ${message.split('\n')[0]} (this is a bug in pibake; please report it with PIBAKE_DEBUG=1 output)`];
}
