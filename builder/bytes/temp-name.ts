/**
 * Temp names for files written beside their final name and renamed when complete. They end in
 * `.partial`, the project's mark for work in progress, so the build's sweep (package/output.ts)
 * removes those a killed process (SIGKILL, power loss) leaves behind. The pid in the name tells
 * folders shared by concurrent processes (the base cache) whose work in progress is stale.
 */
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

export function siblingTempPath(finalPath: string): string {
  return join(dirname(finalPath), `.${basename(finalPath)}.${process.pid}-${randomBytes(4).toString('hex')}.partial`);
}

const PARTIAL = /\.partial$/;

/** Work in progress of any process: what a build sweeps from its output folder. */
export function isPartial(name: string): boolean {
  return PARTIAL.test(name);
}

/** Work in progress of the process `pid`: what it removes itself when interrupted. */
export function isPartialOf(name: string, pid: number): boolean {
  return name.endsWith('.partial') && name.includes(`.${pid}-`);
}

/** The pid of the process whose work in progress `name` is, if it is a `.partial` name. */
export function partialOwner(name: string): string | undefined {
  return /\.(\d+)-[0-9a-f]+\.partial$/.exec(name)?.[1];
}

/** A private staging folder name in `folder`; a `.partial` like any work in progress, so sweeps find it. */
export function stagingDirPath(folder: string): string {
  return siblingTempPath(join(folder, 'pibake-stage'));
}

/** Whether process `pid` still runs (EPERM: it runs, as another user). */
export function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
