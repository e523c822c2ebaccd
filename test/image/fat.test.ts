import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PibakeError } from '../../builder/common/errors.ts';
import { FatFs, parseMdir } from '../../builder/image/fat.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { expectCleanImage, fsckFat, mdirBare, mdirText, mtype, partitionOffsets, scratchDir } from '../helpers/image.ts';

describe('FatFs (mtools) on a synthesized image', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let image: string;
  let fat: FatFs;
  let offsets: Awaited<ReturnType<typeof partitionOffsets>>;
  const savedEpoch = process.env.SOURCE_DATE_EPOCH;

  beforeAll(async () => {
    ({ dir, cleanup } = await scratchDir());
    image = join(dir, 'fat.img');
    await synthesizeRaspiosImage({ path: image, generation: 'trixie', sizeMiB: 200, bootMiB: 64, diskId: '0badcafe' });
    offsets = await partitionOffsets(image);
    fat = new FatFs(image, offsets.boot);
  });
  afterAll(async () => cleanup());
  afterEach(() => {
    if (savedEpoch === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = savedEpoch;
  });

  it('writes new, nested and binary files in one batch; mtype reads back the same bytes; fsck.vfat is clean', async () => {
    const binary = randomBytes(300_000);
    await fat.writeFiles([
      { path: 'user-data', data: Buffer.from('#cloud-config\nhostname: lb\n') },
      { path: 'meta-data', data: Buffer.from('instance-id: lb-1\n') },
      { path: 'pibake/deep/nested dir/file with spaces.txt', data: Buffer.from('spaces ok\n') },
      { path: '/overlays/extra.dtbo', data: binary },
      { path: 'ssh', data: Buffer.alloc(0) },
    ]);
    expect((await mtype(image, offsets.boot, 'user-data')).toString()).toBe('#cloud-config\nhostname: lb\n');
    expect((await mtype(image, offsets.boot, 'pibake/deep/nested dir/file with spaces.txt')).toString()).toBe('spaces ok\n');
    expect((await mtype(image, offsets.boot, 'overlays/extra.dtbo')).equals(binary)).toBe(true);
    expect(await mdirBare(image, offsets.boot)).toEqual(expect.arrayContaining(['/ssh', '/overlays/README', '/overlays/extra.dtbo']));
    expect((await fat.readFile('overlays/extra.dtbo')).equals(binary)).toBe(true);
    expect((await fat.readFile('ssh')).length).toBe(0);
    await expectCleanImage(image);
  });

  it('replaces existing files (case-insensitively, as FAT does) and keeps the rest', async () => {
    await fat.writeFiles([{ path: 'cmdline.txt', data: Buffer.from('console=tty1 root=PARTUUID=0badcafe-02\n') }]);
    await fat.writeFiles([{ path: 'CONFIG.TXT', data: Buffer.from('arm_64bit=1\n') }]);
    expect((await mtype(image, offsets.boot, 'cmdline.txt')).toString()).toBe('console=tty1 root=PARTUUID=0badcafe-02\n');
    expect((await mtype(image, offsets.boot, 'config.txt')).toString()).toBe('arm_64bit=1\n');
    const names = (await mdirBare(image, offsets.boot)).filter((n) => n.toLowerCase() === '/config.txt');
    expect(names).toHaveLength(1);
    await expectCleanImage(image);
  });

  it('lists a directory like mdir -b does, with sizes', async () => {
    const listed = await fat.list('/');
    const oracle = (await mdirBare(image, offsets.boot)).filter((p) => p.split('/').filter(Boolean).length === 1 || /^\/[^/]+\/$/.test(p));
    expect(listed.map((e) => `/${e.name}${e.dir ? '/' : ''}`).sort()).toEqual(oracle);
    expect(listed.find((e) => e.name === 'user-data')).toEqual({ name: 'user-data', dir: false, size: Buffer.byteLength('#cloud-config\nhostname: lb\n') });
    expect(listed.find((e) => e.name === 'overlays')).toEqual({ name: 'overlays', dir: true, size: 0 });
  });

  it('stamps files with SOURCE_DATE_EPOCH (UTC) when set', async () => {
    process.env.SOURCE_DATE_EPOCH = '1700000000'; // 2023-11-14 22:13:20 UTC
    await fat.writeFiles([{ path: 'stamped.txt', data: Buffer.from('x') }]);
    const line = (await mdirText(image, offsets.boot)).split('\n').find((l) => /^stamped\s+txt/i.test(l));
    expect(line).toMatch(/2023-11-14\s+22:13/);
  });

  it('ignores the user\'s ~/.mtoolsrc (a broken one makes plain mtools fail)', async () => {
    const { mkdir, writeFile } = await import('node:fs/promises');
    const { execa } = await import('execa');
    const home = join(dir, 'home');
    await mkdir(home, { recursive: true });
    await writeFile(join(home, '.mtoolsrc'), 'drive z: file="/nonexistent" offset=\n');
    const plain = await execa('mdir', ['-i', `${image}@@${offsets.boot}`, '::/'], { env: { HOME: home, MTOOLS_SKIP_CHECK: '1' }, reject: false });
    expect(plain.exitCode).not.toBe(0);
    const savedHome = process.env.HOME;
    process.env.HOME = home;
    try {
      expect((await fat.list('/')).map((e) => e.name)).toContain('cmdline.txt');
    } finally {
      process.env.HOME = savedHome;
    }
  });

  it('rejects a malformed SOURCE_DATE_EPOCH instead of letting mtools guess', async () => {
    process.env.SOURCE_DATE_EPOCH = 'yesterday';
    await expect(fat.writeFiles([{ path: 'x.txt', data: Buffer.from('x') }])).rejects.toThrow(/SOURCE_DATE_EPOCH="yesterday"/);
  });

  it('removes files and whole directories, ignores missing paths, fsck.vfat stays clean', async () => {
    await fat.remove(['user-data', 'pibake', 'no-such-file', 'overlays/extra.dtbo']);
    const names = await mdirBare(image, offsets.boot);
    expect(names).not.toContain('/user-data');
    expect(names.some((n) => n.startsWith('/pibake'))).toBe(false);
    expect(names).toContain('/overlays/README');
    expect(names).not.toContain('/overlays/extra.dtbo');
    expect(await fat.exists('user-data')).toBe(false);
    expect(await fat.exists('meta-data')).toBe(true);
    expect(await fat.exists('overlays')).toBe(true);
    expect(await fat.exists('nope/deeper')).toBe(false);
    await expectCleanImage(image);
  });

  it('reports free space as fsck.vfat counts it (free clusters x cluster size)', async () => {
    const { output } = await fsckFat(image, offsets.boot, offsets.bootSize);
    const m = /(\d+)\/(\d+) clusters/.exec(output);
    expect(m).not.toBeNull();
    const [used, total] = [Number(m?.[1]), Number(m?.[2])];
    expect(await fat.freeBytes()).toBe((total - used) * 512); // synthesized with 1 sector per cluster
  });

  it('fails with PibakeErrors for missing files, directories and bad paths', async () => {
    await expect(fat.readFile('missing.txt')).rejects.toThrow(/does not exist on the boot partition/);
    await expect(fat.readFile('overlays')).rejects.toThrow(/is a directory/);
    await expect(fat.writeFiles([{ path: '../escape', data: Buffer.from('') }])).rejects.toBeInstanceOf(PibakeError);
    await expect(fat.writeFiles([{ path: 'a:b', data: Buffer.from('') }])).rejects.toThrow(/invalid boot partition path/);
  });
});

describe('parseMdir', () => {
  it('reads 8.3 names, long names, sizes, label, serial and free bytes', () => {
    const text = [' Volume in drive : is bootfs     ', ' Volume Serial Number is B6AB-DF6A', 'Directory for ::/', '',
      'cmdline  txt         6 2023-11-14  22:13 ', 'WITHSP~1 TXT   3000000 2023-11-14  22:13  with space.txt',
      'overlays     <DIR>     2023-11-14  22:13 ', 'CONFIG   TXT        12 2023-11-14  22:13 ',
      '        4 files           3 000 018 bytes', '                        129 132 032 bytes free', ''].join('\n');
    expect(parseMdir(text)).toEqual({
      label: 'bootfs', serial: 'B6AB-DF6A', freeBytes: 129132032,
      entries: [
        { name: 'cmdline.txt', dir: false, size: 6 },
        { name: 'with space.txt', dir: false, size: 3000000 },
        { name: 'overlays', dir: true, size: 0 },
        { name: 'CONFIG.TXT', dir: false, size: 12 },
      ],
    });
  });
});
