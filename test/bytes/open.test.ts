import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImageFile, rawSizeOf, readRaw, recordedRawSize, unpackImageFile } from '../../builder/bytes/open.ts';
import { PibakeError } from '../../builder/common/errors.ts';
import { allocatedBytes, makeDiskImage, scratchDir, sha256sum } from '../image/intake-fixture.ts';

let dir: string;
let cleanup: () => Promise<void>;
let image: string;
let imageSha: string;
const SIZE = 24 << 20;

beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir('open'));
  image = join(dir, 'disk.img');
  await makeDiskImage(image, SIZE >> 20);
  imageSha = await sha256sum(image);
  await execa('xz', ['-0', '-k', image]);
  await execa('zstd', ['-q', '-k', image]);
  await execa('zip', ['-q', '-j', join(dir, 'disk.zip'), image]);
  // Compressed from a pipe, zstd records no content size.
  await execa('sh', ['-c', 'zstd -q -c < "$1" > "$2"', '_', image, join(dir, 'piped.img.zst')]);
  // The names say nothing: only the content tells.
  await execa('cp', [`${image}.xz`, join(dir, 'download-1')]);
  await execa('cp', [join(dir, 'disk.zip'), join(dir, 'download-2')]);
});
afterAll(() => cleanup());

async function sha256OfStream(stream: NodeJS.ReadableStream): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const inputs = ['disk.img', 'disk.img.xz', 'disk.img.zst', 'disk.zip', 'piped.img.zst', 'download-1', 'download-2'];

describe('readRaw', () => {
  it.each(inputs)('%s: the raw image, byte for byte, and the SHA-256 of the file as given', async (name) => {
    const file = await openImageFile(join(dir, name));
    const raw = await readRaw(file, { hashInput: true });
    expect(await sha256OfStream(raw.stream)).toBe(imageSha);
    expect(await raw.inputSha256()).toBe(await sha256sum(join(dir, name)));
  });

  it('fails the stream with a PibakeError naming the file when an archive is cut short', async () => {
    for (const [name, whole] of [['cut.img.xz', 'disk.img.xz'], ['cut.img.zst', 'disk.img.zst'], ['cut.zip', 'disk.zip']]) {
      const bytes = await readFile(join(dir, whole as string));
      await writeFile(join(dir, name as string), bytes.subarray(0, bytes.length - 200));
      const error = await (async () => sha256OfStream((await readRaw(await openImageFile(join(dir, name as string)))).stream))().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PibakeError);
      expect((error as Error).message).toMatch(new RegExp(`^${(name as string).replace('.', '\\.')} (is truncated or corrupt|is not a readable zip archive)`));
    }
  });

  it('refuses a zip without exactly one .img: pibake does not guess', async () => {
    await writeFile(join(dir, 'other.img'), 'x');
    await execa('zip', ['-q', '-j', join(dir, 'two.zip'), image, join(dir, 'other.img')]);
    await writeFile(join(dir, 'README'), 'no image\n');
    await execa('zip', ['-q', '-j', join(dir, 'none.zip'), join(dir, 'README')]);
    await expect(readRaw(await openImageFile(join(dir, 'two.zip')))).rejects.toThrow(/two\.zip holds 2 images \(disk\.img, other\.img\)/);
    await expect(readRaw(await openImageFile(join(dir, 'none.zip')))).rejects.toThrow(/none\.zip contains no \.img file/);
  });
});

describe('sizes', () => {
  it('reads the raw size each container records, and counts it when none is recorded', async () => {
    for (const name of inputs) {
      const file = await openImageFile(join(dir, name));
      expect(await rawSizeOf(file)).toBe(SIZE);
      expect(await recordedRawSize(file)).toBe(name === 'piped.img.zst' ? undefined : SIZE);
    }
  });
});

describe('unpackImageFile', () => {
  it('makes a sparse, owner-only raw copy of a packed image', async () => {
    const target = join(dir, 'unpacked.img');
    const result = await unpackImageFile(await openImageFile(join(dir, 'download-1')), target);
    expect(result.bytes).toBe(SIZE);
    expect(await sha256sum(target)).toBe(imageSha);
    expect((await stat(target)).mode & 0o777).toBe(0o600);
    expect(await allocatedBytes(target)).toBeLessThan(SIZE / 4);
  });

  it('leaves nothing behind when the archive is damaged', async () => {
    const target = join(dir, 'never.img');
    const xz = await readFile(join(dir, 'disk.img.xz'));
    await writeFile(join(dir, 'damaged.img.xz'), xz.subarray(0, xz.length >> 1));
    await expect(unpackImageFile(await openImageFile(join(dir, 'damaged.img.xz')), target)).rejects.toBeInstanceOf(PibakeError);
    expect((await readdir(dir)).filter((n) => n.startsWith('never'))).toEqual([]);
  });
});
