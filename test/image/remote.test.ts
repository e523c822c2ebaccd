/**
 * An image given by path or https URL (image/remote.ts), through `pibake inspect` as a user runs it:
 * the report of a downloaded image is the report of the same file read locally.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InspectReport } from '../../builder/image/inspect.ts';
import { withLocalImage } from '../../builder/image/remote.ts';
import { runPibake, scratchDir } from '../helpers/image.ts';
import { serveFolder, type HttpsFolder } from '../helpers/https-server.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { sha256sum } from './intake-fixture.ts';

let dir: string;
let cleanup: () => Promise<void>;
let server: HttpsFolder;
let packed: string;
let sha: string;

beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir());
  const image = join(dir, 'base.img');
  await synthesizeRaspiosImage({ path: image, generation: 'trixie', sizeMiB: 300, bootMiB: 64 });
  await execa('zstd', ['-q', '-1', image, '-o', `${image}.zst`]);
  packed = `${image}.zst`;
  sha = await sha256sum(packed);
  server = await serveFolder(dir);
});

afterAll(async () => {
  server?.close();
  await cleanup();
});

describe('pibake inspect URL', () => {
  it('reports on the checked download exactly what it reports on the file, naming the URL; the cache keeps nothing', async () => {
    const cache = join(dir, 'cache');
    const env = { ...server.childEnv, PIBAKE_CACHE_DIR: cache };
    const url = `${server.base}/files/base.img.zst`;
    const remote = await runPibake(['inspect', url, '--sha256', sha, '--json'], env);
    expect(remote.stderr.split('\n').filter((l) => l.startsWith('error'))).toEqual([]);
    expect(remote.exitCode).toBe(0);
    const local = await runPibake(['inspect', packed, '--json']);
    expect(local.exitCode).toBe(0);
    const fromUrl = JSON.parse(remote.stdout) as InspectReport;
    expect(fromUrl.image).toBe(url);
    expect({ ...fromUrl, image: '' }).toEqual({ ...(JSON.parse(local.stdout) as InspectReport), image: '' });
    expect(fromUrl.os.generation).toBe('trixie');
    expect(await readdir(cache)).toEqual([]);

    const unchecked = await runPibake(['inspect', url], env);
    expect(unchecked.exitCode).toBe(1);
    expect(unchecked.stderr.trim()).toMatch(/^error: https:.*base\.img\.zst is given without its SHA-256 \(hint: add --sha256 .*\)$/);
    const wrong = await runPibake(['inspect', url, '--sha256', '1'.repeat(64)], env);
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stderr.split('\n').filter((l) => l.startsWith('error'))).toEqual([expect.stringMatching(/has SHA-256 [0-9a-f]{64}, expected 1{64}/)]);
    expect(wrong.stdout).toBe('');
    expect(await readdir(cache)).toEqual([]);
  });
});

describe('withLocalImage on a file', () => {
  it('hands the file over as it is, after checking a SHA-256 when one is given', async () => {
    expect(await withLocalImage(packed, {}, async (path) => path)).toBe(packed);
    expect(await withLocalImage(packed, { sha256: sha.toUpperCase() }, async (path) => path)).toBe(packed);
    let called = false;
    await expect(withLocalImage(packed, { sha256: '2'.repeat(64) }, async () => {
      called = true;
    })).rejects.toThrow(new RegExp(`base\\.img\\.zst has SHA-256 ${sha}, expected 2{64}`));
    expect(called).toBe(false);
  });
});
