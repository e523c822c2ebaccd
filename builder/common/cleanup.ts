/**
 * Paths this process must not leave behind when it is interrupted: temp images in the cache,
 * staging folders beside an image. Registered while they exist; on SIGINT/SIGTERM/SIGHUP or exit
 * they are removed (recursively) and the signal is re-raised so the process dies of it as it would
 * have without us. What a SIGKILL leaves is swept by the next run (by the pid in the name).
 */
import { rmSync } from 'node:fs';

const live = new Set<string>();

/** Remove `path` if this process is interrupted or exits before `forgetOnExit(path)`. */
export function removeOnExit(path: string): void {
  if (live.size === 0) attach();
  live.add(path);
}

/** `path` is finished or already removed: no longer remove it on exit. */
export function forgetOnExit(path: string): void {
  live.delete(path);
  if (live.size === 0) detach();
}

function removeLive(): void {
  for (const path of live) rmSync(path, { force: true, recursive: true });
  live.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  removeLive();
  detach();
  process.kill(process.pid, signal);
}

function attach(): void {
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  process.on('exit', removeLive);
}

function detach(): void {
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('SIGHUP', onSignal);
  process.off('exit', removeLive);
}
