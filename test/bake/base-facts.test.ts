/**
 * The base's facts, read once per base and then taken from their record in the cache: a rebuild
 * reads them with no debugfs at all, and a damaged, foreign or stale record is read again, never
 * used. debugfs runs are counted by a wrapper first on PATH that logs each call and runs the real one.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, utimes, writeFile, copyFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { factsPathFor, readBaseFacts, zoneInBase } from '../../builder/bake/base-facts.ts';
import { sha256File } from '../../builder/bytes/checksums.ts';
import { openRaspiosImage } from '../../builder/image/raspios.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';

let work: string;
let cacheDir: string;
let log: string;
const bases = {
  trixie: { path: '', sha256: '' },
  bookworm: { path: '', sha256: '' },
};

async function debugfsRuns(): Promise<number> {
  const text = await readFile(log, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).length;
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pibake-base-facts-'));
  cacheDir = path.join(work, 'cache');
  for (const generation of ['trixie', 'bookworm'] as const) {
    const file = path.join(work, `${generation}.img`);
    await synthesizeRaspiosImage({ path: file, generation, sizeMiB: 160, bootMiB: 64 });
    bases[generation] = { path: file, sha256: await sha256File(file) };
  }
  // A zone and a service account, as a real base has them and the synthesized one lacks.
  const image = await openRaspiosImage(bases.trixie.path);
  const file = (p: string, text: string) => ({ kind: 'file' as const, path: p, data: Buffer.from(text), mode: 0o644, uid: 0, gid: 0 });
  await image.root.apply([
    file('/usr/share/zoneinfo/Europe/London', 'TZif2 (stand-in)\n'),
    file('/etc/passwd', 'root:x:0:0:root:/root:/bin/bash\nsvc-metrics:x:120:120::/nonexistent:/usr/sbin/nologin\n'),
  ]);
  bases.trixie.sha256 = await sha256File(bases.trixie.path);

  const bin = path.join(work, 'bin');
  await mkdir(bin);
  log = path.join(work, 'debugfs.log');
  await writeFile(path.join(bin, 'debugfs'), `#!/bin/sh\necho "$*" >> '${log}'\nexec /usr/sbin/debugfs "$@"\n`);
  await chmod(path.join(bin, 'debugfs'), 0o755);
  process.env.PATH = `${bin}:${process.env.PATH ?? ''}`;
});
afterAll(() => rm(work, { recursive: true, force: true }));
beforeEach(async () => {
  await rm(log, { force: true });
});

const read = (generation: 'trixie' | 'bookworm', zones = ['Europe/London']) =>
  readBaseFacts(bases[generation], { label: `${generation}.img`, cacheDir, zones });

describe('base facts', () => {
  it('reads a base once, then from its record without running debugfs', async () => {
    await rm(factsPathFor(cacheDir, bases.trixie.sha256), { force: true });
    const first = await read('trixie');
    expect(await debugfsRuns()).toBeGreaterThan(0);
    expect(first.generation).toBe('trixie');
    expect(first.installedPackages).toContain('openssh-server');
    expect(first.installedPackages).not.toContain('dphys-swapfile');
    expect(first.accounts).toEqual([{ name: 'root', uid: 0 }, { name: 'svc-metrics', uid: 120 }]);
    expect(zoneInBase(first, 'Europe/London')).toBe(true);

    await rm(log, { force: true });
    expect(await read('trixie')).toEqual(first);
    expect(await debugfsRuns()).toBe(0);
  });

  it('looks up a zone it was not asked about before, and records it', async () => {
    await read('trixie');
    await rm(log, { force: true });
    const facts = await read('trixie', ['Europe/London', 'US/Pacific']);
    expect(await debugfsRuns()).toBeGreaterThan(0);
    expect(zoneInBase(facts, 'US/Pacific')).toBe(false);
    await rm(log, { force: true });
    expect(zoneInBase(await read('trixie', ['US/Pacific']), 'US/Pacific')).toBe(false);
    expect(await debugfsRuns()).toBe(0);
  });

  it('reads the base again when the record is damaged, and rewrites it', async () => {
    await rm(factsPathFor(cacheDir, bases.trixie.sha256), { force: true });
    const good = await read('trixie');
    const file = factsPathFor(cacheDir, bases.trixie.sha256);
    const text = await readFile(file, 'utf8');
    const damaged = [
      text.replace('openssh-server', 'openssh-servex'), // well-formed JSON, wrong content: the digest tells
      text.slice(0, text.length / 2), // cut short
      '',
      '{"format":1}',
    ];
    for (const bad of damaged) {
      await writeFile(file, bad);
      await rm(log, { force: true });
      expect(await read('trixie')).toEqual(good);
      expect(await debugfsRuns()).toBeGreaterThan(0);
      expect(await readFile(file, 'utf8')).toBe(text);
    }
  });

  it('never takes one base\'s record for another base, another pibake\'s, or a changed image file', async () => {
    const record = factsPathFor(cacheDir, bases.trixie.sha256);
    await rm(record, { force: true });
    const trixie = await read('trixie');
    const bookwormRecord = factsPathFor(cacheDir, bases.bookworm.sha256);
    // trixie's record under bookworm's name: it names another SHA-256.
    await copyFile(record, bookwormRecord);
    const bookworm = await read('bookworm');
    expect(bookworm.generation).toBe('bookworm');
    expect(bookworm.accounts).toEqual([{ name: 'root', uid: 0 }]);

    // Written by another pibake version (body and digest intact).
    const parsed = JSON.parse(await readFile(record, 'utf8')) as { pibake: string };
    await writeFile(record, JSON.stringify({ ...parsed, pibake: '0.0.0-other' }));
    await rm(log, { force: true });
    expect(await read('trixie')).toEqual(trixie);
    expect(await debugfsRuns()).toBeGreaterThan(0);

    // The cached image file touched since its facts were read.
    const { mtime } = await stat(bases.trixie.path);
    await utimes(bases.trixie.path, new Date(), new Date(mtime.getTime() + 5000));
    await rm(log, { force: true });
    expect(await read('trixie')).toEqual(trixie);
    expect(await debugfsRuns()).toBeGreaterThan(0);
    await rm(log, { force: true });
    await read('trixie');
    expect(await debugfsRuns()).toBe(0);
  });

  it('keeps a record whose digest matches its body', async () => {
    const facts = await read('trixie');
    const record = JSON.parse(await readFile(factsPathFor(cacheDir, bases.trixie.sha256), 'utf8')) as { digest: string; facts: unknown };
    expect(record.facts).toEqual(facts);
    expect(record.digest).toBe(createHash('sha256').update(JSON.stringify(record.facts)).digest('hex'));
  });
});
