/** Shared fixtures for the flash tests: sparse images with random data at known places. */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

export const MiB = 1024 * 1024;

export interface Segment {
  offset: number;
  length: number;
}

/** A sparse file of sizeBytes with random data in `segments` (holes elsewhere). */
export async function makeImage(path: string, sizeBytes: number, segments: readonly Segment[]): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.truncate(sizeBytes);
    for (const s of segments) await handle.write(randomBytes(s.length), 0, s.length, s.offset);
  } finally {
    await handle.close();
  }
}

/** A typical layout: boot-ish data at 1 MiB, scattered data, an odd-sized tail block. */
export const SEGMENTS: Segment[] = [
  { offset: 0, length: 512 },
  { offset: 1 * MiB, length: 3 * MiB + 4096 },
  { offset: 9 * MiB + 8192, length: 5 * MiB },
  { offset: 20 * MiB, length: 12_345 },
];

export async function makeImageWithBmap(dir: string, name = 'node.img', sizeBytes = 32 * MiB + 1536): Promise<{ image: string; bmap: string }> {
  const image = join(dir, name);
  await makeImage(image, sizeBytes, [...SEGMENTS, { offset: sizeBytes - 100, length: 100 }]);
  // Sector 0 ends with the MBR boot signature, as every disk image's does: pibake reads by content.
  const handle = await open(image, 'r+');
  await handle.write(Buffer.from([0x55, 0xaa]), 0, 2, 510);
  await handle.close();
  const bmap = `${image}.bmap`;
  await execa('bmaptool', ['create', '-o', bmap, image]);
  return { image, bmap };
}

/** Changes the byte at `offset` (its bits inverted: a fixed value equals random data 1 time in 256). */
export async function flipByte(path: string, offset: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const { buffer } = await handle.read(Buffer.alloc(1), 0, 1, offset);
    await handle.write(Buffer.from([(buffer[0] ?? 0) ^ 0xff]), 0, 1, offset);
  } finally {
    await handle.close();
  }
}

/** Independent oracle: `cmp` of byte ranges of two files or devices. */
export async function sameBytes(a: string, b: string, ranges: readonly { start: number; end: number }[]): Promise<boolean> {
  for (const r of ranges) {
    const result = await execa('cmp', ['-n', String(r.end - r.start), '-i', `${r.start}:${r.start}`, a, b], { reject: false });
    if (result.exitCode !== 0) return false;
  }
  return true;
}

export async function sha256Of(path: string): Promise<string> {
  const { stdout } = await execa('sha256sum', [path]);
  return stdout.split(' ')[0] ?? '';
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'pibake-flash-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
