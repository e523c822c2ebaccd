import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PibakeError } from '../../builder/common/errors.ts';
import { parseBmap, readBmap } from '../../builder/package/bmap-format.ts';
import { createBmap, writeBmapFile } from '../../builder/package/bmap.ts';
import { makeDiskImage, scratchDir } from '../image/intake-fixture.ts';
import { MiB, makeImageWithBmap, withTempDir } from '../flash/helpers.ts';

describe('bmap reader (one for flash and package)', () => {
  it('reads a bmap made by bmaptool create: sizes, ranges and per-range sha256 of the image', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap: bmapPath } = await makeImageWithBmap(dir);
      const bmap = await readBmap(bmapPath);
      expect(bmap.version).toBe('2.0');
      expect(bmap.blockSize).toBe(4096);
      expect(bmap.imageSize).toBe(32 * MiB + 1536);
      expect(bmap.checksumType).toBe('sha256');
      expect(bmap.ranges.length).toBeGreaterThanOrEqual(4);
      // The data we wrote lies inside the mapped ranges.
      const covered = (o: number) => bmap.ranges.some((r) => r.start <= o && o < r.end);
      for (const o of [0, 1 * MiB, 4 * MiB + 4095, 9 * MiB + 8192, 20 * MiB, bmap.imageSize - 1]) expect(covered(o)).toBe(true);
      expect(covered(30 * MiB)).toBe(false);
      expect(bmap.ranges.at(-1)?.end).toBe(bmap.imageSize); // partial last block is clamped
      const data = await readFile(image);
      for (const r of bmap.ranges) {
        expect(createHash('sha256').update(data.subarray(r.start, r.end)).digest('hex')).toBe(r.checksum);
      }
      expect(bmap.mappedBytes).toBe(bmap.ranges.reduce((s, r) => s + r.end - r.start, 0));
    });
  });

  it('reads format 1.3 (sha1 attribute) and 1.0 (no checksums, single-block ranges)', () => {
    const v13 = parseBmap(`<?xml version="1.0" ?>
<bmap version="1.3">
  <ImageSize> 10000 </ImageSize>
  <BlockSize> 4096 </BlockSize>
  <BlocksCount> 3 </BlocksCount>
  <MappedBlocksCount> 2 </MappedBlocksCount>
  <BlockMap>
    <Range sha1="${'A'.repeat(40)}"> 0 </Range>
    <Range sha1="${'b'.repeat(40)}"> 2-2 </Range>
  </BlockMap>
</bmap>`);
    expect(v13.checksumType).toBe('sha1');
    expect(v13.ranges).toEqual([
      { firstBlock: 0, lastBlock: 0, start: 0, end: 4096, checksum: 'a'.repeat(40) },
      { firstBlock: 2, lastBlock: 2, start: 8192, end: 10000, checksum: 'b'.repeat(40) },
    ]);
    const v10 = parseBmap('<bmap version="1.0"><ImageSize>8192</ImageSize><BlockSize>4096</BlockSize><BlocksCount>2</BlocksCount><MappedBlocksCount>1</MappedBlocksCount><BlockMap><Range>1</Range></BlockMap></bmap>');
    expect(v10.checksumType).toBeUndefined();
    expect(v10.ranges).toEqual([{ firstBlock: 1, lastBlock: 1, start: 4096, end: 8192, checksum: undefined }]);
  });

  it('rejects a bmap whose own checksum does not match, and inconsistent ranges', async () => {
    await withTempDir(async (dir) => {
      const { bmap } = await makeImageWithBmap(dir);
      const text = await readFile(bmap, 'utf8');
      const tampered = text.replace(/<ImageSize> (\d+) <\/ImageSize>/, (_m, n: string) => `<ImageSize> ${Number(n) - 1} </ImageSize>`);
      expect(() => parseBmap(tampered, 'x.bmap')).toThrow(/x\.bmap is damaged/);
    });
    const base = (ranges: string) =>
      `<bmap version="1.0"><ImageSize>16384</ImageSize><BlockSize>4096</BlockSize><BlocksCount>4</BlocksCount><MappedBlocksCount>2</MappedBlocksCount><BlockMap>${ranges}</BlockMap></bmap>`;
    expect(() => parseBmap(base('<Range>0-2</Range><Range>2-3</Range>'))).toThrow(/overlaps/);
    expect(() => parseBmap(base('<Range>3-4</Range>'))).toThrow(/beyond/);
    expect(() => parseBmap(base('<Range>x</Range>'))).toThrow(PibakeError);
    expect(() => parseBmap('<bmap version="3.0"></bmap>')).toThrow(/newer/);
  });
});

describe('bmaps written by pibake package', () => {
  it('are read like bmaptool ones: same ranges and checksums', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap: theirs } = await makeImageWithBmap(dir);
      const ours = await writeBmapFile(image, `${image}.pibake.bmap`);
      const a = await readBmap(ours);
      const b = await readBmap(theirs);
      expect(a.imageSize).toBe(b.imageSize);
      expect(a.ranges).toEqual(b.ranges);
    });
  });
});

describe('parseBmap on bmaps written by pibake package', () => {
  it('rejects a bmap whose file checksum does not match (edited or damaged)', async () => {
    const { dir, cleanup } = await scratchDir('bmap-format');
    try {
      const image = join(dir, 'node.img');
      await makeDiskImage(image, 16);
      const text = await createBmap(image);
      expect(parseBmap(text, 'node.img.bmap').fileChecksum).toMatch(/^[0-9a-f]{64}$/);
      const edited = text.replace(/> (\d+)-(\d+) </, (_m, a: string, b: string) => `> ${a}-${Number(b) + 1} <`);
      expect(edited).not.toBe(text);
      expect(() => parseBmap(edited, 'node.img.bmap')).toThrow(PibakeError);
      expect(() => parseBmap(edited, 'node.img.bmap')).toThrow(/node\.img\.bmap is (damaged|not a valid bmap)/);
    } finally {
      await cleanup();
    }
  });

  it('rejects garbage and unsupported versions', () => {
    expect(() => parseBmap('<html/>')).toThrow(/no <bmap version/);
    expect(() => parseBmap('<bmap version="3.0"></bmap>')).toThrow(/version 3\.0 is newer/);
  });
});
