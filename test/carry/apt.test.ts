/**
 * The apt adapter and the carrying built on it, against the real apt-get and a signed archive
 * served on 127.0.0.1 (repo-fixture.ts), for an image whose facts are shaped like Raspberry Pi
 * OS trixie Lite's (arm64 + armhf, debian.sources and raspi.sources with Signed-By). apt checks
 * the signature and every hash; nothing here is mocked.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AptSandbox } from '../../builder/carry/apt.ts';
import { carryPackages } from '../../builder/carry/carry.ts';
import { readAptFacts, type AptFacts } from '../../builder/carry/facts.ts';
import { DebStore } from '../../builder/carry/store.ts';
import { openRaspiosImage } from '../../builder/image/raspios.ts';
import { freePort } from '../helpers/qemu.ts';
import { FixtureArchive, fixtureImage, otherKey } from './repo-fixture.ts';

let dir: string;
let archive: FixtureArchive;
let facts: AptFacts;
let deadUri: string;
const role = () => 'lb';

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pibake-apt-'));
  archive = await FixtureArchive.make(path.join(dir, 'archive'));
  const uri = await archive.serve();
  // Another host than the archive's (apt queues downloads per host): nothing listens there.
  deadUri = `http://127.0.0.2:${await freePort()}/raspi/`;
  const image = await fixtureImage(path.join(dir, 'base.img'), archive, uri, deadUri);
  facts = await readAptFacts((await openRaspiosImage(image)).root, image);
}, 120_000);
afterAll(async () => {
  await archive?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('carrying packages with apt for an arm64 trixie Lite-shaped image', () => {
  it('fetches exactly what the image lacks, verified, for its architecture; a silent source is reported', async () => {
    const cache = path.join(dir, 'cache');
    const sandbox = await AptSandbox.open(cache, facts, { mirrors: [] });
    const { unreachable } = await sandbox.update();
    // raspi.sources names a source that does not answer: reported, not fatal.
    expect(unreachable.map((u) => u.url)).toEqual([`${deadUri}dists/trixie/InRelease`]);
    const store = await DebStore.open(cache);
    const carried = await carryPackages(sandbox, store, ['pibake-demo'], role, unreachable);
    // libfoo is installed on the image, so only the demo and the library it needs; arm64 builds.
    expect(carried.debs.map((d) => `${d.name} ${d.version} ${d.architecture}`)).toEqual(['pibake-demo 1.0-1 arm64', 'pibake-lib 1:1.2-3 arm64']);
    expect(carried.fetched).toBe(2);
    for (const deb of carried.debs) {
      const served = await readFile(path.join(archive.dir, 'debian', new URL(deb.uri).pathname.replace(/^\/debian\//, '')));
      expect(createHash('sha256').update(served).digest('hex')).toBe(deb.sha256);
      expect(createHash('sha256').update(await readFile(deb.source)).digest('hex')).toBe(deb.sha256);
    }
    // The card's index: the archive's records, pointing into the local repository, epoch-free names.
    expect(carried.index).toMatch(/^Package: pibake-lib\n(.*\n)*Filename: \.\/pibake-lib_1\.2-3_arm64\.deb$/m);
    expect(carried.index).toMatch(/^Filename: \.\/pibake-demo_1\.0-1_arm64\.deb$/m);
    expect(carried.installedBytes).toBeGreaterThan(200_000);
    expect(carried.debBytes).toBe(carried.debs.reduce((s, d) => s + d.size, 0));

    // A second build takes them from the cache, by content.
    const again = await carryPackages(sandbox, store, ['pibake-demo'], role, unreachable);
    expect(again.fetched).toBe(0);
    expect(again.debs.map((d) => d.sha256)).toEqual(carried.debs.map((d) => d.sha256));
  });

  it('lets concurrent builds share the package lists and the cache', async () => {
    const cache = path.join(dir, 'cache-shared');
    const run = async () => {
      const sandbox = await AptSandbox.open(cache, facts, { mirrors: [] });
      try {
        const { unreachable } = await sandbox.update();
        return await carryPackages(sandbox, await DebStore.open(cache), ['pibake-demo'], role, unreachable);
      } finally {
        await sandbox.close();
      }
    };
    const [a, b, c] = await Promise.all([run(), run(), run()]);
    expect(b!.debs.map((d) => d.sha256)).toEqual(a!.debs.map((d) => d.sha256));
    expect(c!.index).toBe(a!.index);
    expect((await readdir(path.join(cache, 'debs'))).sort()).toEqual(a!.debs.map((d) => `${d.sha256}.deb`).sort());
  });

  it('names a package that does not exist for the image\'s architecture, in one line', async () => {
    const sandbox = await AptSandbox.open(path.join(dir, 'cache'), facts, { mirrors: [] });
    const { unreachable } = await sandbox.update();
    const error = await sandbox.plan(['amd64-only'], { requestedBy: role, unreachable }).catch((e: Error) => e);
    expect(String((error as Error).message)).toMatch(/^package "amd64-only" \(role lb\) is not available for arm64 from the image's sources: http:\/\/127\.0\.0\.1:\d+\/debian\/ trixie trixie-updates, http/);
    expect((error as { hint?: string }).hint).toMatch(/did not answer: .*raspi.*--packages online/);
  });

  it('says so when no source answers, with the fix', async () => {
    const nowhere = `http://127.0.0.3:${await freePort()}/mirror/`;
    const sandbox = await AptSandbox.open(path.join(dir, 'cache'), facts, { mirrors: [{ from: archive.port ? `http://127.0.0.1:${archive.port}/debian` : '', to: nowhere }] });
    const error = await sandbox.update().catch((e: Error) => e) as Error & { hint?: string };
    expect(error.message).toMatch(/^no package source of the image answered: http:\/\/127\.0\.0\.3:\d+\/mirror\/dists\/trixie\/InRelease \(/);
    expect(error.hint).toMatch(/packages\.mirrors .*packages\.proxy.* --packages online/);
  });

  it('refuses an archive whose signature does not verify with the image\'s keyring', async () => {
    const forged = await FixtureArchive.make(path.join(dir, 'forged'), { gnupgHome: await otherKey(dir) });
    const uri = await forged.serve();
    try {
      const sandbox = await AptSandbox.open(path.join(dir, 'cache'), facts, { mirrors: [{ from: `http://127.0.0.1:${archive.port}/debian/`, to: uri }] });
      const error = await sandbox.update().catch((e: Error) => e) as Error & { hint?: string };
      expect(error.message).toMatch(/^the package lists of http:\/\/127\.0\.0\.1:\d+\/debian trixie(-updates)? do not verify with the keyring the image names for it: .*NO_PUBKEY/);
      expect(error.hint).toMatch(/same signed archive/);
    } finally {
      await forged.close();
    }
  });

  it('refuses a .deb that does not match the signed index', async () => {
    const cache = path.join(dir, 'cache-tampered');
    const sandbox = await AptSandbox.open(cache, facts, { mirrors: [] });
    const { unreachable } = await sandbox.update();
    archive.tamper = true;
    try {
      const error = await carryPackages(sandbox, await DebStore.open(cache), ['pibake-demo'], role, unreachable).catch((e: Error) => e) as Error;
      expect(error.message).toMatch(/does not match the archive's signed index \(hash mismatch\)|Hash Sum mismatch/);
    } finally {
      archive.tamper = false;
    }
  });
});
