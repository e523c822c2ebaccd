/**
 * A base image's apt facts, read with debugfs from an image whose files are shaped like Raspberry
 * Pi OS trixie Lite's (arm64 with armhf added, debian.sources and raspi.sources naming .pgp
 * keyrings), and the one-line errors when they are not there.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeArchitecture, readAptFacts } from '../../builder/carry/facts.ts';
import { formatError } from '../../builder/common/errors.ts';
import { openRaspiosImage } from '../../builder/image/raspios.ts';
import { FixtureArchive, fixtureImage, STATUS } from './repo-fixture.ts';

let dir: string;
let archive: FixtureArchive;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pibake-facts-'));
  archive = await FixtureArchive.make(path.join(dir, 'archive'));
}, 60_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const image = async (name: string, options: { status?: string | null } = {}) => {
  const file = await fixtureImage(path.join(dir, name), archive, 'http://deb.debian.org/debian/', 'http://archive.raspberrypi.com/debian/', options);
  return { file, root: (await openRaspiosImage(file)).root };
};

describe('readAptFacts', () => {
  it('reads architectures, package database, sources and the keyrings they name', async () => {
    const { file, root } = await image('lite.img');
    const facts = await readAptFacts(root, file);
    expect(facts.architecture).toBe('arm64');
    expect(facts.foreignArchitectures).toEqual(['armhf']);
    expect(facts.status.toString('utf8')).toBe(STATUS);
    expect([...facts.installed.keys()].sort()).toEqual(['base-files', 'dpkg', 'libc6', 'libfoo']);
    expect(facts.sources.map((s) => `${s.origin} ${s.uris[0]} ${s.suites.join(' ')}`)).toEqual([
      '/etc/apt/sources.list.d/debian.sources:1 http://deb.debian.org/debian/ trixie trixie-updates',
      '/etc/apt/sources.list.d/raspi.sources:1 http://archive.raspberrypi.com/debian/ trixie',
    ]);
    expect([...facts.keyrings.keys()]).toEqual(['/usr/share/keyrings/debian-archive-keyring.pgp', '/usr/share/keyrings/raspberrypi-archive-keyring.pgp']);
    expect(facts.keyrings.get('/usr/share/keyrings/debian-archive-keyring.pgp')).toEqual(await readFile(archive.keyring));
  });

  it('says in one line that the package database is unreadable, and what to do', async () => {
    const { file, root } = await image('nostatus.img', { status: null });
    const lines = formatError(await readAptFacts(root, file).catch((e: unknown) => e));
    expect(lines).toEqual([`error: ${file}: cannot read the base image's package database /var/lib/dpkg/status (does not exist in the root filesystem) (hint: use the Raspberry Pi OS image as released (its package database is part of it), or build with --packages online)`]);
  });

  it('needs an installed dpkg to know the architecture', () => {
    expect(() => nativeArchitecture('Package: bash\nStatus: install ok installed\nArchitecture: arm64\n', 'x')).toThrow(/names no installed dpkg/);
  });
});
