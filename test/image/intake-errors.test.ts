import { mkdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatError, PibakeError } from '../../builder/common/errors.ts';
import { obtainBase } from '../../builder/image/intake.ts';
import type { BaseImageSpec } from '../../builder/common/base-image.ts';
import { makeDiskImage, scratchDir, sha256sum } from './intake-fixture.ts';
import { entriesOf } from '../helpers/image.ts';

let dir: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir('intake-errors'));
  const image = join(dir, 'good.img');
  await makeDiskImage(image, 32);
  await execa('xz', ['-T0', '-k', '-1', image]);
  await execa('zstd', ['-q', '-k', image]);

  const xz = await readFile(`${image}.xz`);
  await writeFile(join(dir, 'truncated.img.xz'), xz.subarray(0, Math.floor(xz.length / 2)));
  const zst = await readFile(`${image}.zst`);
  for (let i = 0; i < 64; i += 1) zst[Math.floor(zst.length / 2) + i * 97]! ^= 0xff;
  await writeFile(join(dir, 'corrupt.img.zst'), zst);

  await mkdir(join(dir, 'a-directory.img'));
  await writeFile(join(dir, 'empty.img'), '');
  await writeFile(join(dir, 'notes.img'), 'these are my notes, not a disk image\n'.repeat(40));
  await writeFile(join(dir, 'README.txt'), 'no image here\n');
  await execa('zip', ['-q', '-j', join(dir, 'no-image.zip'), join(dir, 'README.txt')]);
  await execa('zip', ['-q', '-j', join(dir, 'text-as-image.zip'), join(dir, 'notes.img')]);
  await execa('zip', ['-q', '-j', join(dir, 'good.zip'), image]);
  const zip = await readFile(join(dir, 'good.zip'));
  await writeFile(join(dir, 'truncated.zip'), zip.subarray(0, Math.floor(zip.length / 2)));
  await execa('cp', ['--sparse=always', image, join(dir, 'truncated-raw.img')]);
  await truncate(join(dir, 'truncated-raw.img'), 300);
});
afterAll(() => cleanup());

/** Expect a one-line PibakeError with a hint, and an empty cache folder afterwards. */
async function expectCleanFailure(spec: BaseImageSpec, pattern: RegExp, validate?: () => Promise<void>): Promise<PibakeError> {
  const cache = join(dir, `cache-${Math.random().toString(16).slice(2)}`);
  await mkdir(cache);
  const error = await obtainBase(spec, { cacheDir: cache, validate }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PibakeError);
  const e = error as PibakeError;
  expect(e.message).toMatch(pattern);
  expect(e.hint).toBeTruthy();
  const lines = formatError(e);
  if (process.env.SHOW_ERRORS) console.log(lines[0]);
  expect(lines).toHaveLength(1);
  expect(lines[0]).not.toContain('\n');
  expect(await entriesOf(cache)).toEqual([]);
  return e;
}

// The spec's own rules (https, a URL's sha256, a SHA-256's digits, url or path) are the inventory's,
// for cluster.yaml and --base alike: test/inventory/base.test.ts. Intake is given checked specs.
describe('obtainBase with bad input: one-line error, nothing in the cache', () => {
  it('a truncated .xz', () => expectCleanFailure({ path: join(dir, 'truncated.img.xz') }, /truncated\.img\.xz is truncated or corrupt \(xz: /));
  it('a corrupt .zst', () => expectCleanFailure({ path: join(dir, 'corrupt.img.zst') }, /corrupt\.img\.zst is truncated or corrupt \(zstd: /));
  it('a wrong SHA-256', () =>
    expectCleanFailure({ path: join(dir, 'good.img.xz'), sha256: 'ab'.repeat(32) }, /good\.img\.xz has SHA-256 [0-9a-f]{64}, expected (ab){32}/));
  it('a directory', () => expectCleanFailure({ path: join(dir, 'a-directory.img') }, /is a directory/));
  it('an empty file', () => expectCleanFailure({ path: join(dir, 'empty.img') }, /empty\.img is empty/));
  it('a missing file', () => expectCleanFailure({ path: join(dir, 'missing.img.xz') }, /missing\.img\.xz does not exist/));
  it('a text file named .img', () => expectCleanFailure({ path: join(dir, 'notes.img') }, /notes\.img is not a disk image/));
  it('a raw image cut short inside its first sector', () => expectCleanFailure({ path: join(dir, 'truncated-raw.img') }, /is not a disk image/));
  it('a .zip with no .img', () => expectCleanFailure({ path: join(dir, 'no-image.zip') }, /no-image\.zip contains no \.img file/));
  it('a .zip whose .img is not a disk image', () =>
    expectCleanFailure({ path: join(dir, 'text-as-image.zip') }, /does not contain a disk image/));
  it('a truncated .zip', () => expectCleanFailure({ path: join(dir, 'truncated.zip') }, /truncated\.zip is (not a readable zip|truncated or corrupt)/));
  it('an image the validator rejects', () =>
    expectCleanFailure({ path: join(dir, 'good.img.zst') }, /not a Raspberry Pi OS image/, async () => {
      throw new PibakeError('good.img.zst is not a Raspberry Pi OS image', { hint: 'use one from raspberrypi.com' });
    }));
  it('accepts the good ones, as a control', async () => {
    const cache = join(dir, 'cache-control');
    await mkdir(cache);
    for (const name of ['good.img.xz', 'good.img.zst', 'good.zip']) {
      const base = await obtainBase({ path: join(dir, name) }, { cacheDir: cache });
      expect(base.sha256).toBe(await sha256sum(join(dir, 'good.img')));
    }
  });
});
