/**
 * Block maps of our images in bmaptool's format 2.0: which 4 KiB blocks must be written to a card,
 * with a SHA-256 per range, so `bmaptool copy` (or our flasher) writes a 3 GB image with 1 GB of
 * data in a third of the time and verifies what it wrote.
 *
 * How mapped blocks are found: by what the filesystems consider in use, not by content. Inside a
 * recognised ext4 or FAT filesystem (fs-usage.ts) a block is mapped when any byte of it is
 * allocated, whatever it holds — an allocated block of zeros (ELF padding, a preallocated file in
 * an image pi-gen copied onto a mounted ext4) must overwrite what a used card has there — and a
 * free block is unmapped whatever it holds. Everything else (MBR, gaps between partitions,
 * partitions we do not recognise) is judged by content: a block is mapped unless it is all zeros,
 * as `bmaptool create` maps a sparse file. Free filesystem blocks are not even read, and the map
 * depends only on the image's bytes, not on how the file was written (dense or sparse).
 * Consequence a flasher must know: unmapped blocks are not written, exactly as with bmaptool.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { PibakeError } from '../common/errors.ts';
import { blockRange, type Bmap, type BmapRange, formatBmap } from './bmap-format.ts';
import { type RecognisedFilesystem, reportFilesystemUsage } from '../image/fs-usage.ts';
import { writeFileAtomic } from '../bytes/atomic.ts';

export const BMAP_BLOCK_SIZE = 4096;
const READ_SIZE = 4 << 20; // a multiple of the block size
const ZEROS = Buffer.alloc(BMAP_BLOCK_SIZE);

/** Per block: what decides whether it is mapped. */
const FREE = 0; // inside a filesystem, not in use: unmapped
const USED = 1; // a filesystem uses some byte of it: mapped
const SCAN = 2; // outside recognised filesystems: mapped unless all zeros

/** Map an image and return its block map as bmap 2.0 XML text. */
export async function createBmap(imagePath: string): Promise<string> {
  return formatBmap(await mapImage(imagePath));
}

/** Write `<image>.bmap` (or `bmapPath`) atomically; returns its path. */
export async function writeBmapFile(imagePath: string, bmapPath = `${imagePath}.bmap`): Promise<string> {
  const text = await createBmap(imagePath);
  await writeFileAtomic(bmapPath, text);
  return bmapPath;
}

/** The mapped ranges of an image, their checksums, and the filesystems that decided them. */
export async function mapImage(imagePath: string): Promise<Bmap & { filesystems: RecognisedFilesystem[] }> {
  const handle = await open(imagePath, 'r');
  try {
    const imageSize = (await handle.stat()).size;
    const blocksCount = Math.ceil(imageSize / BMAP_BLOCK_SIZE);
    // One byte per 4 KiB block (a 32 GB image: 8 MB), so a filesystem's use is recorded as reported.
    const states = new Uint8Array(blocksCount).fill(SCAN);
    const filesystems = await reportFilesystemUsage(imagePath, {
      managed(start, end) {
        // Only blocks wholly inside: a block shared with the outside keeps its content judged.
        for (let b = Math.ceil(start / BMAP_BLOCK_SIZE); b < Math.floor(end / BMAP_BLOCK_SIZE); b++) if (states[b] === SCAN) states[b] = FREE;
      },
      used(start, end) {
        states.fill(USED, Math.floor(start / BMAP_BLOCK_SIZE), Math.max(0, Math.ceil(Math.min(end, imageSize) / BMAP_BLOCK_SIZE)));
      },
    });
    const ranges = await hashMappedRanges(handle, states, imageSize);
    const mappedBlocksCount = ranges.reduce((sum, r) => sum + r.lastBlock - r.firstBlock + 1, 0);
    const mappedBytes = ranges.reduce((sum, r) => sum + r.end - r.start, 0);
    return { version: '2.0', imageSize, blockSize: BMAP_BLOCK_SIZE, blocksCount, mappedBlocksCount, checksumType: 'sha256', ranges, mappedBytes, filesystems };
  } finally {
    await handle.close();
  }
}

/** Reads every block not FREE (once, in order), decides SCAN blocks by content, hashes each range. */
async function hashMappedRanges(handle: Awaited<ReturnType<typeof open>>, states: Uint8Array, imageSize: number): Promise<BmapRange[]> {
  const ranges: BmapRange[] = [];
  const buffer = Buffer.allocUnsafe(READ_SIZE);
  let current: { first: number; last: number; hash: ReturnType<typeof createHash> } | undefined;
  const close = (): void => {
    if (current) ranges.push(blockRange(current.first, current.last, BMAP_BLOCK_SIZE, imageSize, current.hash.digest('hex')));
    current = undefined;
  };
  const blocks = states.length;
  for (let b = 0; b < blocks; ) {
    if (states[b] === FREE) {
      close();
      b++;
      continue;
    }
    // A run of blocks to read: up to READ_SIZE, stopping before the next FREE block.
    let end = b;
    while (end < blocks && end - b < READ_SIZE / BMAP_BLOCK_SIZE && states[end] !== FREE) end++;
    const offset = b * BMAP_BLOCK_SIZE;
    const length = Math.min(end * BMAP_BLOCK_SIZE, imageSize) - offset;
    await readFully(handle, buffer, length, offset);
    // Consecutive mapped blocks are hashed with one update.
    let pending = -1; // buffer offset where unhashed mapped bytes start
    for (let block = b; block < end; block++) {
      const at = (block - b) * BMAP_BLOCK_SIZE;
      const size = Math.min(BMAP_BLOCK_SIZE, length - at);
      const mapped = states[block] === USED || !buffer.subarray(at, at + size).equals(ZEROS.subarray(0, size));
      if (mapped) {
        if (!current) current = { first: block, last: block, hash: createHash('sha256') };
        current.last = block;
        if (pending < 0) pending = at;
      } else {
        if (pending >= 0) current?.hash.update(buffer.subarray(pending, at));
        pending = -1;
        close();
      }
    }
    if (pending >= 0) current?.hash.update(buffer.subarray(pending, length));
    b = end;
  }
  close();
  return ranges;
}

async function readFully(handle: Awaited<ReturnType<typeof open>>, buffer: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new PibakeError(`image shrank while being read at byte ${position + done}`, { hint: 'do not modify the image while packaging it' });
    done += bytesRead;
  }
}
