import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PibakeError } from '../../builder/common/errors.ts';
import { obtainBase } from '../../builder/image/intake.ts';
import { makeDiskImage, scratchDir, sha256sum } from './intake-fixture.ts';
import { entriesOf } from '../helpers/image.ts';
import { serveFolder } from '../helpers/https-server.ts';

let dir: string;
let cleanup: () => Promise<void>;
let close: () => void;
let base: string;
let certPath: string;
let imageSha: string;
let served: Map<string, number>;

beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir('intake-https'));
  const image = join(dir, 'raspios.img');
  await makeDiskImage(image, 64);
  imageSha = await sha256sum(image);
  await execa('xz', ['-T0', '-k', '-1', image]);
  await execa('zip', ['-q', '-j', join(dir, 'raspios.zip'), image]);
  ({ base, served, certPath, close } = await serveFolder(dir));
});

afterAll(async () => {
  close();
  await cleanup();
});

async function freshCache(): Promise<string> {
  const cache = join(dir, `cache-${Math.random().toString(16).slice(2)}`);
  await mkdir(cache);
  return cache;
}

describe('obtainBase from an https URL', () => {
  it('downloads, checks the SHA-256, decompresses into the cache, then hits the cache', async () => {
    const cache = await freshCache();
    const sha256 = await sha256sum(join(dir, 'raspios.img.xz'));
    const spec = { url: `${base}/moved/raspios.img.xz`, sha256 };
    const first = await obtainBase(spec, { cacheDir: cache });
    expect(first.sha256).toBe(imageSha);
    await execa('cmp', [join(dir, 'raspios.img'), first.path]);
    const downloads = served.get('/files/raspios.img.xz');
    expect(await obtainBase(spec, { cacheDir: cache })).toEqual(first);
    expect(served.get('/files/raspios.img.xz')).toBe(downloads); // no second download
  });

  it('handles a .zip download (unzip needs the whole file: downloaded to a temp first)', async () => {
    const cache = await freshCache();
    const sha256 = await sha256sum(join(dir, 'raspios.zip'));
    const result = await obtainBase({ url: `${base}/files/raspios.zip`, sha256 }, { cacheDir: cache });
    expect(result.sha256).toBe(imageSha);
    expect((await entriesOf(cache)).filter((n) => n.endsWith('.partial'))).toEqual([]);
  });

  it('rejects a wrong SHA-256 and leaves nothing in the cache', async () => {
    const cache = await freshCache();
    const error = await obtainBase({ url: `${base}/files/raspios.img.xz`, sha256: '0'.repeat(64) }, { cacheDir: cache })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PibakeError);
    expect((error as PibakeError).message).toMatch(/raspios\.img\.xz has SHA-256 [0-9a-f]{64}, expected 0{64}/);
    expect(await entriesOf(cache)).toEqual([]);
  });

  it('reports HTTP errors in one line', async () => {
    const cache = await freshCache();
    const error = await obtainBase({ url: `${base}/files/nope.img.xz`, sha256: '0'.repeat(64) }, { cacheDir: cache })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PibakeError);
    expect((error as PibakeError).message).toMatch(/HTTP 404/);
    expect(await entriesOf(cache)).toEqual([]);
  });

  it('leaves nothing in the cache when interrupted with Ctrl-C mid-download', async () => {
    const cache = await freshCache();
    const script = join(dir, 'interrupted.mts');
    const intake = resolve('builder/image/intake.ts');
    await writeFile(script, [
      "import { globalAgent } from 'node:https';",
      "import { readFileSync } from 'node:fs';",
      `import { obtainBase } from ${JSON.stringify(intake)};`,
      `globalAgent.options.ca = readFileSync(${JSON.stringify(certPath)});`,
      `await obtainBase({ url: ${JSON.stringify(`${base}/stall/raspios.img.xz`)}, sha256: ${JSON.stringify('0'.repeat(64))} },`,
      `  { cacheDir: ${JSON.stringify(cache)} });`,
    ].join('\n'));
    const child = execa('node', ['--import', 'tsx', script], { reject: false, cwd: resolve('.') });
    // Wait until the half-delivered download has produced a temp image with data in it.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const temps = (await entriesOf(cache).catch(() => [] as string[])).filter((n) => n.endsWith('.partial'));
      if (temps.length > 0 && (await stat(join(cache, temps[0]!))).size > 0) break;
      if (Date.now() > deadline) throw new Error('child never started writing');
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGINT');
    const result = await child;
    expect(result.signal).toBe('SIGINT');
    expect(await entriesOf(cache)).toEqual([]);
  });
});
