/** Small sparse disk images (real MBR via sfdisk, random data islands) for the byte-moving tests. */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

export const MiB = 1 << 20;

/**
 * A `sizeMiB` image: MBR with a FAT-type and a Linux partition (sfdisk), random data islands at
 * fixed offsets with holes between, an unaligned tail island. Written sparse.
 */
export async function makeDiskImage(path: string, sizeMiB = 64): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.truncate(sizeMiB * MiB);
  } finally {
    await handle.close();
  }
  const bootMiB = Math.min(16, Math.max(1, Math.floor(sizeMiB / 4)));
  await execa('sfdisk', ['-q', path], { input: `label: dos\nstart=2048, size=${bootMiB}MiB, type=c\ntype=83\n` });
  const islands: [number, number][] = [
    [1 * MiB + 4096, 300_000], // unaligned length
    [Math.floor(sizeMiB * 0.3) * MiB, 2 * MiB],
    [Math.floor(sizeMiB / 2) * MiB + 12_288, 8192],
    [sizeMiB * MiB - 4096, 4096],
  ];
  const data = await open(path, 'r+');
  try {
    for (const [offset, length] of islands) await data.write(randomBytes(length), 0, length, offset);
  } finally {
    await data.close();
  }
}

/** Allocated bytes of a file (st_blocks × 512). */
export async function allocatedBytes(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

export async function scratchDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `pibake-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function sha256sum(path: string): Promise<string> {
  return (await execa('sha256sum', [path])).stdout.split(' ')[0] ?? '';
}
