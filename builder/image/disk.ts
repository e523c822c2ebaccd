/**
 * Reads the partition table of a disk image file (MBR, or GPT behind its protective MBR) and
 * rewrites the MBR disk identifier. Parsing is a pure function of the first bytes of the image so
 * it can be tested without files; the file access around it is thin.
 */
import { open, stat } from 'node:fs/promises';
import { PibakeError } from '../common/errors.ts';

export interface PartitionInfo {
  /** 1-based slot number: MBR slot 1..4 (so PARTUUID `<diskId>-0N` matches) or GPT entry number. */
  index: number;
  startBytes: number;
  sizeBytes: number;
  /** MBR: two lowercase hex digits ('0c', '83'); GPT: type GUID, lowercase. */
  type: string;
  bootable: boolean;
  /** MBR: `<diskId>-0N` (what PARTUUID= means); GPT: the partition's unique GUID. */
  uuid?: string;
}

export interface DiskLayout {
  scheme: 'mbr' | 'gpt';
  sizeBytes: number;
  sectorSize: 512;
  /** MBR: 8 lowercase hex digits; GPT: the disk GUID. */
  diskId: string;
  partitions: PartitionInfo[];
}

const SECTOR = 512;
/** Enough of the image to hold the MBR, the GPT header and a standard 128-entry GPT array. */
const HEAD_BYTES = 64 * 1024;
const NOT_A_DISK_HINT = 'give a Raspberry Pi OS .img, .img.xz, .img.zst or .zip';

export async function readDiskLayout(imagePath: string): Promise<DiskLayout> {
  const { size } = await stat(imagePath);
  const handle = await open(imagePath, 'r');
  try {
    const head = Buffer.alloc(Math.min(HEAD_BYTES, size));
    await handle.read(head, 0, head.length, 0);
    return parseDiskLayout(head, size);
  } finally {
    await handle.close();
  }
}

/** Up to `length` bytes of a file from `offset` (fewer at its end). */
export async function readBytes(path: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, offset);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Writes `diskId` (8 hex digits) little-endian at MBR offset 440. Touches nothing else. */
export async function writeMbrDiskId(imagePath: string, diskId: string): Promise<void> {
  const bytes = diskIdBytes(diskId);
  const handle = await open(imagePath, 'r+');
  try {
    const mbr = Buffer.alloc(SECTOR);
    await handle.read(mbr, 0, SECTOR, 0);
    if (mbr.readUInt16LE(510) !== 0xaa55) {
      throw new PibakeError(`${imagePath}: no MBR partition table at sector 0`, { hint: NOT_A_DISK_HINT });
    }
    await handle.write(bytes, 0, 4, 440);
  } finally {
    await handle.close();
  }
}

export function isMbrDiskId(id: string): boolean {
  return /^[0-9a-f]{8}$/.test(id);
}

function diskIdBytes(diskId: string): Buffer {
  if (!isMbrDiskId(diskId)) {
    throw new PibakeError(`invalid disk identifier "${diskId}"`, { hint: 'use exactly 8 lowercase hex digits, e.g. 1a2b3c4d' });
  }
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(Number.parseInt(diskId, 16), 0);
  return bytes;
}

/**
 * Parses the partition table from `head` (the first bytes of the image, at least one sector;
 * for GPT enough to include the entry array) of an image of `sizeBytes` bytes.
 */
export function parseDiskLayout(head: Buffer, sizeBytes: number): DiskLayout {
  if (head.length < SECTOR || head.readUInt16LE(510) !== 0xaa55) {
    throw new PibakeError('not a disk image: no partition table at sector 0', { hint: NOT_A_DISK_HINT });
  }
  const slots = [0, 1, 2, 3].map((i) => head.subarray(446 + 16 * i, 446 + 16 * (i + 1)));
  if (slots.some((slot) => slot[4] === 0xee)) return parseGpt(head, sizeBytes);

  const diskId = head.readUInt32LE(440).toString(16).padStart(8, '0');
  const partitions: PartitionInfo[] = [];
  slots.forEach((slot, i) => {
    const type = slot[4] ?? 0;
    const startSector = slot.readUInt32LE(8);
    const sectors = slot.readUInt32LE(12);
    if (type === 0 || sectors === 0) return;
    const status = slot[0] ?? 0;
    if (status !== 0 && status !== 0x80) {
      throw new PibakeError(`not a disk image: MBR slot ${i + 1} has an invalid status byte 0x${status.toString(16)}`, {
        hint: NOT_A_DISK_HINT,
      });
    }
    partitions.push({
      index: i + 1,
      startBytes: startSector * SECTOR,
      sizeBytes: sectors * SECTOR,
      type: type.toString(16).padStart(2, '0'),
      bootable: status === 0x80,
      uuid: `${diskId}-${String(i + 1).padStart(2, '0')}`,
    });
  });
  if (partitions.length === 0) {
    throw new PibakeError('not a disk image: the MBR at sector 0 lists no partitions', { hint: NOT_A_DISK_HINT });
  }
  checkGeometry(partitions, sizeBytes, 1);
  return { scheme: 'mbr', sizeBytes, sectorSize: SECTOR, diskId, partitions };
}

function parseGpt(head: Buffer, sizeBytes: number): DiskLayout {
  const header = head.subarray(SECTOR, 2 * SECTOR);
  if (header.length < 92 || header.toString('latin1', 0, 8) !== 'EFI PART') {
    throw new PibakeError('not a disk image: protective MBR without a GPT header at sector 1', { hint: NOT_A_DISK_HINT });
  }
  const entriesLba = Number(header.readBigUInt64LE(72));
  const count = header.readUInt32LE(80);
  const entrySize = header.readUInt32LE(84);
  const start = entriesLba * SECTOR;
  if (entrySize < 128 || start + count * entrySize > head.length) {
    throw new PibakeError('unsupported GPT: the partition entry array is not where pibake expects it', {
      hint: 'use an image with a standard GPT (entries at sector 2) or an MBR image',
    });
  }
  const partitions: PartitionInfo[] = [];
  for (let i = 0; i < count; i++) {
    const entry = head.subarray(start + i * entrySize, start + (i + 1) * entrySize);
    const type = formatGuid(entry.subarray(0, 16));
    if (type === '00000000-0000-0000-0000-000000000000') continue;
    const first = Number(entry.readBigUInt64LE(32));
    const last = Number(entry.readBigUInt64LE(40));
    const attributes = entry.readBigUInt64LE(48);
    partitions.push({
      index: i + 1,
      startBytes: first * SECTOR,
      sizeBytes: (last - first + 1) * SECTOR,
      type,
      bootable: (attributes & 4n) !== 0n, // "legacy BIOS bootable" attribute
      uuid: formatGuid(entry.subarray(16, 32)),
    });
  }
  // Sectors 0-33 hold the protective MBR, the GPT header and its standard entry array.
  checkGeometry(partitions, sizeBytes, Math.ceil(start / SECTOR + (count * entrySize) / SECTOR));
  return { scheme: 'gpt', sizeBytes, sectorSize: SECTOR, diskId: formatGuid(header.subarray(56, 72)), partitions };
}

/** GUIDs are stored mixed-endian: the first three fields little-endian, the rest as bytes. */
export function formatGuid(bytes: Buffer): string {
  const hex = (b: Buffer) => b.toString('hex');
  const le = (b: Buffer) => hex(Buffer.from(b).reverse());
  return [le(bytes.subarray(0, 4)), le(bytes.subarray(4, 6)), le(bytes.subarray(6, 8)), hex(bytes.subarray(8, 10)),
    hex(bytes.subarray(10, 16))].join('-');
}

/**
 * Every partition must lie after the partition table, inside the image, and apart from every other
 * one: an overlap means two filesystems write the same sectors, which shows up only once a card boots.
 */
function checkGeometry(partitions: PartitionInfo[], sizeBytes: number, tableSectors: number): void {
  for (const p of partitions) {
    if (p.startBytes < tableSectors * SECTOR) {
      throw new PibakeError(`partition ${p.index} starts at sector ${p.startBytes / SECTOR}, inside the partition table (sectors 0-${tableSectors - 1})`, {
        hint: 'the partition table is damaged: download or decompress the image again',
      });
    }
    if (p.startBytes + p.sizeBytes > sizeBytes) {
      throw new PibakeError(
        `partition ${p.index} ends at byte ${p.startBytes + p.sizeBytes}, beyond the end of the image (${sizeBytes} bytes)`,
        { hint: 'the image is truncated: download or decompress it again' },
      );
    }
  }
  const sorted = [...partitions].sort((a, b) => a.startBytes - b.startBytes);
  for (let i = 1; i < sorted.length; i++) {
    const [before, after] = [sorted[i - 1] as PartitionInfo, sorted[i] as PartitionInfo];
    if (after.startBytes < before.startBytes + before.sizeBytes) {
      const span = (p: PartitionInfo) => `${p.startBytes / SECTOR}-${(p.startBytes + p.sizeBytes) / SECTOR - 1}`;
      throw new PibakeError(
        `partitions ${before.index} (sectors ${span(before)}) and ${after.index} (sectors ${span(after)}) overlap`,
        { hint: 'the partition table is damaged: download or decompress the image again' },
      );
    }
  }
}
