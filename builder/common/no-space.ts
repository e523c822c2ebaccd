/**
 * A full disk is the user's to fix, not a pibake bug: name the folder that filled, what was being
 * written and how much room it needs, with the space left there.
 */
import { statfs } from 'node:fs/promises';
import { PibakeError } from './errors.ts';
import { formatBytes } from './bytes.ts';

/** Whether `error` (or a cause of it) is "no space left on device", from node or from a tool's stderr. */
export function isNoSpace(error: unknown): boolean {
  for (let e = error as { code?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (e.code === 'ENOSPC' || (typeof e.message === 'string' && /no space left on device/i.test(e.message))) return true;
  }
  return false;
}

/** Free bytes for this user in the filesystem holding `folder`, if it can be asked. */
export async function freeBytes(folder: string): Promise<number | undefined> {
  try {
    const info = await statfs(folder);
    return info.bavail * info.bsize;
  } catch {
    return undefined;
  }
}

/**
 * "the cache folder X is full (3 MiB free): unpacking base.img.xz needs up to 2.9 GiB" with the hint.
 * `what` names the folder's role ('the cache folder'); `need` says what needed how much. The
 * original error is not kept as the cause: this message replaces it (and is not "no space" again).
 */
export async function noSpaceError(what: string, folder: string, need: string, hint: string): Promise<PibakeError> {
  const free = await freeBytes(folder);
  return new PibakeError(`${what} ${folder} is full${free === undefined ? '' : ` (${formatBytes(free)} free)`}: ${need}`, { hint });
}
