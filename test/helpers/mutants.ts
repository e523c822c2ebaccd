/**
 * Damaged copies of a good base image, for the bad-base tests and the fuzzer. Where things are is
 * learnt with the independent tools (sfdisk, debugfs, the FAT boot sector as the spec lays it out),
 * never with pibake's own parsers; damage that keeps ext4's checksums valid goes through debugfs
 * set_super_value, which recomputes them.
 */
import { execa } from 'execa';
import { open, stat, truncate } from 'node:fs/promises';
import { sfdiskJson } from './image.ts';

export interface BaseGeometry {
  sizeBytes: number;
  boot: { start: number; size: number };
  root: { start: number; size: number };
  /** Byte offset (in the image) and length of the first FAT, and how many FATs there are. */
  fat: { start: number; bytes: number; count: number };
  /** ext4 block size and the image offsets of the group descriptor table and of the journal's superblock. */
  blockSize: number;
  gdt: number;
  journal: number;
}

export async function geometryOf(image: string): Promise<BaseGeometry> {
  const table = await sfdiskJson(image);
  const [boot, root] = [table.partitions[0], table.partitions[table.partitions.length - 1]];
  if (!boot || !root) throw new Error(`${image}: expected two partitions`);
  const bootStart = boot.start * 512;
  const rootStart = root.start * 512;
  const bpb = await readAt(image, bootStart, 512);
  const bytesPerSector = bpb.readUInt16LE(11);
  const fatSectors = bpb.readUInt16LE(22) || bpb.readUInt32LE(36);
  const device = `${image}?offset=${rootStart}`;
  const header = (await execa('dumpe2fs', ['-h', device], { stderr: 'ignore' })).stdout;
  const blockSize = Number(/^Block size:\s+(\d+)/m.exec(header)?.[1]);
  const journalBlock = Number((await execa('debugfs', ['-R', 'bmap <8> 0', device], { stderr: 'ignore' })).stdout.trim());
  return {
    sizeBytes: (await stat(image)).size,
    boot: { start: bootStart, size: boot.size * 512 },
    root: { start: rootStart, size: root.size * 512 },
    fat: { start: bootStart + bpb.readUInt16LE(14) * bytesPerSector, bytes: fatSectors * bytesPerSector, count: bpb[16] ?? 2 },
    blockSize,
    // With 4 KiB blocks the superblock sits in block 0 and the descriptors start in block 1.
    gdt: rootStart + (blockSize === 1024 ? 2048 : blockSize),
    journal: rootStart + journalBlock * blockSize,
  };
}

export async function readAt(file: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, offset);
    return buffer;
  } finally {
    await handle.close();
  }
}

export async function writeAt(file: string, offset: number, bytes: Buffer): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.write(bytes, 0, bytes.length, offset);
  } finally {
    await handle.close();
  }
}

/** A sparse copy of `base` at `target`, to damage. */
export async function copyBase(base: string, target: string): Promise<void> {
  await execa('cp', ['--sparse=always', base, target]);
}

/** ext4 superblock changes through debugfs, which keeps the checksum right (`ssv state 2`, `feature needs_recovery`). */
export async function debugfsWrite(image: string, rootStart: number, command: string): Promise<void> {
  await execa('debugfs', ['-w', '-R', command, `${image}?offset=${rootStart}`], { stderr: 'ignore' });
}

/** MBR slot `slot` (1-4): start sector and sector count. */
export async function setPartition(image: string, slot: number, start: number, sectors: number): Promise<void> {
  const entry = Buffer.alloc(8);
  entry.writeUInt32LE(start, 0);
  entry.writeUInt32LE(sectors, 4);
  await writeAt(image, 446 + 16 * (slot - 1) + 8, entry);
}

export async function truncateTo(image: string, bytes: number): Promise<void> {
  await truncate(image, bytes);
}

/** A small deterministic PRNG (mulberry32): the same seed gives the same mutants on every machine. */
export function prng(seed: number): { next(): number; int(below: number): number; pick<T>(items: readonly T[]): T; bytes(n: number): Buffer } {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (below: number): number => Math.floor(next() * below);
  return {
    next,
    int,
    pick: <T>(items: readonly T[]): T => items[int(items.length)] as T,
    bytes: (n: number) => Buffer.from(Array.from({ length: n }, () => int(256))),
  };
}
