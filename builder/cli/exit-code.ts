/**
 * A command's own exit code, for commands whose result is a state rather than success or failure
 * (`pibake status`: 0 healthy, 1 degraded, 2 down). main() returns it after the command ran.
 */
let requested: number | undefined;

export function setExitCode(code: number): void {
  requested = code;
}

export function takeExitCode(): number | undefined {
  const code = requested;
  requested = undefined;
  return code;
}
