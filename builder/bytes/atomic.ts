/**
 * Files that appear whole or not at all: written under a temp name beside the target (a
 * `.partial`, see temp-name.ts) and renamed over it when complete. A reader sees the old file or
 * the new one, never part of one, and a failure leaves no temp file behind.
 */
import { open, readFile, rename, rm } from 'node:fs/promises';
import { siblingTempPath } from './temp-name.ts';

/** Make `target` through `fill(temp)`, then rename the temp over it; on failure remove the temp. */
export async function replaceAtomically<T>(target: string, fill: (temp: string) => Promise<T>): Promise<T> {
  const temp = siblingTempPath(target);
  try {
    const result = await fill(temp);
    await rename(temp, target);
    return result;
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** Write `data` to `file` atomically, synced before the rename so a power cut cannot leave it empty. */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o644): Promise<void> {
  await replaceAtomically(file, async (temp) => {
    const handle = await open(temp, 'wx', mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
  });
}

/**
 * writeFileAtomic, unless `file` already holds exactly `data`: then nothing is written or synced
 * (a rebuild that changes nothing rewrites none of its records). True when it wrote.
 */
export async function updateFileAtomic(file: string, data: string | Buffer, mode = 0o644): Promise<boolean> {
  const current = await readFile(file).catch(() => undefined);
  if (current?.equals(typeof data === 'string' ? Buffer.from(data) : data)) return false;
  await writeFileAtomic(file, data, mode);
  return true;
}
