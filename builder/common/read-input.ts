/**
 * Reads a file the user points pibake at (cluster.yaml, an SSH key file, the secrets file, role
 * and overlay files): only a regular file, and only up to a size cap. A device (/dev/zero), a FIFO
 * or a huge file named by mistake is refused at once instead of being read until memory runs out.
 */
import { constants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { formatBytes } from './bytes.ts';
import { PibakeError } from './errors.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Caps by what is read: far above any real file of that kind, far below trouble. */
export const READ_LIMITS = {
  inventory: 1 * MiB,
  sshKeys: 256 * KiB,
  secrets: 4 * MiB,
  role: 1 * MiB,
  overlayFile: 64 * MiB,
} as const;

/** "a character device" etc., for "… is not a regular file (it is …)". */
function kindOf(info: { isDirectory(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isBlockDevice()) return 'a block device';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  return 'not a file';
}


/**
 * The bytes of `path` (`what` names it in errors: "the inventory", "SSH key file"). Errors from
 * the file system (missing, no permission) are passed through for the caller to word.
 */
export async function readInputFile(path: string, what: string, maxBytes: number): Promise<Buffer> {
  const before = await stat(path);
  if (!before.isFile()) {
    throw new PibakeError(`${what} ${path} is not a regular file (it is ${kindOf(before)})`, { hint: 'name a plain file' });
  }
  // O_NONBLOCK: should it have been swapped for a FIFO since the stat, opening must not hang.
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      throw new PibakeError(`${what} ${path} is not a regular file (it is ${kindOf(info)})`, { hint: 'name a plain file' });
    }
    if (info.size > maxBytes) {
      throw new PibakeError(`${what} ${path} is ${formatBytes(info.size)}, more than the ${formatBytes(maxBytes)} pibake reads for it`, {
        hint: 'check that it is the file you meant',
      });
    }
    // One byte more than its size: a file that grows while read is noticed, not read without end.
    const buffer = Buffer.alloc(info.size + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > info.size) {
        throw new PibakeError(`${what} ${path} changed while pibake read it`, { hint: 'run pibake again once nothing writes to it' });
      }
    }
    return buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
}
