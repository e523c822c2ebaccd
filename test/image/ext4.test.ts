import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PibakeError } from '../../builder/common/errors.ts';
import { Ext4Fs, parseDpkgStatus } from '../../builder/image/ext4.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import {
  debugfs, debugfsCat, debugfsStat, dumpe2fsHeader, e2fsck, expectCleanImage, partitionOffsets, scratchDir,
} from '../helpers/image.ts';

const EPOCH = 1700000000;

describe('Ext4Fs (debugfs) on a synthesized image', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let image: string;
  let root: Ext4Fs;
  let off: number;
  const savedEpoch = process.env.SOURCE_DATE_EPOCH;

  beforeAll(async () => {
    ({ dir, cleanup } = await scratchDir());
    image = join(dir, 'ext4.img');
    await synthesizeRaspiosImage({ path: image, generation: 'trixie', sizeMiB: 200, bootMiB: 64, diskId: '12345678' });
    off = (await partitionOffsets(image)).root;
    root = new Ext4Fs(image, off);
    process.env.SOURCE_DATE_EPOCH = String(EPOCH);
  });
  afterAll(async () => cleanup());
  afterEach(() => {
    process.env.SOURCE_DATE_EPOCH = String(EPOCH);
  });
  afterAll(() => {
    if (savedEpoch === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = savedEpoch;
  });

  it('applies files, directories and symlinks with modes, 32-bit owners and timestamps; e2fsck is clean', async () => {
    const big = randomBytes(2_000_000);
    const longTarget = `/usr/lib/systemd/system/${'a-rather-long-unit-name-'.repeat(4)}.service`;
    await root.apply([
      { kind: 'dir', path: '/var/lib/postgresql', mode: 0o750, uid: 100000, gid: 70000 },
      { kind: 'file', path: '/var/lib/postgresql/.pgpass', data: Buffer.from('*:*:*:rep:secret\n'), mode: 0o600, uid: 100000, gid: 70000 },
      { kind: 'file', path: '/opt/pibake/new/parents/data.bin', data: big, mode: 0o644, uid: 0, gid: 0 },
      { kind: 'file', path: '/usr/local/bin/pibake agent', data: Buffer.from('#!/bin/sh\necho hi\n'), mode: 0o4755, uid: 0, gid: 0 },
      { kind: 'file', path: '/usr/lib/systemd/system/pibake.service', data: Buffer.from('[Unit]\n'), mode: 0o644, uid: 0, gid: 0 },
      { kind: 'symlink', path: '/etc/systemd/system/multi-user.target.wants/pibake.service', target: '/usr/lib/systemd/system/pibake.service', mode: 0o777, uid: 0, gid: 0 },
      { kind: 'symlink', path: '/etc/long-link', target: longTarget, mode: 0o777, uid: 0, gid: 0 },
    ]);
    const dirStat = await debugfsStat(image, off, '/var/lib/postgresql');
    expect(dirStat).toMatchObject({ type: 'directory', mode: '0750', user: 100000, group: 70000, mtime: EPOCH });
    expect(await debugfsStat(image, off, '/var/lib/postgresql/.pgpass')).toMatchObject({ type: 'regular', mode: '0600', user: 100000, group: 70000, mtime: EPOCH, size: 17 });
    expect((await debugfsCat(image, off, '/var/lib/postgresql/.pgpass')).toString()).toBe('*:*:*:rep:secret\n');
    expect((await debugfsCat(image, off, '/opt/pibake/new/parents/data.bin')).equals(big)).toBe(true);
    for (const parent of ['/opt/pibake', '/opt/pibake/new', '/opt/pibake/new/parents']) {
      expect(await debugfsStat(image, off, parent)).toMatchObject({ type: 'directory', mode: '0755', user: 0, group: 0 });
    }
    expect(await debugfsStat(image, off, '/usr/local/bin/pibake agent')).toMatchObject({ type: 'regular', mode: '04755' });
    expect(await debugfsStat(image, off, '/etc/systemd/system/multi-user.target.wants/pibake.service'))
      .toMatchObject({ type: 'symlink', fastLink: '/usr/lib/systemd/system/pibake.service', mtime: EPOCH });
    // A target too long for the inode lives in a block; our stat still reports it.
    expect((await root.stat('/etc/long-link'))?.target).toBe(longTarget);
    expect(await root.stat('/var/lib/postgresql/.pgpass')).toEqual({ kind: 'file', mode: 0o600, uid: 100000, gid: 70000, mtime: EPOCH, size: 17 });
    await expectCleanImage(image);
  });

  it('the kernel agrees (extra oracle: read-only loop mount, skipped where mounting is not allowed)', async (ctx) => {
    const { execa } = await import('execa');
    const { lstat, readFile, readlink, mkdir } = await import('node:fs/promises');
    const mnt = join(dir, 'mnt');
    await mkdir(mnt, { recursive: true });
    const mounted = await execa('mount', ['-o', `ro,loop,noload,offset=${off}`, '-t', 'ext4', image, mnt], { reject: false });
    if (mounted.exitCode !== 0) ctx.skip();
    try {
      const pgpass = await lstat(join(mnt, 'var/lib/postgresql/.pgpass'));
      expect([pgpass.uid, pgpass.gid, pgpass.mode & 0o7777, pgpass.mtimeMs / 1000]).toEqual([100000, 70000, 0o600, EPOCH]);
      expect(await readFile(join(mnt, 'var/lib/postgresql/.pgpass'), 'utf8')).toBe('*:*:*:rep:secret\n');
      expect(await readlink(join(mnt, 'etc/systemd/system/multi-user.target.wants/pibake.service'))).toBe('/usr/lib/systemd/system/pibake.service');
      expect((await lstat(join(mnt, 'usr/local/bin/pibake agent'))).mode & 0o7777).toBe(0o4755);
    } finally {
      await execa('umount', [mnt]);
    }
  });

  it('writes through a symlinked directory (/lib -> usr/lib, merged /usr)', async () => {
    await root.apply([{ kind: 'file', path: '/lib/systemd/system/via-lib.service', data: Buffer.from('via lib\n'), mode: 0o644, uid: 0, gid: 0 }]);
    expect((await debugfsCat(image, off, '/usr/lib/systemd/system/via-lib.service')).toString()).toBe('via lib\n');
    expect(await debugfsStat(image, off, '/lib')).toMatchObject({ type: 'symlink', fastLink: 'usr/lib' });
    await expectCleanImage(image);
  });

  it('replaces existing files and symlinks, and updates an existing directory in place', async () => {
    await root.apply([
      { kind: 'file', path: '/etc/hostname', data: Buffer.from('lb\n'), mode: 0o644, uid: 0, gid: 0 },
      { kind: 'file', path: '/etc/systemd/system/multi-user.target.wants/pibake.service', data: Buffer.from('now a file\n'), mode: 0o600, uid: 0, gid: 0 },
      { kind: 'symlink', path: '/etc/hostname-link', target: 'hostname', mode: 0o777, uid: 0, gid: 0 },
      { kind: 'symlink', path: '/etc/hostname-link', target: 'hosts', mode: 0o777, uid: 0, gid: 0 },
      { kind: 'dir', path: '/var/lib/postgresql', mode: 0o700, uid: 200000, gid: 200000 },
      { kind: 'symlink', path: '/etc/dir-link', target: '/var/lib', mode: 0o777, uid: 0, gid: 0 },
    ]);
    // Now a symlink to a directory exists before the batch: it is replaced, not followed.
    await root.apply([{ kind: 'symlink', path: '/etc/dir-link', target: '/var/log', mode: 0o777, uid: 0, gid: 0 }]);
    expect((await debugfsStat(image, off, '/etc/dir-link'))?.fastLink).toBe('/var/log');
    expect((await debugfsCat(image, off, '/etc/hostname')).toString()).toBe('lb\n');
    expect(await debugfsStat(image, off, '/etc/systemd/system/multi-user.target.wants/pibake.service')).toMatchObject({ type: 'regular', mode: '0600' });
    expect((await debugfsStat(image, off, '/etc/hostname-link'))?.fastLink).toBe('hosts');
    expect(await debugfsStat(image, off, '/var/lib/postgresql')).toMatchObject({ mode: '0700', user: 200000, group: 200000 });
    expect((await debugfsCat(image, off, '/var/lib/postgresql/.pgpass')).toString()).toBe('*:*:*:rep:secret\n');
    await expectCleanImage(image);
  });

  it('deletes files, symlinks and whole directory trees; missing paths are ignored', async () => {
    await root.apply([
      { kind: 'delete', path: '/etc/hostname-link' },
      { kind: 'delete', path: '/opt/pibake' },
      { kind: 'delete', path: '/no/such/path' },
      { kind: 'file', path: '/opt/pibake/reborn', data: Buffer.from('again\n'), mode: 0o644, uid: 0, gid: 0 },
    ]);
    expect(await debugfsStat(image, off, '/etc/hostname-link')).toBeUndefined();
    expect(await debugfsStat(image, off, '/opt/pibake/new')).toBeUndefined();
    expect((await debugfsCat(image, off, '/opt/pibake/reborn')).toString()).toBe('again\n');
    expect(await debugfs(image, off, 'ls -p /opt/pibake')).not.toContain('new');
    await expectCleanImage(image);
  });

  it('stamps what it writes with the current time when SOURCE_DATE_EPOCH is unset', async () => {
    delete process.env.SOURCE_DATE_EPOCH;
    const before = Math.floor(Date.now() / 1000);
    await root.apply([{ kind: 'file', path: '/etc/now', data: Buffer.from('x'), mode: 0o644, uid: 0, gid: 0 }]);
    const mtime = (await debugfsStat(image, off, '/etc/now'))?.mtime ?? 0;
    expect(mtime).toBeGreaterThanOrEqual(before);
    expect(mtime).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
  });

  it('reads files through symlinks (/etc/os-release -> ../usr/lib/os-release) and reports absent paths', async () => {
    expect((await root.readFile('/etc/os-release')).toString()).toContain('VERSION_CODENAME=trixie');
    expect(await root.exists('/etc/os-release')).toBe(true);
    expect(await root.exists('/etc/nope')).toBe(false);
    expect(await root.stat('/etc/nope')).toBeUndefined();
    await expect(root.readFile('/etc/nope')).rejects.toBeInstanceOf(PibakeError);
    await expect(root.readFile('/etc')).rejects.toThrow(/not a regular file/);
  });

  it('refuses impossible changes with a PibakeError and leaves the filesystem untouched', async () => {
    const before = await sha256(image);
    await expect(root.apply([{ kind: 'file', path: '/etc/hostname/child', data: Buffer.from(''), mode: 0o644, uid: 0, gid: 0 }]))
      .rejects.toThrow(/\/etc\/hostname exists and is not a directory/);
    await expect(root.apply([{ kind: 'file', path: '/etc', data: Buffer.from(''), mode: 0o644, uid: 0, gid: 0 }]))
      .rejects.toThrow(/cannot replace directory \/etc/);
    await expect(root.apply([{ kind: 'file', path: '/etc/../x', data: Buffer.from(''), mode: 0o644, uid: 0, gid: 0 }]))
      .rejects.toThrow(/invalid root filesystem path/);
    expect(await sha256(image)).toBe(before);
  });

  it('turns debugfs failures (which exit 0) into PibakeErrors: a file larger than the free space', async () => {
    const free = await root.freeBytes();
    const tooBig = Buffer.alloc(free + 8 * 1024 * 1024, 1);
    await expect(root.apply([{ kind: 'file', path: '/too-big', data: tooBig, mode: 0o644, uid: 0, gid: 0 }]))
      .rejects.toThrow(/debugfs failed/);
    await root.apply([{ kind: 'delete', path: '/too-big' }]);
    expect((await e2fsck(image, off)).exitCode).toBe(0);
  });

  it('handles names with double quotes', async () => {
    await root.apply([{ kind: 'file', path: '/etc/say "hi"', data: Buffer.from('q\n'), mode: 0o644, uid: 0, gid: 0 }]);
    expect(await debugfs(image, off, 'ls -p /etc')).toContain('/say "hi"/2/');
    expect((await root.readFile('/etc/say "hi"')).toString()).toBe('q\n');
  });

  it('reads the installed packages from dpkg status', async () => {
    const packages = await root.readDpkgStatus();
    const text = (await debugfsCat(image, off, '/var/lib/dpkg/status')).toString();
    const installed = text.split('\n\n').filter((s) => s.includes('Status: install ok installed')).length;
    expect(packages.size).toBe(installed);
    expect(packages.get('cloud-init')).toMatch(/^25\./);
    expect(packages.has('dphys-swapfile')).toBe(false); // deinstall ok config-files
  });

  it('reports free space as dumpe2fs does', async () => {
    const h = await dumpe2fsHeader(image, off);
    expect(await root.freeBytes()).toBe(Number(h['Free blocks']) * Number(h['Block size']));
  });
});

describe('parseDpkgStatus', () => {
  it('keeps only installed packages, with versions', () => {
    const text = 'Package: a\nStatus: install ok installed\nVersion: 1.0\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\n\nPackage: c\nStatus: hold ok installed\nVersion: 3:4-5\nDescription: x\n y\n';
    expect([...parseDpkgStatus(text)]).toEqual([['a', '1.0'], ['c', '3:4-5']]);
  });
});

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

describe('staging of the bytes debugfs and mcopy write (secrets among them)', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  const savedPath = process.env.PATH;
  const savedTmp = process.env.TMPDIR;

  beforeAll(async () => {
    ({ dir, cleanup } = await scratchDir());
    // Wrappers that record, while the real program runs, the mode of every staged file it reads and
    // of its folder; then hand over to the real program.
    const bin = join(dir, 'bin');
    await mkdir(bin);
    const wrapper = (real: string, pick: string) => `#!/bin/bash
input=$(cat)
for f in $(printf '%s\\n' "$input" "$*" | ${pick}); do [ -e "$f" ] && stat -c '%a %n' "$f" "$(dirname "$f")" >> "$STAGING_LOG"; done
printf '%s\\n' "$input" | exec ${real} "$@"
`;
    await writeFile(join(bin, 'debugfs'), wrapper((await execa('which', ['debugfs'])).stdout, `sed -n 's/^write "\\([^"]*\\)".*/\\1/p'`), { mode: 0o755 });
    await writeFile(join(bin, 'mcopy'), wrapper((await execa('which', ['mcopy'])).stdout, `tr ' ' '\\n' | grep pibake-stage | xargs -r -I{} find {} -type f`), { mode: 0o755 });
    process.env.PATH = `${bin}:${savedPath}`;
    process.env.TMPDIR = join(dir, 'tmp');
    process.env.STAGING_LOG = join(dir, 'staging.log');
    await mkdir(process.env.TMPDIR);
  });
  afterAll(async () => {
    process.env.PATH = savedPath;
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    delete process.env.STAGING_LOG;
    await cleanup();
  });

  it('stages beside the image in a 0700 folder with 0600 files, removes it, and never uses $TMPDIR', async () => {
    const image = join(dir, 'card.img');
    await synthesizeRaspiosImage({ path: image, generation: 'trixie', sizeMiB: 160, bootMiB: 64 });
    await writeFile(process.env.STAGING_LOG as string, '');
    const { root, boot } = await partitionOffsets(image);
    await new Ext4Fs(image, root).apply([
      { kind: 'file', path: '/etc/pibake/postgresql/primary-setup.sql', data: Buffer.from("ALTER ROLE x PASSWORD 'secret';\n"), mode: 0o600, uid: 0, gid: 0 },
    ]);
    const { FatFs } = await import('../../builder/image/fat.ts');
    await new FatFs(image, boot).writeFiles([{ path: 'user-data', data: Buffer.from('#cloud-config\n') }]);
    const seen = (await readFile(process.env.STAGING_LOG as string, 'utf8')).trim().split('\n');
    expect(seen.length).toBe(4); // one staged file and its folder, for debugfs and for mcopy
    for (const line of seen) {
      const [mode, file] = line.split(' ') as [string, string];
      expect(file.startsWith(`${dir}/.pibake-stage.${process.pid}-`)).toBe(true);
      expect(mode).toBe(file.endsWith('.partial') ? '700' : '600');
    }
    expect((await readdir(dir)).filter((n) => n.includes('pibake-stage'))).toEqual([]);
    expect(await readdir(process.env.TMPDIR as string)).toEqual([]);
  });

  it('sweeps staging folders earlier pibake builds left in $TMPDIR (with secrets, 0644), once they are stale', async () => {
    const tmp = process.env.TMPDIR as string;
    for (const name of ['pibake-ext4-Ab12Cd', 'pibake-fat-Xy34Zw', 'pibake-ext4-Fresh1', 'pibake-render-Keep99']) {
      await mkdir(join(tmp, name));
      await writeFile(join(tmp, name, '0'), "ALTER ROLE x PASSWORD 'secret';\n");
    }
    const old = new Date(Date.now() - 60 * 60 * 1000);
    for (const name of ['pibake-ext4-Ab12Cd', 'pibake-fat-Xy34Zw', 'pibake-render-Keep99']) await utimes(join(tmp, name), old, old);
    const { sweepLegacyStaging } = await import('../../builder/image/staging.ts');
    await sweepLegacyStaging();
    // Stale old-style staging goes; a fresh one (a build of the old kind may be running) and other tools' folders stay.
    expect((await readdir(tmp)).sort()).toEqual(['pibake-ext4-Fresh1', 'pibake-render-Keep99']);
  });
});
