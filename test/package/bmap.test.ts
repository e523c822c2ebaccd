import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBmap } from '../../builder/package/bmap-format.ts';
import { createBmap, mapImage, writeBmapFile } from '../../builder/package/bmap.ts';
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
