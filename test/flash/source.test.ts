import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { openImageFile } from '../../builder/bytes/open.ts';
import { imageSizeOf, planPieces, readPieces } from '../../builder/flash/source.ts';
import { readBmap } from '../../builder/package/bmap-format.ts';
import { MiB, makeImageWithBmap, withTempDir } from './helpers.ts';

describe('image source', () => {
  it('splits ranges into pieces at range ends and chunk multiples', () => {
    const pieces = [...planPieces([{ start: 100, end: 9000 }, { start: 9000, end: 9001 }], 4096)];
    expect(pieces).toEqual([
      { range: 0, offset: 100, length: 3996 },
      { range: 0, offset: 4096, length: 4096 },
      { range: 0, offset: 8192, length: 808 },
      { range: 1, offset: 9000, length: 1 },
    ]);
  });

  it('yields the same bytes from .img, .img.zst (also without a recorded size) and .img.xz', async () => {
    await withTempDir(async (dir) => {
      const { image } = await makeImageWithBmap(dir);
      await execa('zstd', ['-q', image, '-o', `${image}.zst`]);
      await execa('xz', ['-k', '-0', image]);
      // Streamed compression records no content size: the size must be found by decompressing.
      const streamed = join(dir, 'streamed.img.zst');
      await execa('sh', ['-c', `zstd -q -c < "${image}" > "${streamed}"`]);
      const raw = await readFile(image);
      const ranges = [{ start: 0, end: 600 }, { start: 1 * MiB - 10, end: 5 * MiB }, { start: raw.length - 5000, end: raw.length }];
      for (const path of [image, `${image}.zst`, `${image}.xz`, streamed]) {
        const file = await openImageFile(path);
        expect(await imageSizeOf(file)).toBe(raw.length);
        const got: Buffer[] = [];
        for await (const piece of readPieces(file, ranges, 1 * MiB)) {
          expect(piece.data.length).toBeLessThanOrEqual(1 * MiB);
          got.push(piece.data);
        }
        expect(Buffer.concat(got).equals(Buffer.concat(ranges.map((r) => raw.subarray(r.start, r.end))))).toBe(true);
      }
    });
  });

  it('fails clearly on a truncated or corrupt compressed image', async () => {
    await withTempDir(async (dir) => {
      const { image } = await makeImageWithBmap(dir);
      await execa('xz', ['-k', '-0', image]);
      const xz = await readFile(`${image}.xz`);
      const broken = join(dir, 'broken.img.xz');
      await writeFile(broken, xz.subarray(0, Math.floor(xz.length / 2)));
      const drain = async () => {
        for await (const _ of readPieces(await openImageFile(broken), [{ start: 0, end: 32 * MiB }])) void _;
      };
      await expect(drain()).rejects.toThrow(/xz|ends at byte/);
    });
  });

  it('with unmappedMustBeZero, reads every byte of a raw or packed image and stops at the first non-zero one the ranges leave out', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap } = await makeImageWithBmap(dir);
      const ranges = (await readBmap(bmap)).ranges;
      const raw = await readFile(image);
      const collect = async (path: string) => {
        const out = Buffer.alloc(raw.length);
        for await (const piece of readPieces(await openImageFile(path), ranges, 1 * MiB, { unmappedMustBeZero: true })) {
          piece.data.copy(out, piece.offset);
          piece.release();
        }
        return out;
      };
      // The bmap's gaps hold zeros: the same bytes come out as without the check, raw and packed.
      await execa('zstd', ['-q', image, '-o', `${image}.zst`]);
      for (const path of [image, `${image}.zst`]) expect((await collect(path)).equals(raw)).toBe(true);
      // One byte of data in a gap, raw and packed: named by its offset.
      const gap = (ranges[1]?.start ?? 0) - 7;
      await writeFile(image, Buffer.concat([raw.subarray(0, gap), Buffer.from([1]), raw.subarray(gap + 1)]));
      await execa('zstd', ['-q', '-f', image, '-o', `${image}.zst`]);
      for (const path of [image, `${image}.zst`]) {
        await expect(collect(path)).rejects.toThrow(new RegExp(`holds data at byte ${gap}, which its bmap leaves out`));
      }
    });
  });
});
