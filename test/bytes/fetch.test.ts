/** An image named by an https URL made a checked local file, against a real https server. */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkSha256, imageUrlOf, urlFileName, withFetchedImage } from '../../builder/bytes/fetch.ts';
import { PibakeError } from '../../builder/common/errors.ts';
import { serveFolder, type HttpsFolder } from '../helpers/https-server.ts';
import { makeDiskImage, scratchDir, sha256sum } from '../image/intake-fixture.ts';

let dir: string;
let cleanup: () => Promise<void>;
let server: HttpsFolder;
let packedSha: string;
let cacheCount = 0;

beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir('fetch'));
  const image = join(dir, 'node.img');
  await makeDiskImage(image, 16);
  await execa('xz', ['-T0', '-k', '-0', image]);
  packedSha = await sha256sum(`${image}.xz`);
  await execa('sh', ['-c', 'printf "<html>not found</html>%.0s" $(seq 2000) > "$1"', '_', join(dir, 'page.img.xz')]);
  await execa('sh', ['-c', 'echo "<bmap/>" > "$1"', '_', join(dir, 'node.img.bmap')]);
  server = await serveFolder(dir);
});

afterAll(async () => {
  server.close();
  await cleanup();
});

/** A fresh cache folder (made by the fetch itself, as pibake's cache is made on first use). */
function freshCache(): string {
  return join(dir, `cache-${cacheCount++}`);
}

async function refusal(url: string, sha256 = packedSha, folder = freshCache()): Promise<{ error: PibakeError; left: string[]; called: boolean }> {
  let called = false;
  const error = await withFetchedImage(new URL(url), { sha256, folder }, async () => {
    called = true;
  }).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(PibakeError);
  return { error: error as PibakeError, left: await readdir(folder).catch(() => []), called };
}

describe('withFetchedImage', () => {
  it('hands over the download, byte for byte, under its own name with the files published beside it, then removes it all', async () => {
    const folder = freshCache();
    let seen: { path: string; names: string[]; mode: number } | undefined;
    const bytes = await withFetchedImage(new URL(`${server.base}/moved/node.img.xz`), { sha256: packedSha, folder, beside: ['node.img.bmap', 'node.bmap', 'manifest.json'] }, async (path) => {
      seen = { path, names: (await readdir(dirname(path))).sort(), mode: (await stat(dirname(path))).mode & 0o777 };
      return readFile(path);
    });
    expect(bytes.equals(await readFile(join(dir, 'node.img.xz')))).toBe(true);
    expect(basename(seen?.path ?? '')).toBe('node.img.xz');
    // Absent companions (404) are simply not there; the folder is private and work in progress.
    expect(seen?.names).toEqual(['node.img.bmap', 'node.img.xz']);
    expect(seen?.mode).toBe(0o700);
    expect(basename(dirname(seen?.path ?? ''))).toMatch(/\.partial$/);
    expect(await readdir(folder)).toEqual([]);
  });

  it('refuses a download whose SHA-256 is not the one given: the caller never sees it, nothing is left', async () => {
    const { error, left, called } = await refusal(`${server.base}/files/node.img.xz`, '0'.repeat(64));
    expect(error.message).toMatch(/node\.img\.xz has SHA-256 [0-9a-f]{64}, expected 0{64}$/);
    expect(called).toBe(false);
    expect(left).toEqual([]);
  });

  it('refuses a truncated body: a connection dropped early, and a short body without a length (caught by the digest)', async () => {
    const short = await refusal(`${server.base}/short/node.img.xz`);
    expect(short.error.message).toMatch(/download of .*node\.img\.xz (was cut off|ended after \d+ of \d+ bytes|failed)/);
    expect(short.left).toEqual([]);
    const chunked = await refusal(`${server.base}/chunked/node.img.xz`);
    expect(chunked.error.message).toMatch(/has SHA-256 [0-9a-f]{64}, expected /);
    expect(chunked.called).toBe(false);
    expect(chunked.left).toEqual([]);
  });

  it('refuses a 404, and content that is no image as soon as its first bytes arrive', async () => {
    const missing = await refusal(`${server.base}/files/gone.img.xz`);
    expect(missing.error.message).toMatch(/HTTP 404/);
    expect(missing.left).toEqual([]);
    const page = await refusal(`${server.base}/files/page.img.xz`);
    expect(page.error.message).toBe('page.img.xz is not a disk image, .xz, .zst or .zip file');
    expect(page.left).toEqual([]);
  });
});

describe('image URLs and digests on the command line', () => {
  it('tells a URL from a path, and refuses every scheme but https in one line with a hint', () => {
    expect(imageUrlOf('output/demo/web1.img.xz')).toBeUndefined();
    expect(imageUrlOf('/tmp/https:/x.img')).toBeUndefined();
    expect(imageUrlOf('https://h/rel/web1.img.xz')?.href).toBe('https://h/rel/web1.img.xz');
    for (const text of ['http://h/rel/web1.img.xz', 'ftp://h/web1.img', 'file:///tmp/x.img']) {
      const error = (() => {
        try {
          imageUrlOf(text);
        } catch (e) {
          return e as PibakeError;
        }
      })();
      expect(error?.message).toBe(`image "${text}" is not an https URL`);
      expect(error?.hint).toMatch(/https/);
    }
  });

  it('names the download as the URL does', () => {
    expect(urlFileName(new URL('https://h/rel/web1.img.xz?sig=1'))).toBe('web1.img.xz');
    expect(urlFileName(new URL('https://h/'))).toBe('image');
  });

  it('accepts a SHA-256 as sha256sum prints it (any case), nothing else', () => {
    expect(checkSha256(` ${'AB'.repeat(32)} `)).toBe('ab'.repeat(32));
    expect(() => checkSha256('abc')).toThrow(/--sha256 "abc" is not a SHA-256/);
  });
});
