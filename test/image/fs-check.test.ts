/**
 * fs-check's own readings of the FAT boot sector and the ext4 superblock, judged on filesystems
 * made by mkfs.vfat and mke2fs, and its naming of what e2fsck and fsck.vfat report.
 */
import { execa } from 'execa';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32cRaw, e2fsckProblem, ext4SuperblockProblem, fatBootSectorProblem, fsckFatCause } from '../../builder/image/fs-check.ts';
import { scratchDir } from '../helpers/image.ts';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await scratchDir('pibake-fs-check-')));
afterAll(() => cleanup());

async function fatSector(fat: 12 | 16 | 32, kib: number): Promise<Buffer> {
  const file = join(dir, `fat${fat}-${Math.random().toString(16).slice(2)}.img`);
  await execa('mkfs.vfat', ['-C', '-F', String(fat), file, String(kib)]);
  return (await readFile(file)).subarray(0, 512);
}

async function ext4Superblock(features = 'metadata_csum'): Promise<Buffer> {
  const file = join(dir, `ext4-${features}-${Math.random().toString(16).slice(2)}.img`);
  await execa('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', features, file, '16M']);
  return (await readFile(file)).subarray(1024, 2048);
}

describe('CRC-32C as ext4 stores it', () => {
  it('matches the standard check value (CRC-32C of "123456789" is 0xE3069283)', () => {
    expect((~crc32cRaw(0xffffffff, Buffer.from('123456789')) >>> 0).toString(16)).toBe('e3069283');
  });
});

describe('fatBootSectorProblem', () => {
  it.each([[12, 1024], [16, 16 * 1024], [32, 64 * 1024]] as const)('accepts a FAT%i volume made by mkfs.vfat', async (fat, kib) => {
    expect(fatBootSectorProblem(await fatSector(fat, kib), kib * 1024)).toBeUndefined();
  });

  it.each([
    [11, Buffer.from([0, 0]), 'bytes per sector is 0'],
    [13, Buffer.from([3]), 'sectors per cluster is 3'],
    [14, Buffer.from([0, 0]), 'no reserved sectors'],
    [16, Buffer.from([0]), 'it claims 0 FATs'],
    [36, Buffer.from([0, 0, 0, 0]), 'the FAT size is 0'],
    [44, Buffer.from([0xff, 0xff, 0xff, 0x0f]), 'the root directory cluster 268435455 is outside the volume'],
    [510, Buffer.from([0, 0]), 'no boot signature (0x55AA)'],
  ])('names a damaged field at offset %i', async (offset, bytes, message) => {
    const sector = Buffer.from(await fatSector(32, 64 * 1024));
    bytes.copy(sector, offset);
    expect(fatBootSectorProblem(sector, 64 * 1024 * 1024)).toBe(`the boot sector is damaged: ${message}`);
  });

  it('refuses a volume larger than its partition', async () => {
    expect(fatBootSectorProblem(await fatSector(32, 64 * 1024), 32 * 1024 * 1024)).toBe(
      'the filesystem (67108864 bytes) is larger than its partition (33554432 bytes)');
  });
});

describe('ext4SuperblockProblem', () => {
  it('accepts what mke2fs made, with and without metadata checksums', async () => {
    expect(ext4SuperblockProblem(await ext4Superblock(), 16 << 20)).toBeUndefined();
    expect(ext4SuperblockProblem(await ext4Superblock('^metadata_csum'), 16 << 20)).toBeUndefined();
  });

  it('finds a changed byte by the checksum', async () => {
    const sb = Buffer.from(await ext4Superblock());
    sb[0x78] = 0x41; // volume name
    expect(ext4SuperblockProblem(sb, 16 << 20)?.problem).toMatch(/^the ext4 superblock is damaged: its checksum is wrong/);
  });

  it('refuses an unreplayed journal and the kernel\'s error mark, each with how to repair a copy', async () => {
    const plain = Buffer.from(await ext4Superblock('^metadata_csum'));
    const recover = Buffer.from(plain);
    recover.writeUInt32LE(recover.readUInt32LE(96) | 0x4, 96);
    expect(ext4SuperblockProblem(recover, 16 << 20, 4096)).toEqual({
      problem: expect.stringMatching(/journal needs recovery/) as unknown as string,
      hint: expect.stringContaining("e2fsck -fy 'copy.img?offset=4096'") as unknown as string,
    });
    const errors = Buffer.from(plain);
    errors.writeUInt16LE(3, 58);
    expect(ext4SuperblockProblem(errors, 16 << 20)?.problem).toMatch(/marked as having errors/);
  });

  it('refuses a filesystem larger than its partition, and no magic', async () => {
    expect(ext4SuperblockProblem(await ext4Superblock(), 8 << 20)?.problem).toBe(
      'the filesystem (16777216 bytes) is larger than its partition (8388608 bytes)');
    expect(ext4SuperblockProblem(Buffer.alloc(1024), 8 << 20)?.problem).toBe('the ext4 superblock is damaged: no ext2/3/4 magic number');
  });
});

describe('naming what the checkers report', () => {
  it('e2fsck: group descriptors before the journal complaint they cause; our temp path never shown', () => {
    const output = [
      'e2fsck 1.47.0 (5-Feb-2023)',
      'ext2fs_check_desc: Corrupt group descriptor: bad block for block bitmap',
      'Superblock has an invalid journal (inode 8).',
      'Clear? no',
      'e2fsck: The journal superblock is corrupt while checking journal for /out/.x.partial',
    ].join('\n');
    expect(e2fsckProblem(output, '/out/.x.partial').problem).toBe(
      'the ext4 group descriptors are damaged (e2fsck: Corrupt group descriptor: bad block for block bitmap)');
    expect(e2fsckProblem('e2fsck: Superblock checksum does not match superblock while trying to open /t/x', '/t/x').problem).toBe(
      'the ext4 superblock is damaged (e2fsck: Superblock checksum does not match superblock while trying to open the image)');
    expect(e2fsckProblem('Pass 1: Checking inodes, blocks, and sizes\nInode 12 has illegal block(s).  Clear? no\n').problem).toBe(
      'e2fsck -fn found errors (Inode 12 has illegal block(s).  Clear? no)');
  });

  it('fsck.vfat: the first complaint, not the banner or the summary', () => {
    const output = 'fsck.fat 4.2 (2021-01-31)\nFATs differ - using second FAT.\n\nLeaving filesystem unchanged.\n/tmp/x/boot.fat: 9 files, 11/129022 clusters\n';
    expect(fsckFatCause(output, '/tmp/x/boot.fat')).toBe('FATs differ - using second FAT.');
  });
});
