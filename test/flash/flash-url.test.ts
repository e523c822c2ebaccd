/**
 * `pibake flash URL --sha256 HEX`, as an operator runs it against release images published over
 * https: a real pibake process, a local https server it trusts through NODE_EXTRA_CA_CERTS, a
 * file as the card. Oracles: cmp against the raw image, the card's absence after a refusal, and
 * the cache folder's contents.
 */
import { copyFile, mkdir, open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBmap } from '../../builder/package/bmap-format.ts';
import { runPibake } from '../helpers/image.ts';
import { serveFolder, type HttpsFolder } from '../helpers/https-server.ts';
import { scratchDir } from '../image/intake-fixture.ts';
import { MiB, makeImageWithBmap, sameBytes, sha256Of } from './helpers.ts';

let dir: string;
let cleanup: () => Promise<void>;
let server: HttpsFolder;
let image: string;
let bmap: string;
let runs = 0;

beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir('flash-url'));
  const rel = join(dir, 'rel');
  await mkdir(rel);
  // A release folder as CI publishes it: web1.img.xz with web1.img.bmap beside it.
  ({ image, bmap } = await makeImageWithBmap(rel, 'web1.img'));
  await execa('xz', ['-T0', '-k', '-0', image]);
  // plain.img.zst: published without a bmap.
  await execa('zstd', ['-q', image, '-o', join(rel, 'plain.img.zst')]);
  // lying.img.xz: the image with data in a place web1's bmap leaves out, published with that bmap
  // (every range the bmap maps still matches its checksums: only the skipped bytes differ).
  const lying = join(dir, 'lying.img');
  await copyFile(image, lying);
  const handle = await open(lying, 'r+');
  await handle.write(Buffer.alloc(4096, 0x5a), 0, 4096, 16 * MiB);
  await handle.close();
  await execa('sh', ['-c', 'xz -T0 -0 -c "$1" > "$2"', '_', lying, join(rel, 'lying.img.xz')]);
  await copyFile(bmap, join(rel, 'lying.img.bmap'));
  await execa('sh', ['-c', 'printf "<html>moved</html>%.0s" $(seq 2000) > "$1"', '_', join(rel, 'page.img.xz')]);
  server = await serveFolder(rel);
});

afterAll(async () => {
  server.close();
  await cleanup();
});

/** Runs pibake with a cache folder of its own, trusting the test server; returns the run, the card and what the cache holds after. */
async function flashUrl(args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string; card: string; cacheLeft: string[] }> {
  const n = runs++;
  const cache = join(dir, `cache-${n}`);
  const card = join(dir, `card-${n}.img`);
  const run = await runPibake(['flash', ...args, '--device', card], { ...server.childEnv, PIBAKE_CACHE_DIR: cache });
  return { ...run, card, cacheLeft: await readdir(cache).catch(() => []) };
}

const exists = (path: string) => stat(path).then(() => true, () => false);

describe('pibake flash URL', () => {
  it('downloads, checks the digest and writes the mapped ranges by the bmap published beside it, verified; the cache keeps nothing', async () => {
    const sha = await sha256Of(`${image}.xz`);
    const url = `${server.base}/files/web1.img.xz`;
    const run = await flashUrl([url, '--sha256', sha]);
    expect(run.stderr.split('\n').filter((l) => l.startsWith('error'))).toEqual([]);
    expect(run.exitCode).toBe(0);
    expect(run.stderr).toMatch(new RegExp(`^download ${url}: .*\\(100%\\)`, 'm'));
    expect(run.stderr).toContain(`(bmap ${server.base}/files/web1.img.bmap)`);
    expect(run.stdout).toMatch(new RegExp(`^flashed ${url} to .*card-\\d+\\.img: .* written \\(bmap\\), verified`));
    const map = await readBmap(bmap);
    expect(await sameBytes(image, run.card, map.ranges)).toBe(true);
    expect((await stat(run.card)).size).toBe(map.imageSize);
    expect(run.cacheLeft).toEqual([]);
    expect(server.served.get('/files/web1.img.bmap')).toBe(1);

    // --verify-only of the same URL compares the card with the checked download.
    const again = await runPibake(['flash', url, '--sha256', sha, '--verify-only', '--device', run.card], { ...server.childEnv, PIBAKE_CACHE_DIR: join(dir, 'cache-verify') });
    expect(again.exitCode).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`match ${url} \\(.* compared, bmap\\)`));
  });

  it('writes an image published without a bmap whole, equal to the raw image', async () => {
    const run = await flashUrl([`${server.base}/moved/plain.img.zst`, '--sha256', await sha256Of(join(dir, 'rel', 'plain.img.zst'))]);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toMatch(/written, verified/);
    expect(await sha256Of(run.card)).toBe(await sha256Of(image));
    expect(run.cacheLeft).toEqual([]);
  });

  it('refuses a published bmap that leaves out bytes holding data, which no digest vouches for', async () => {
    const run = await flashUrl([`${server.base}/files/lying.img.xz`, '--sha256', await sha256Of(join(dir, 'rel', 'lying.img.xz'))]);
    expect(run.exitCode).toBe(1);
    expect(run.stderr.trim().split('\n').at(-1)).toMatch(
      new RegExp(`^error: ${server.base}/files/lying\\.img\\.xz holds data at byte ${16 * MiB}, which its bmap leaves out \\(hint: .*--bmap`));
    expect(run.cacheLeft).toEqual([]);
  });

  it('refuses, in one line with a hint, writing nothing and leaving nothing in the cache: wrong digest, no digest, http, 404, a truncated body, no image', async () => {
    const sha = await sha256Of(`${image}.xz`);
    const cases: [string[], RegExp][] = [
      [[`${server.base}/files/web1.img.xz`, '--sha256', '0'.repeat(64)], /^error: https:.*web1\.img\.xz has SHA-256 [0-9a-f]{64}, expected 0{64} \(hint: .*\)$/],
      [[`${server.base}/files/web1.img.xz`], /^error: https:.*web1\.img\.xz is given without its SHA-256 \(hint: add --sha256 .*\)$/],
      [[`${server.base}/files/web1.img.xz`, '--sha256', 'nope'], /^error: --sha256 "nope" is not a SHA-256 \(hint: .*\)$/],
      [[`http://127.0.0.1:1/rel/web1.img.xz`, '--sha256', sha], /^error: image "http:\/\/127\.0\.0\.1:1\/rel\/web1\.img\.xz" is not an https URL \(hint: .*https.*\)$/],
      [[`${server.base}/files/web9.img.xz`, '--sha256', sha], /^error: cannot download https:.*web9\.img\.xz: HTTP 404 Not Found \(hint: check the URL.*\)$/],
      [[`${server.base}/short/web1.img.xz`, '--sha256', sha], /^error: download of https:.*web1\.img\.xz (was cut off|ended after \d+ of \d+ bytes|failed: .*) \(hint: try again\)$/],
      [[`${server.base}/chunked/web1.img.xz`, '--sha256', sha], /^error: https:.*web1\.img\.xz has SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64} \(hint: .*\)$/],
      [[`${server.base}/files/page.img.xz`, '--sha256', sha], /^error: page\.img\.xz is not a disk image, \.xz, \.zst or \.zip file \(hint: give a Raspberry Pi OS .*\)$/],
    ];
    for (const [args, message] of cases) {
      const run = await flashUrl(args);
      expect(run.exitCode, args.join(' ')).toBe(1);
      const errors = run.stderr.split('\n').filter((l) => l.startsWith('error'));
      expect(errors, args.join(' ')).toHaveLength(1);
      expect(errors[0], args.join(' ')).toMatch(message);
      expect(run.stderr, args.join(' ')).not.toMatch(/\n\s+at /); // no stack trace
      expect(await exists(run.card), args.join(' ')).toBe(false);
      expect(run.cacheLeft, args.join(' ')).toEqual([]);
    }
  });

  it('leaves nothing in the cache when interrupted mid-download (Ctrl-C); what a SIGKILL leaves, the next run sweeps', async () => {
    const sha = await sha256Of(`${image}.xz`);
    const cache = join(dir, 'cache-killed');
    for (const signal of ['SIGINT', 'SIGKILL'] as const) {
      const card = join(dir, `card-${signal}.img`);
      const child = execa('node', [join(repo, 'bin/pibake.js'), 'flash', `${server.base}/stall/web1.img.xz`, '--sha256', sha, '--device', card],
        { reject: false, env: { ...server.childEnv, PIBAKE_CACHE_DIR: cache } });
      await downloadUnderWay(cache);
      child.kill(signal);
      expect((await child).signal).toBe(signal);
      expect(await exists(card)).toBe(false);
      if (signal === 'SIGINT') expect(await readdir(cache)).toEqual([]);
    }
    // The killed process's folder is still there (.partial, with its pid), until the next run.
    expect((await readdir(cache)).filter((n) => n.endsWith('.partial'))).toHaveLength(1);
    const next = await runPibake(['flash', `${server.base}/files/web9.img.xz`, '--sha256', sha, '--device', join(dir, 'card-next.img')],
      { ...server.childEnv, PIBAKE_CACHE_DIR: cache });
    expect(next.exitCode).toBe(1);
    expect(await readdir(cache)).toEqual([]);
  });
});


describe.skipIf(process.getuid?.() !== 0)('pibake flash URL on a full cache (root: tmpfs in a private mount namespace)', () => {
  it('names the cache folder and the room the download needs, in one line, and leaves nothing', async () => {
    const sha = await sha256Of(`${image}.xz`);
    const mount = join(dir, 'small-cache');
    await mkdir(mount);
    const card = join(dir, 'card-full.img');
    const script = [
      'mount -t tmpfs -o size=2m pibake-test "$PIBAKE_CACHE_DIR"',
      'node "$@"; echo "exit=$?" >&2',
      'find "$PIBAKE_CACHE_DIR" -mindepth 1 -printf "left %P\\n" >&2',
    ].join('\n');
    const run = await execa('unshare', ['--mount', '--propagation', 'private', 'bash', '-c', script, 'sh',
      join(repo, 'bin/pibake.js'), 'flash', `${server.base}/files/web1.img.xz`, '--sha256', sha, '--device', card],
    { reject: false, env: { ...server.childEnv, PIBAKE_CACHE_DIR: mount } });
    const lines = run.stderr.split('\n');
    expect(lines.filter((l) => l.startsWith('error'))).toEqual([
      expect.stringMatching(new RegExp(`^error: the cache folder ${mount} is full \\(.* free\\): downloading web1\\.img\\.xz needs [0-9.]+ MiB \\(hint: .*PIBAKE_CACHE_DIR`)),
    ]);
    expect(lines).toContain('exit=1');
    expect(lines.filter((l) => l.startsWith('left'))).toEqual([]);
    expect(await exists(card)).toBe(false);
  });
});

const repo = new URL('../../', import.meta.url).pathname;

/** Waits until a download into `cache` has written data (its private folder holds a non-empty file). */
async function downloadUnderWay(cache: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    for (const folder of await readdir(cache).catch(() => [] as string[])) {
      for (const name of await readdir(join(cache, folder)).catch(() => [] as string[])) {
        if (((await stat(join(cache, folder, name)).catch(() => undefined))?.size ?? 0) > 0) return;
      }
    }
    if (Date.now() > deadline) throw new Error('the download never started');
    await new Promise((r) => setTimeout(r, 50));
  }
}
