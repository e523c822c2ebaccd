/**
 * Temp names for files written beside their final name and renamed when complete. They end in
 * `.partial`, the project's mark for work in progress, so the build's sweep (bake/output.ts)
 * removes those a killed process (SIGKILL, power loss) leaves behind.
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
