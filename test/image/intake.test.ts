import { copyFile, mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PibakeError } from '../../builder/common/errors.ts';
import { obtainBase, resolveCacheDir, type UnpackProgress } from '../../builder/image/intake.ts';
import { allocatedBytes, makeDiskImage, MiB, scratchDir, sha256sum } from './intake-fixture.ts';
import { entriesOf } from '../helpers/image.ts';

let dir: string;
let cleanup: () => Promise<void>;
let image: string;
let imageSha: string;

beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir('intake'));
  image = join(dir, 'raspios.img');
  await makeDiskImage(image, 64);
  imageSha = await sha256sum(image);
  await execa('xz', ['-T0', '-k', '-1', image]);
  await execa('zstd', ['-q', '-k', image]);
  await writeFile(join(dir, 'README'), 'not the image\n');
  await execa('zip', ['-q', '-j', join(dir, 'raspios.zip'), join(dir, 'README'), image]);
  // -fz forces zip64 records, the layout large (>4 GiB) entries use.
  await execa('zip', ['-q', '-j', '-fz', join(dir, 'raspios64.zip'), image]);
});
afterAll(() => cleanup());

async function freshCache(name: string): Promise<string> {
  const cache = join(dir, `cache-${name}`);
  await mkdir(cache);
  return cache;
}

describe('obtainBase', () => {
  for (const [kind, file] of [
    ['.img', 'raspios.img'], ['.img.xz', 'raspios.img.xz'], ['.img.zst', 'raspios.img.zst'],
    ['.zip', 'raspios.zip'], ['.zip (zip64)', 'raspios64.zip'],
  ] as const) {
    it(`turns a ${kind} into the same raw image, sparse, in the cache`, async () => {
      const cache = await freshCache(kind.replace(/\W/g, ''));
      const input = join(dir, file);
      const inputSha = await sha256sum(input);
      const base = await obtainBase({ path: input, sha256: inputSha }, { cacheDir: cache });
      expect(base.sha256).toBe(imageSha);
      expect(await sha256sum(base.path)).toBe(imageSha);
      await execa('cmp', [image, base.path]);
      expect(base.path).toBe(join(cache, `base-${inputSha}.img`));
      // 64 MiB image with ~2.3 MiB of data: holes must stay holes.
      expect(await allocatedBytes(base.path)).toBeLessThan(4 * MiB);
      expect((await entriesOf(cache))).toEqual([`base-${inputSha}.img`, `base-${inputSha}.json`]);
    });
  }

  it('is a cache hit the second time: no decompression (xz not even reachable), no validation', async () => {
    const cache = await freshCache('hit');
    let validations = 0;
    const validate = async (): Promise<void> => {
      validations += 1;
    };
    const spec = { path: join(dir, 'raspios.img.xz') };
    const first = await obtainBase(spec, { cacheDir: cache, validate });
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const second = await obtainBase(spec, { cacheDir: cache, validate });
      expect(second).toEqual(first);
      // Also with the SHA-256 given: found by key without reading the input.
      const third = await obtainBase({ ...spec, sha256: (await entriesOf(cache))[0]!.slice(5, 69) }, { cacheDir: cache, validate });
      expect(third).toEqual(first);
    } finally {
      process.env.PATH = path;
    }
    expect(validations).toBe(1);
  });

  it('fills the cache once when two builds want the same base at the same time: the second waits, says so, then hits', async () => {
    const cache = await freshCache('concurrent');
    let validations = 0;
    const waits: string[] = [];
    const options = {
      cacheDir: cache, onWait: (message: string) => waits.push(message),
      validate: async () => {
        validations += 1;
      },
    };
    const spec = { path: join(dir, 'raspios.img.xz') };
    const [a, b] = await Promise.all([obtainBase(spec, options), obtainBase(spec, options)]);
    expect(a).toEqual(b);
    expect(validations).toBe(1);
    // Who holds the lock is recorded just after it is taken: a waiter that looks at once may not see it yet.
    expect(waits).toEqual([expect.stringMatching(new RegExp(`^pibake: waiting for (pid ${process.pid} \\(.+\\)|another pibake process) to finish filling the base cache ${cache}$`))]);
    expect(await entriesOf(cache)).toHaveLength(2);
  });

  it('validates an entry cached without validation on its next use, once, and drops it when it fails', async () => {
    const cache = await freshCache('late-validation');
    const spec = { path: join(dir, 'raspios.img.zst') };
    await obtainBase(spec, { cacheDir: cache }); // as an older pibake cached it: unchecked
    const refuse = async () => {
      throw new PibakeError('raspios.img.zst: partition 2 (ext4 root): the ext4 journal is damaged', { hint: 'download it again' });
    };
    await expect(obtainBase(spec, { cacheDir: cache, validate: refuse })).rejects.toThrow(/journal is damaged/);
    expect(await entriesOf(cache)).toEqual([]);
    let validations = 0;
    const accept = async () => {
      validations += 1;
    };
    await obtainBase(spec, { cacheDir: cache }); // cached unchecked again
    await obtainBase(spec, { cacheDir: cache, validate: accept });
    await obtainBase(spec, { cacheDir: cache, validate: accept });
    expect(validations).toBe(1);
  });

  it('re-reads a local file that changed since it was cached', async () => {
    const cache = await freshCache('changed');
    const copy = join(dir, 'changing.img');
    await copyFile(image, copy);
    const first = await obtainBase({ path: copy }, { cacheDir: cache });
    await makeDiskImage(copy, 32);
    const second = await obtainBase({ path: copy }, { cacheDir: cache });
    expect(second.sha256).not.toBe(first.sha256);
    expect(second.sha256).toBe(await sha256sum(copy));
  });

  it('tells its caller how the unpacking goes, and the end; a cache hit tells nothing', async () => {
    const cache = await freshCache('progress');
    const input = join(dir, 'raspios.img.xz');
    const reports: UnpackProgress[] = [];
    await obtainBase({ path: input }, { cacheDir: cache, onProgress: (p) => reports.push(p) });
    const last = reports.at(-1);
    expect(last).toEqual({ read: (await stat(input)).size, total: (await stat(input)).size, written: (await stat(image)).size, seconds: expect.any(Number), done: true });
    expect(reports.filter((p) => p.done)).toHaveLength(1);
    const written = reports.map((p) => p.written);
    expect(written).toEqual([...written].sort((a, b) => a - b));
    expect(reports.length).toBeGreaterThan(2); // every chunk: the caller throttles
    const again: UnpackProgress[] = [];
    await obtainBase({ path: input }, { cacheDir: cache, onProgress: (p) => again.push(p) });
    expect(again).toEqual([]);
  });

  it('runs validate on the temp image before it enters the cache', async () => {
    const cache = await freshCache('validate');
    const seen: string[] = [];
    await obtainBase({ path: join(dir, 'raspios.img.zst') }, {
      cacheDir: cache,
      validate: async (path) => {
        seen.push(path);
        expect(await sha256sum(path)).toBe(imageSha);
        expect((await entriesOf(cache)).some((name) => name.startsWith('base-'))).toBe(false);
      },
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(/\/\.intake\.img\.\d+-[0-9a-f]+\.partial$/);
  });

  it('sweeps temp files left by dead processes', async () => {
    const cache = await freshCache('sweep');
    // PID 2^22+1 is above Linux's pid_max limit, so it cannot be running.
    await writeFile(join(cache, '.intake.img.4194305-abcdef.partial'), 'stale');
    await writeFile(join(cache, '.tmp-4194305-abcdef.img'), 'stale, named as older pibake named its temps');
    await obtainBase({ path: image }, { cacheDir: cache });
    expect((await entriesOf(cache)).filter((name) => name.startsWith('.tmp-') || name.endsWith('.partial'))).toEqual([]);
  });

  it('finds its cache folder from the option, PIBAKE_CACHE_DIR, XDG_CACHE_HOME, then ~/.cache', () => {
    const saved = { ...process.env };
    try {
      process.env.PIBAKE_CACHE_DIR = '/p';
      process.env.XDG_CACHE_HOME = '/x';
      expect(resolveCacheDir('/o')).toBe('/o');
      expect(resolveCacheDir()).toBe('/p');
      delete process.env.PIBAKE_CACHE_DIR;
      expect(resolveCacheDir()).toBe('/x/pibake');
      delete process.env.XDG_CACHE_HOME;
      process.env.HOME = '/home/u';
      expect(resolveCacheDir()).toBe('/home/u/.cache/pibake');
    } finally {
      process.env = saved;
    }
  });
});
