import { execa } from 'execa';
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PibakeError } from '../../builder/common/errors.ts';
import { changeDiskId, openRaspiosImage, parseOsRelease, replacePartuuids } from '../../builder/image/raspios.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { debugfsCat, debugfsStat, expectCleanImage, mtype, partitionOffsets, runPibake, scratchDir, sfdiskJson } from '../helpers/image.ts';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await scratchDir()));
afterAll(async () => cleanup());

describe('openRaspiosImage', () => {
  it.each(['bookworm', 'trixie'] as const)('opens a synthesized %s image and finds its generation', async (generation) => {
    const path = join(dir, `${generation}.img`);
    await synthesizeRaspiosImage({ path, generation, sizeMiB: 160, bootMiB: 64, diskId: 'feedf00d' });
    const image = await openRaspiosImage(path);
    expect(image.generation).toBe(generation);
    expect(image.osRelease.VERSION_CODENAME).toBe(generation);
    expect(image.diskId).toBe('feedf00d');
    expect([image.bootPartition.index, image.bootPartition.type, image.rootPartition.index, image.rootPartition.type]).toEqual([1, '0c', 2, '83']);
    expect(image.bootPartition.startBytes / 512).toBe(generation === 'trixie' ? 16384 : 8192);
    expect((await image.boot.readFile('cmdline.txt')).toString()).toContain('root=PARTUUID=feedf00d-02');
  });

  it('takes the cloud-init first-boot contract from a bookworm image that carries Raspberry Pi OS cloud-init config', async () => {
    const path = join(dir, 'bookworm-cloud-init.img');
    await synthesizeRaspiosImage({ path, generation: 'bookworm', sizeMiB: 160, bootMiB: 64 });
    const before = await openRaspiosImage(path);
    expect(before.generation).toBe('bookworm');
    await before.root.apply([{
      kind: 'file', path: '/etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg', mode: 0o644, uid: 0, gid: 0,
      data: Buffer.from('datasource_list: [ NoCloud, None ]\n'),
    }]);
    const after = await openRaspiosImage(path);
    expect(after.osRelease.VERSION_CODENAME).toBe('bookworm');
    expect(after.generation).toBe('trixie');
  });
});

describe('bad images: one-line PibakeError with a hint, from the API and from the CLI', () => {
  const cases: [string, () => Promise<string>, RegExp][] = [
    ['random bytes', async () => file('random.img', randomBytes(1024 * 1024)), /not a disk image: no partition table at sector 0/],
    ['a text file', async () => file('notes.txt', Buffer.from('just some text\n'.repeat(100))), /not a disk image/],
    ['an empty file', async () => file('empty.img', Buffer.alloc(0)), /is empty/],
    ['a directory', async () => { const d = join(dir, 'a-dir'); await mkdir(d, { recursive: true }); return d; }, /is a directory, not a disk image/],
    ['a missing file', async () => join(dir, 'missing.img'), /no such image file/],
    ['no FAT partition', async () => partitioned('nofat.img', 'start=2048, size=20480, type=83\nstart=22528, type=83\n', []), /partition 1 \(type 83\) is not a FAT boot partition/],
    ['no ext4 partition', async () => partitioned('noext4.img', 'start=2048, size=131072, type=c\nstart=133120, type=83\n', ['fat']), /partition 2 \(the last\) has no ext4 filesystem/],
    ['only one partition', async () => partitioned('onepart.img', 'start=2048, type=c\n', ['fat']), /1 partition\(s\)/],
    ['an unknown OS release', async () => unknownRelease(), /unsupported OS release "Debian GNU\/Linux 10 \(buster\)"/],
  ];

  it.each(cases)('%s', async (_name, make, message) => {
    const path = await make();
    const error = await openRaspiosImage(path).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(PibakeError);
    expect((error as PibakeError).message).toMatch(message);
    expect((error as PibakeError).hint).toBeTruthy();
    const cli = await runPibake(['inspect', path]);
    expect(cli.exitCode).not.toBe(0);
    const lines = cli.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: .*\(hint: .+\)$/);
    expect(lines[0]).toMatch(message);
    expect(cli.stderr).not.toMatch(/\n\s+at /);
    expect(cli.stdout).toBe('');
  });

  async function file(name: string, data: Buffer): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, data);
    return path;
  }

  async function partitioned(name: string, table: string, formats: 'fat'[]): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, '');
    await truncate(path, 128 * 1024 * 1024);
    await execa('sfdisk', ['--quiet', path], { input: `label: dos\n\n${table}` });
    if (formats.includes('fat')) await execa('mkfs.vfat', ['-F', '32', '--offset', '2048', path, String(131072 / 2)]);
    return path;
  }

  async function unknownRelease(): Promise<string> {
    const path = join(dir, 'buster.img');
    await synthesizeRaspiosImage({ path, generation: 'bookworm', sizeMiB: 160, bootMiB: 64 });
    const off = (await partitionOffsets(path)).root;
    const { Ext4Fs } = await import('../../builder/image/ext4.ts');
    await new Ext4Fs(path, off).apply([{ kind: 'file', path: '/usr/lib/os-release', mode: 0o644, uid: 0, gid: 0,
      data: Buffer.from('PRETTY_NAME="Debian GNU/Linux 10 (buster)"\nVERSION_CODENAME=buster\nID=debian\n') }]);
    return path;
  }
});

describe('changeDiskId', () => {
  it('rewrites the MBR id, cmdline.txt and /etc/fstab consistently, keeping fstab mode and owner', async () => {
    const path = join(dir, 'change.img');
    await synthesizeRaspiosImage({ path, generation: 'trixie', sizeMiB: 160, bootMiB: 64, diskId: '11223344' });
    const off = await partitionOffsets(path);
    const before = await openRaspiosImage(path);
    // Give fstab an unusual mode and owner so "kept" is observable.
    const fstab = (await before.root.readFile('/etc/fstab')).toString();
    await before.root.apply([{ kind: 'file', path: '/etc/fstab', data: Buffer.from(fstab), mode: 0o640, uid: 0, gid: 4242 }]);

    await changeDiskId(before, 'a1b2c3d4');

    expect((await sfdiskJson(path)).id).toBe('0xa1b2c3d4');
    const cmdline = (await mtype(path, off.boot, 'cmdline.txt')).toString();
    expect(cmdline).toContain('root=PARTUUID=a1b2c3d4-02 ');
    expect(cmdline).not.toContain('11223344');
    expect(cmdline.endsWith(' resize\n')).toBe(true);
    const newFstab = (await debugfsCat(path, off.root, '/etc/fstab')).toString();
    expect(newFstab).toMatch(/^PARTUUID=a1b2c3d4-01\s+\/boot\/firmware\s+vfat/m);
    expect(newFstab).toMatch(/^PARTUUID=a1b2c3d4-02\s+\/\s+ext4/m);
    expect(newFstab).not.toContain('11223344');
    expect(await debugfsStat(path, off.root, '/etc/fstab')).toMatchObject({ mode: '0640', user: 0, group: 4242 });
    await expectCleanImage(path);

    const after = await openRaspiosImage(path);
    expect(after.diskId).toBe('a1b2c3d4');
    expect(before.diskId).toBe('a1b2c3d4');
    expect(after.rootPartition.uuid).toBe('a1b2c3d4-02');
    await expect(changeDiskId(after, 'A1B2C3D4')).rejects.toThrow(/invalid disk identifier/);
  });

  it('replacePartuuids only touches MBR-style PARTUUIDs', () => {
    expect(replacePartuuids('root=PARTUUID=deadbeef-02 x PARTUUID=DEADBEEF-01 UUID=1234-5678', '0000abcd'))
      .toBe('root=PARTUUID=0000abcd-02 x PARTUUID=0000abcd-01 UUID=1234-5678');
  });
});

describe('parseOsRelease', () => {
  it('strips quotes and ignores comments', () => {
    expect(parseOsRelease('# c\nNAME="Debian GNU/Linux"\nVERSION_CODENAME=trixie\nX=\'y z\'\n')).toEqual({
      NAME: 'Debian GNU/Linux', VERSION_CODENAME: 'trixie', X: 'y z',
    });
  });
});
