/**
 * Which bytes of an image its filesystems consider in use, for the block map. Content cannot tell:
 * a file copied onto a mounted ext4 (how pi-gen makes Raspberry Pi OS) or onto FAT keeps its
 * all-zero blocks allocated, and a map that skips them leaves whatever a used card held there.
 *
 * Recognised: ext2/3/4 (the allocation bitmaps, read with `dumpe2fs` at `image?offset=N`) and
 * FAT12/16/32 (reserved sectors, every FAT copy, the FAT12/16 root directory, and each cluster that
 * any FAT copy marks non-free, parsed here). For each recognised filesystem the sink hears the
 * bytes it manages and, inside them, the bytes in use; everything it does not hear about (MBR,
 * gaps, unknown partitions, a partition's tail beyond its filesystem) is for the caller to judge.
 */
import { open } from 'node:fs/promises';
import { PibakeError } from '../common/errors.ts';
import { runTool } from '../common/exec.ts';
import { type PartitionInfo, readDiskLayout } from './disk.ts';
import { parseExt4Superblock } from './ext4.ts';

export interface UsageSink {
  /** start..end (bytes, end exclusive) belongs to a filesystem: only what it marks used matters. */
  managed(start: number, end: number): void;
  /** start..end holds something the filesystem uses (metadata, journal, file data). */
  used(start: number, end: number): void;
}

export type FilesystemKind = 'ext4' | 'fat';

export interface RecognisedFilesystem {
  partition: PartitionInfo;
  kind: FilesystemKind;
  /** How its use was decided: from its allocation data, or whole (as a precaution, see below). */
  usage: 'allocation' | 'whole';
}

type Handle = Awaited<ReturnType<typeof open>>;

/** Reports every recognised filesystem of the image's partitions to `sink`; returns what it found. */
export async function reportFilesystemUsage(imagePath: string, sink: UsageSink): Promise<RecognisedFilesystem[]> {
  let partitions: PartitionInfo[];
  try {
    partitions = (await readDiskLayout(imagePath)).partitions;
  } catch (error) {
    if (error instanceof PibakeError) return []; // no partition table: all of it is judged by content
    throw error;
  }
  const found: RecognisedFilesystem[] = [];
  const handle = await open(imagePath, 'r');
  try {
    const imageSize = (await handle.stat()).size;
    for (const partition of partitions) {
      const end = Math.min(partition.startBytes + partition.sizeBytes, imageSize);
      const head = Buffer.alloc(2048);
      const { bytesRead } = await handle.read(head, 0, Math.min(head.length, Math.max(0, end - partition.startBytes)), partition.startBytes);
      const boot = head.subarray(0, bytesRead);
      const ext = boot.length >= 2048 ? parseExt4Superblock(boot.subarray(1024, 2048)) : undefined;
      const fat = parseFatBootSector(boot);
      if (ext) {
        const usage = await reportExt4(imagePath, partition, end, boot.subarray(1024, 2048), ext, sink);
        found.push({ partition, kind: 'ext4', usage });
      } else if (fat && partition.startBytes + fat.managedBytes <= end) {
        await reportFat(handle, partition.startBytes, fat, sink);
        found.push({ partition, kind: 'fat', usage: 'allocation' });
      }
    }
  } finally {
    await handle.close();
  }
  return found;
}

// ---------------------------------------------------------------- ext2/3/4

const INCOMPAT_RECOVER = 0x4; // the journal holds transactions not yet written to their places
const INCOMPAT_JOURNAL_DEV = 0x8; // this is an external journal device, not a filesystem
const RO_COMPAT_BIGALLOC = 0x200; // bitmaps count clusters, not blocks

async function reportExt4(
  imagePath: string,
  partition: PartitionInfo,
  partitionEnd: number,
  superblock: Buffer,
  info: { blockSize: number; blocksCount: number },
  sink: UsageSink,
): Promise<'allocation' | 'whole'> {
  const start = partition.startBytes;
  const end = Math.min(start + info.blocksCount * info.blockSize, partitionEnd);
  sink.managed(start, end);
  const incompat = superblock.readUInt32LE(96);
  const roCompat = superblock.readUInt32LE(100);
  // A journal needing recovery can allocate blocks the bitmaps do not show yet; a bigalloc or
  // journal-device layout is one we do not read. Rare in images: all of it is kept, to be safe.
  if (incompat & (INCOMPAT_RECOVER | INCOMPAT_JOURNAL_DEV) || roCompat & RO_COMPAT_BIGALLOC) {
    sink.used(start, end);
    return 'whole';
  }
  const result = await runTool('dumpe2fs', [`${imagePath}?offset=${start}`], { env: { LC_ALL: 'C' }, stdin: 'ignore' });
  const free = parseDumpe2fsFreeBlocks(result.stdout, `${imagePath} partition ${partition.index}`);
  let next = 0; // first block not yet reported
  for (const [first, last] of free) {
    if (first > next) sink.used(start + next * info.blockSize, Math.min(start + first * info.blockSize, end));
    next = Math.max(next, last + 1);
  }
  if (next < info.blocksCount) sink.used(start + next * info.blockSize, end);
  return 'allocation';
}

/**
 * The free block ranges (inclusive, sorted) from dumpe2fs's per-group "Free blocks:" lines.
 * Everything else in a filesystem (superblocks, group descriptors, bitmaps, inode tables, the
 * journal, files) is in use; libext2fs already accounts for groups whose bitmaps were never
 * initialised (BLOCK_UNINIT), so these lines are the truth for every group.
 */
export function parseDumpe2fsFreeBlocks(text: string, where: string): [number, number][] {
  const free: [number, number][] = [];
  let groups = 0;
  for (const line of text.split('\n')) {
    if (/^Group \d+:/.test(line)) groups++;
    const list = groups > 0 ? /^\s+Free blocks:(.*)$/.exec(line)?.[1] : undefined;
    if (list === undefined) continue;
    for (const item of list.split(',')) {
      const text = item.trim();
      if (text === '') continue;
      const m = /^(\d+)(?:-(\d+))?$/.exec(text);
      if (!m) throw new PibakeError(`${where}: cannot read dumpe2fs's free block list ("${text}")`);
      free.push([Number(m[1]), Number(m[2] ?? m[1])]);
    }
  }
  if (groups === 0) throw new PibakeError(`${where}: dumpe2fs listed no block groups`, { hint: 'check the filesystem with e2fsck -fn' });
  return free.sort((a, b) => a[0] - b[0]);
}

// ---------------------------------------------------------------- FAT

export interface FatGeometry {
  bits: 12 | 16 | 32;
  bytesPerSector: number;
  /** Bytes of the reserved sectors, all FAT copies and (FAT12/16) the root directory. */
  metadataBytes: number;
  fatOffsets: number[];
  fatBytes: number;
  dataOffset: number;
  clusterBytes: number;
  clusterCount: number;
  /** Bytes from the boot sector to the end of the last whole cluster. */
  managedBytes: number;
}

/** The geometry of a FAT boot sector (BPB), or undefined when these bytes are no FAT volume. */
export function parseFatBootSector(boot: Buffer): FatGeometry | undefined {
  if (boot.length < 512 || boot.readUInt16LE(510) !== 0xaa55 || (boot[0] !== 0xeb && boot[0] !== 0xe9)) return undefined;
  const bytesPerSector = boot.readUInt16LE(11);
  const sectorsPerCluster = boot[13] ?? 0;
  const reserved = boot.readUInt16LE(14);
  const fats = boot[16] ?? 0;
  const rootEntries = boot.readUInt16LE(17);
  const totalSectors = boot.readUInt16LE(19) || boot.readUInt32LE(32);
  const fatSectors = boot.readUInt16LE(22) || boot.readUInt32LE(36);
  const powerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;
  if (![512, 1024, 2048, 4096].includes(bytesPerSector) || !powerOfTwo(sectorsPerCluster) || sectorsPerCluster > 128) return undefined;
  if (reserved === 0 || fats === 0 || fatSectors === 0 || totalSectors === 0) return undefined;
  const rootSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  const dataSector = reserved + fats * fatSectors + rootSectors;
  if (dataSector >= totalSectors) return undefined;
  const clusterCount = Math.floor((totalSectors - dataSector) / sectorsPerCluster);
  const bits = clusterCount < 4085 ? 12 : clusterCount < 65525 ? 16 : 32;
  const fatBytes = fatSectors * bytesPerSector;
  if (Math.floor((fatBytes * 8) / bits) < clusterCount + 2) return undefined; // FAT too small to describe them
  return {
    bits,
    bytesPerSector,
    metadataBytes: dataSector * bytesPerSector,
    fatOffsets: Array.from({ length: fats }, (_, i) => (reserved + i * fatSectors) * bytesPerSector),
    fatBytes,
    dataOffset: dataSector * bytesPerSector,
    clusterBytes: sectorsPerCluster * bytesPerSector,
    clusterCount,
    managedBytes: (dataSector + clusterCount * sectorsPerCluster) * bytesPerSector,
  };
}

const FAT_CHUNK = 1 << 20; // FAT bytes read at a time (whole 16- and 32-bit entries)

async function reportFat(handle: Handle, start: number, fat: FatGeometry, sink: UsageSink): Promise<void> {
  sink.managed(start, start + fat.managedBytes);
  sink.used(start, start + fat.metadataBytes);
  const lastCluster = fat.clusterCount + 1; // data clusters are numbered 2..clusterCount+1
  // FAT12 entries straddle bytes, so a FAT12 table (at most 6 KiB) is read whole; 16/32-bit
  // tables are read in chunks of whole entries. A cluster counts as used if any copy says so.
  const entryBytes = fat.bits / 8;
  const chunk = fat.bits === 12 ? fat.fatBytes : FAT_CHUNK;
  const tableBytes = fat.bits === 12 ? fat.fatBytes : Math.min(fat.fatBytes, Math.ceil((lastCluster + 1) * entryBytes));
  let runFirst = -1;
  const flush = (endCluster: number) => {
    if (runFirst < 0) return;
    sink.used(start + fat.dataOffset + (runFirst - 2) * fat.clusterBytes, start + fat.dataOffset + (endCluster - 2) * fat.clusterBytes);
    runFirst = -1;
  };
  const copies = fat.fatOffsets.map(() => Buffer.alloc(chunk));
  for (let at = 0; at < tableBytes; at += chunk) {
    const length = Math.min(chunk, tableBytes - at);
    for (const [i, offset] of fat.fatOffsets.entries()) await readExactly(handle, copies[i] as Buffer, length, start + offset + at);
    const firstEntry = Math.ceil(at / entryBytes);
    const entries = fat.bits === 12 ? lastCluster + 1 : Math.min(lastCluster + 1, (at + length) / entryBytes);
    for (let cluster = Math.max(2, firstEntry); cluster < entries; cluster++) {
      const used = copies.some((copy) => fatEntry(copy, fat.bits, cluster, at) !== 0);
      if (used && runFirst < 0) runFirst = cluster;
      if (!used) flush(cluster);
    }
  }
  flush(lastCluster + 1);
}

function fatEntry(table: Buffer, bits: 12 | 16 | 32, cluster: number, tableOffset: number): number {
  if (bits === 32) return table.readUInt32LE(cluster * 4 - tableOffset) & 0x0fffffff;
  if (bits === 16) return table.readUInt16LE(cluster * 2 - tableOffset);
  const pair = table.readUInt16LE(Math.floor(cluster * 1.5));
  return cluster % 2 === 0 ? pair & 0xfff : pair >> 4;
}

async function readExactly(handle: Handle, buffer: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new PibakeError(`image ends inside its FAT at byte ${position + done}`, { hint: 'the image is truncated; obtain it again' });
    done += bytesRead;
  }
}
