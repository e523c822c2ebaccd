import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flash } from '../../builder/flash/flash.ts';
import { readDiskLayout } from '../../builder/image/disk.ts';
import { Ext4Fs } from '../../builder/image/ext4.ts';
import { FatFs } from '../../builder/image/fat.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { parseBmap } from '../../builder/package/bmap-format.ts';
import { createBmap, mapImage, writeBmapFile } from '../../builder/package/bmap.ts';
import { fsckExt4, fsckFat, partitionOffsets } from '../helpers/oracles.ts';
import { makeDiskImage, MiB, scratchDir } from '../image/intake-fixture.ts';

let dir: string;
let cleanup: () => Promise<void>;
let image: string;

beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir('bmap'));
  image = join(dir, 'node.img');
  await makeDiskImage(image, 64);
  // A data run that crosses the scanner's 4 MiB read boundary, and an image size that is not a
  // multiple of 4 KiB (bmaptool hashes the short last block as it is).
  const handle = await open(image, 'r+');
  const run = Buffer.alloc(3 * 4096, 7);
  await handle.write(run, 0, run.length, 8 * MiB - 4096);
  await handle.write(Buffer.from('tail'), 0, 4, 64 * MiB);
  await handle.close();
});
afterAll(() => cleanup());

describe('createBmap', () => {
  it('gives the same ranges and checksums as `bmaptool create`', async () => {
    const ours = parseBmap(await createBmap(image));
    await execa('bmaptool', ['create', '-o', join(dir, 'theirs.bmap'), image]);
    const theirs = parseBmap(await readFile(join(dir, 'theirs.bmap'), 'utf8'));
    expect(ours.ranges.length).toBeGreaterThan(3);
    expect(ours.ranges).toEqual(theirs.ranges);
    expect(ours.imageSize).toBe(theirs.imageSize);
    expect(ours.blocksCount).toBe(theirs.blocksCount);
    expect(ours.mappedBlocksCount).toBe(theirs.mappedBlocksCount);
    expect(ours.mappedBlocksCount).toBeLessThan(ours.blocksCount / 10);
  });

  it('is accepted by `bmaptool copy`, which writes the image back (equal on mapped ranges)', async () => {
    const bmap = await writeBmapFile(image, join(dir, 'node.img.bmap'));
    const dest = join(dir, 'card.img');
    // A "card" full of old data: only mapped blocks get written, and they must match.
    await execa('bash', ['-c', `head -c ${64 * MiB + 4} /dev/urandom > "$1"`, '_', dest]);
    await execa('bmaptool', ['copy', '--bmap', bmap, image, dest]);
    const map = parseBmap(await readFile(bmap, 'utf8'));
    const [img, card] = await Promise.all([readFile(image), readFile(dest)]);
    for (const range of map.ranges) {
      const from = range.firstBlock * 4096;
      const to = Math.min((range.lastBlock + 1) * 4096, img.length);
      expect(card.subarray(from, to).equals(img.subarray(from, to))).toBe(true);
    }
    // And bmaptool verified every range checksum on the way (it fails the copy otherwise):
    // prove that by corrupting one mapped byte of the image.
    const corrupt = join(dir, 'corrupt.img');
    await writeFile(corrupt, img);
    const handle = await open(corrupt, 'r+');
    await handle.write(Buffer.from([img[map.ranges[1]!.firstBlock * 4096]! ^ 1]), 0, 1, map.ranges[1]!.firstBlock * 4096);
    await handle.close();
    const failed = await execa('bmaptool', ['copy', '--bmap', bmap, corrupt, join(dir, 'card2.img')], { reject: false });
    expect(failed.exitCode).not.toBe(0);
    expect(failed.stderr).toMatch(/checksum mismatch/i);
  });

  it('maps nothing in an all-zero image, and bmaptool still accepts it', async () => {
    const empty = join(dir, 'zeros.img');
    await execa('truncate', ['-s', '10M', empty]);
    const map = await mapImage(empty);
    expect(map.ranges).toEqual([]);
    expect(map.mappedBlocksCount).toBe(0);
    await writeBmapFile(empty, join(dir, 'zeros.bmap'));
    await execa('bmaptool', ['copy', '--bmap', join(dir, 'zeros.bmap'), empty, join(dir, 'zeros-copy.img')]);
  });
});

/**
 * The decisive case: files whose allocated blocks hold zeros. pi-gen copies files onto a mounted
 * ext4, so such blocks are allocated (ELF padding, preallocated files); mcopy writes every FAT
 * cluster. In a sparse copy of the image they are holes, which `bmaptool create` (like a content
 * scan) leaves unmapped, so a card full of old data keeps that data inside the files.
 */
type Writer = 'pibake flash' | 'bmaptool copy';
const canLoop = process.getuid?.() === 0 && process.platform === 'linux' && (existsSync('/sbin/losetup') || existsSync('/usr/sbin/losetup'));
/** bmaptool copy truncates a regular file, so it writes onto a used card only as a loop device (root). */
const writers: Writer[] = canLoop ? ['pibake flash', 'bmaptool copy'] : ['pibake flash'];

describe('mapping by filesystem use', () => {
  const EXT_FILE = '/usr/lib/pibake-zero-page.so';
  const FAT_FILE = 'zero-run.bin';
  let work: string;
  let done: () => Promise<void>;
  let sparse: string;
  let extData: Buffer;
  let fatData: Buffer;
  let rootOffset: number;
  let bootOffset: number;

  beforeAll(async () => {
    ({ dir: work, cleanup: done } = await scratchDir('bmap-fs'));
    const dense = join(work, 'dense.img');
    await synthesizeRaspiosImage({ path: dense, generation: 'trixie', sizeMiB: 300, bootMiB: 64 });
    const layout = await readDiskLayout(dense);
    bootOffset = layout.partitions[0]!.startBytes;
    rootOffset = layout.partitions[1]!.startBytes;

    // ext4: 64 KiB with its 4 KiB-aligned block 8 all zeros. debugfs (like mke2fs -d) would leave
    // a zero block as a hole, so the file is written with a marker there and the block it got is
    // zeroed in the image afterwards: allocated, all zeros, as a kernel copy leaves it.
    extData = randomBytes(64 * 1024);
    extData.fill(0, 8 * 4096, 9 * 4096);
    const staged = Buffer.from(extData);
    staged.fill(0xa5, 8 * 4096, 9 * 4096);
    await new Ext4Fs(dense, rootOffset).apply([{ kind: 'file', path: EXT_FILE, mode: 0o644, uid: 0, gid: 0, data: staged }]);
    const physical = Number((await execa('debugfs', ['-R', `bmap ${EXT_FILE} 8`, `${dense}?offset=${rootOffset}`])).stdout.trim());
    expect(physical).toBeGreaterThan(0);
    const handle = await open(dense, 'r+');
    await handle.write(Buffer.alloc(4096), 0, 4096, rootOffset + physical * 4096);
    await handle.close();

    // FAT: 64 KiB with 12 KiB of zeros in the middle, so at least one whole 4 KiB image block is
    // zero whatever the cluster alignment.
    fatData = randomBytes(64 * 1024);
    fatData.fill(0, 4 * 4096, 7 * 4096);
    await new FatFs(dense, bootOffset).writeFiles([{ path: FAT_FILE, data: fatData }]);

    // As the build leaves images: sparse, the zero blocks are holes.
    sparse = join(work, 'node.img');
    await execa('cp', ['--sparse=always', dense, sparse]);
    await rm(dense);
    expect(await readExt4(sparse, EXT_FILE)).toEqual(extData);
    expect(await readFat(sparse, FAT_FILE)).toEqual(fatData);
    expect(await ext4BlockCount(sparse, EXT_FILE)).toBe(16); // no hole in the file itself
  }, 120_000);
  afterAll(() => done());

  /**
   * A used card: the image's size, every byte 0xFF, written with `bmap` by pibake flash (a file
   * target is written in place) or by bmaptool copy (which truncates a regular file, so it gets a
   * loop device over the 0xFF file). Returns the card's backing file.
   */
  async function writeOntoUsedCard(writer: Writer, bmap: string, name: string): Promise<string> {
    const card = join(work, name);
    const size = (await stat(sparse)).size;
    const handle = await open(card, 'w');
    const ff = Buffer.alloc(4 * MiB, 0xff);
    for (let at = 0; at < size; at += ff.length) await handle.write(ff, 0, Math.min(ff.length, size - at), at);
    await handle.close();
    if (writer === 'pibake flash') {
      await flash({ image: sparse, bmap, targets: [card], verify: true, yes: false, unmount: false, allowNonRemovable: false, allowLarge: false });
      return card;
    }
    const dev = (await execa('losetup', ['-f', '--show', card])).stdout.trim();
    try {
      await execa('bmaptool', ['copy', '--bmap', bmap, sparse, dev]);
    } finally {
      await execa('losetup', ['-d', dev], { reject: false });
    }
    return card;
  }

  it.each(writers)('maps allocated all-zero blocks: %s onto a used card gives intact filesystems and files', async (writer) => {
    const bmap = await writeBmapFile(sparse, join(work, 'node.img.bmap'));
    const card = await writeOntoUsedCard(writer, bmap, 'card.img');
    try {
      await fsckExt4(card);
      await fsckFat(card);
      expect(await readExt4(card, EXT_FILE)).toEqual(extData);
      expect(await readFat(card, FAT_FILE)).toEqual(fatData);
    } finally {
      await rm(card);
    }
    // The map came from both filesystems' allocation data.
    const map = await mapImage(sparse);
    expect(map.filesystems.map((f) => [f.partition.index, f.kind, f.usage])).toEqual([[1, 'fat', 'allocation'], [2, 'ext4', 'allocation']]);
  }, 120_000);

  it.each(writers)('(the hazard is real) %s with a map of the holes, as `bmaptool create` makes it, corrupts both files', async (writer) => {
    const bmap = join(work, 'holes.bmap');
    await execa('bmaptool', ['create', '-o', bmap, sparse]);
    const card = await writeOntoUsedCard(writer, bmap, 'card-holes.img');
    try {
      expect(await readExt4(card, EXT_FILE)).not.toEqual(extData);
      expect(await readFat(card, FAT_FILE)).not.toEqual(fatData);
    } finally {
      await rm(card);
    }
  }, 120_000);

  it('is accepted by `bmaptool copy` to a file, whose result passes fsck', async () => {
    const bmap = await writeBmapFile(sparse, join(work, 'node.img.bmap'));
    const copy = join(work, 'copy.img');
    await execa('bmaptool', ['copy', '--bmap', bmap, sparse, copy]);
    try {
      await fsckExt4(copy);
      await fsckFat(copy);
      expect(await readExt4(copy, EXT_FILE)).toEqual(extData);
    } finally {
      await rm(copy);
    }
  }, 120_000);

  it('leaves free filesystem blocks unmapped even when they hold old data', async () => {
    const before = await mapImage(sparse);
    // Garbage in a free ext4 block and in a free FAT cluster (the last of each filesystem).
    const copy = join(work, 'garbage.img');
    await execa('cp', ['--sparse=always', sparse, copy]);
    try {
      const layout = await readDiskLayout(copy);
      const [boot, root] = [layout.partitions[0]!, layout.partitions[1]!];
      const handle = await open(copy, 'r+');
      // (mkfs.vfat rounds the FAT's size down to whole tracks: the partition's last 16 KiB are
      // outside it and judged by content, so the FAT garbage goes to the middle of its data area.)
      const garbage = [root.startBytes + root.sizeBytes - 4096, boot.startBytes + 48 * MiB];
      for (const at of garbage) {
        expect(before.ranges.some((r) => r.start <= at && at < r.end)).toBe(false);
        await handle.write(Buffer.alloc(4096, 0x5a), 0, 4096, at);
      }
      await handle.close();
      const after = await mapImage(copy);
      expect(after.ranges).toEqual(before.ranges);
    } finally {
      await rm(copy);
    }
  }, 120_000);
});

async function readExt4(image: string, file: string): Promise<Buffer> {
  const { root } = await partitionOffsets(image);
  const { stdout } = await execa('debugfs', ['-R', `cat ${file}`, `${image}?offset=${root}`], { encoding: 'buffer', stripFinalNewline: false });
  return Buffer.from(stdout);
}

async function readFat(image: string, file: string): Promise<Buffer> {
  const { boot } = await partitionOffsets(image);
  const { stdout } = await execa('mtype', ['-i', `${image}@@${boot}`, `::${file}`], { env: { MTOOLS_SKIP_CHECK: '1' }, encoding: 'buffer', stripFinalNewline: false });
  return Buffer.from(stdout);
}

/** Data blocks debugfs lists for a file (holes are not listed). */
async function ext4BlockCount(image: string, file: string): Promise<number> {
  const { root } = await partitionOffsets(image);
  const { stdout } = await execa('debugfs', ['-R', `blocks ${file}`, `${image}?offset=${root}`]);
  return stdout.trim().split(/\s+/).filter(Boolean).length;
}

describe('FAT12 and FAT16 volumes', () => {
  it.each([12, 16] as const)('FAT%i: allocated zero clusters are mapped, free ones are not; a used card gets intact files', async (bits) => {
    const { dir: tmp, cleanup: clean } = await scratchDir(`bmap-fat${bits}`);
    try {
      const dense = join(tmp, 'dense.img');
      const partMiB = bits === 12 ? 2 : 24;
      await execa('truncate', ['-s', `${partMiB + 2}M`, dense]);
      await execa('sfdisk', ['-q', dense], { input: `label: dos\nstart=2048, size=${partMiB}MiB, type=${bits === 12 ? '1' : '6'}\n` });
      await execa('mkfs.vfat', ['-F', String(bits), '-s', '1', '--offset', '2048', dense, String(partMiB * 1024)]);
      const data = randomBytes(64 * 1024);
      data.fill(0, 4 * 4096, 7 * 4096);
      await new FatFs(dense, MiB).writeFiles([{ path: 'zero-run.bin', data }]);
      const sparseImage = join(tmp, 'node.img');
      await execa('cp', ['--sparse=always', dense, sparseImage]);
      const before = await mapImage(sparseImage);
      expect(before.filesystems.map((f) => f.kind)).toEqual(['fat']);

      // Old data in a free cluster near the end of the volume stays unmapped.
      const garbageAt = MiB + (partMiB - 1) * MiB;
      expect(before.ranges.some((r) => r.start <= garbageAt && garbageAt < r.end)).toBe(false);
      const handle = await open(sparseImage, 'r+');
      await handle.write(Buffer.alloc(4096, 0x5a), 0, 4096, garbageAt);
      await handle.close();
      expect((await mapImage(sparseImage)).ranges).toEqual(before.ranges);

      const bmap = await writeBmapFile(sparseImage, join(tmp, 'node.img.bmap'));
      const card = join(tmp, 'card.img');
      await writeFile(card, Buffer.alloc((await stat(sparseImage)).size, 0xff));
      await flash({ image: sparseImage, bmap, targets: [card], verify: true, yes: false, unmount: false, allowNonRemovable: false, allowLarge: false });
      const volume = join(tmp, 'volume.vfat');
      await writeFile(volume, (await readFile(card)).subarray(MiB, MiB + partMiB * MiB));
      await execa('fsck.vfat', ['-n', volume]);
      const { stdout } = await execa('mtype', ['-i', volume, '::zero-run.bin'], { env: { MTOOLS_SKIP_CHECK: '1' }, encoding: 'buffer', stripFinalNewline: false });
      expect(Buffer.from(stdout)).toEqual(data);
    } finally {
      await clean();
    }
  }, 60_000);
});
