import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PibakeError } from '../../builder/common/errors.ts';
import { openImageFile, readRaw } from '../../builder/bytes/open.ts';
import { compressImage, type Compression } from '../../builder/package/compress.ts';
import { makeDiskImage, scratchDir, sha256sum } from '../image/intake-fixture.ts';

let dir: string;
let cleanup: () => Promise<void>;
let image: string;

beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir('compress'));
  image = join(dir, 'node.img');
  // 96 MiB so that xz (24 MiB blocks) and zstd really split the work between threads.
  await makeDiskImage(image, 96);
  // Add compressible text so the compressors do real work, not just store random bytes.
  const text = Buffer.from('pibake '.repeat(1 << 20));
  const { open } = await import('node:fs/promises');
  const handle = await open(image, 'r+');
  await handle.write(text, 0, text.length, 40 << 20);
  await handle.close();
});
afterAll(() => cleanup());

async function sha256OfStream(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline((await readRaw(await openImageFile(path))).stream, new Writable({
    write(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      cb();
    },
  }));
  return hash.digest('hex');
}

describe('compressImage', () => {
  for (const format of ['zstd', 'xz'] as Compression[]) {
    it(`${format}: reproducible (same bytes with 1, 2 and 0 threads, and again), and decompresses to the image`, async () => {
      const ext = format === 'zstd' ? 'zst' : 'xz';
      const outputs: string[] = [];
      for (const threads of [1, 2, 0, 2]) {
        const out = join(dir, `node-${threads}-${outputs.length}.img.${ext}`);
        await compressImage(image, out, format, { threads, level: format === 'xz' ? 1 : 3 });
        outputs.push(await sha256sum(out));
      }
      expect(new Set(outputs).size).toBe(1);
      const archive = join(dir, `node-1-0.img.${ext}`);
      // Oracle: the program itself decompresses and checks its integrity data.
      const { stdout } = await execa('bash', ['-c', `${format} -dc "$1" | sha256sum`, '_', archive]);
      expect(stdout.split(' ')[0]).toBe(await sha256sum(image));
      expect(await sha256OfStream(archive)).toBe(await sha256sum(image));
      expect((await readFile(archive)).length).toBeLessThan(96 << 20);
      expect((await readdir(dir)).filter((n) => n.endsWith('.partial'))).toEqual([]);
    });
  }

  it('leaves neither the archive nor a temp file when it fails', async () => {
    const out = join(dir, 'missing.img.zst');
    await expect(compressImage(join(dir, 'does-not-exist.img'), out, 'zstd')).rejects.toBeInstanceOf(PibakeError);
    expect((await readdir(dir)).filter((n) => n.startsWith('missing') || n.endsWith('.partial'))).toEqual([]);
  });
});
