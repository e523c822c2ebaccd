import { execa } from 'execa';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthesizeRaspiosImage } from './synthesize.ts';
import { debugfs, debugfsCat, debugfsStat, expectCleanImage, mtype, partitionOffsets, scratchDir, sfdiskJson } from './image.ts';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await scratchDir()));
afterAll(async () => cleanup());

describe.each(['bookworm', 'trixie'] as const)('synthesizeRaspiosImage (%s)', (generation) => {
  let path: string;
  let off: Awaited<ReturnType<typeof partitionOffsets>>;
  const epoch = 1750000000;

  beforeAll(async () => {
    path = join(dir, `${generation}.img`);
    const saved = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = String(epoch);
    try {
      await synthesizeRaspiosImage({ path, generation, sizeMiB: 256, bootMiB: 64, diskId: 'c0ffee42' });
    } finally {
      if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = saved;
    }
    off = await partitionOffsets(path);
  });

  it('has the pi-gen layout: MBR, p1 FAT32 type c at the generation offset, p2 type 83 to the end; both fsck clean', async () => {
    const table = await sfdiskJson(path);
    expect(table.label).toBe('dos');
    expect(table.id).toBe('0xc0ffee42');
    const [p1, p2] = table.partitions;
    expect(p1).toMatchObject({ start: generation === 'trixie' ? 16384 : 8192, size: 131072, type: 'c' });
    expect(p2).toMatchObject({ start: (p1?.start ?? 0) + 131072, type: '83' });
    expect(((p2?.start ?? 0) + (p2?.size ?? 0)) * 512).toBe(256 * 1024 * 1024);
    const fs = await execa('dumpe2fs', ['-h', `${path}?offset=${off.root}`], { stderr: 'ignore' });
    expect(fs.stdout).toMatch(/Block size:\s+4096/);
    expect(fs.stdout).not.toMatch(/features:.*\b64bit\b/);
    expect(fs.stdout).not.toMatch(/features:.*\bhuge_file\b/);
    await expectCleanImage(path);
  });

  it('boots with the generation\'s cmdline.txt', async () => {
    const cmdline = (await mtype(path, off.boot, 'cmdline.txt')).toString();
    expect(cmdline).toMatch(/^console=serial0,115200 console=tty1 root=PARTUUID=c0ffee42-02 rootfstype=ext4 fsck\.repair=yes rootwait/);
    if (generation === 'trixie') expect(cmdline).toMatch(/quiet splash plymouth\.ignore-udev resize\n$/);
    else expect(cmdline).toContain(' init=/usr/lib/raspberrypi-sys-mods/firstboot');
    expect((await mtype(path, off.boot, 'config.txt')).toString()).toContain('arm_64bit=1');
  });

  it('has the root files first boot expects, all root:root with the SOURCE_DATE_EPOCH time', async () => {
    const text = async (p: string) => (await debugfsCat(path, off.root, p)).toString();
    expect(await text('/etc/fstab')).toMatch(/^PARTUUID=c0ffee42-01\s+\/boot\/firmware\s+vfat/m);
    expect(await text('/etc/fstab')).toMatch(/^PARTUUID=c0ffee42-02\s+\/\s+ext4/m);
    expect(await text('/etc/machine-id')).toBe('uninitialized\n');
    expect(await text('/etc/hostname')).toBe('raspberrypi\n');
    expect(await text('/etc/passwd')).toBe('root:x:0:0:root:/root:/bin/bash\n');
    expect(await text('/usr/lib/os-release')).toContain(`VERSION_CODENAME=${generation}`);
    expect(await debugfsStat(path, off.root, '/etc/os-release')).toMatchObject({ type: 'symlink', fastLink: '../usr/lib/os-release' });
    const status = await text('/var/lib/dpkg/status');
    for (const pkg of ['openssh-server', 'python3']) expect(status).toContain(`Package: ${pkg}\n`);
    for (const pkg of ['haproxy', 'postgresql', 'nginx']) expect(status).not.toMatch(new RegExp(`^Package: ${pkg}`, 'm'));
    if (generation === 'trixie') {
      expect(status).toContain('Package: cloud-init\nStatus: install ok installed');
      expect(status).toContain('Package: rpi-cloud-init-mods\n');
      expect(await text('/etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg')).toMatch(/seedfrom: file:\/\/\/boot\/firmware/);
    } else {
      expect(status).not.toContain('Package: cloud-init');
      expect(await debugfsStat(path, off.root, '/usr/lib/raspberrypi-sys-mods/firstboot')).toMatchObject({ type: 'regular', mode: '0755' });
    }
    expect(await debugfsStat(path, off.root, '/tmp')).toMatchObject({ mode: '01777' });
    expect(await debugfsStat(path, off.root, '/root')).toMatchObject({ mode: '0700' });
    // Every entry (walked with debugfs ls -p) is owned by root and stamped with the epoch.
    const pending = ['/'];
    let checked = 0;
    while (pending.length > 0) {
      const d = pending.pop() as string;
      for (const line of (await debugfs(path, off.root, `ls -p "${d}"`)).split('\n')) {
        const m = /^\/(\d+)\/(\d+)\/(\d+)\/(\d+)\/(.*)\/\d*\/$/.exec(line);
        if (!m || m[5] === '.' || m[5] === '..' || m[5] === 'lost+found') continue;
        const child = `${d === '/' ? '' : d}/${m[5]}`;
        expect([child, m[3], m[4]]).toEqual([child, '0', '0']);
        expect((await debugfsStat(path, off.root, child))?.mtime).toBe(epoch);
        checked++;
        if ((Number.parseInt(m[2] as string, 8) & 0o170000) === 0o040000) pending.push(child);
      }
    }
    expect(checked).toBeGreaterThan(40);
  });
});

describe('synthesizeRaspiosImage fill', () => {
  it('adds incompressible data that is really allocated (sparse image grows by at least the fill)', async () => {
    const small = join(dir, 'nofill.img');
    const filled = join(dir, 'fill.img');
    await synthesizeRaspiosImage({ path: small, generation: 'trixie', sizeMiB: 256, bootMiB: 64 });
    await synthesizeRaspiosImage({ path: filled, generation: 'trixie', sizeMiB: 256, bootMiB: 64, fillMiB: 40 });
    const allocated = async (p: string) => (await stat(p)).blocks * 512;
    expect(await allocated(filled) - await allocated(small)).toBeGreaterThanOrEqual(40 * 1024 * 1024);
    const off = await partitionOffsets(filled);
    const listing = await debugfs(filled, off.root, 'ls -p /var/cache/pibake-fill');
    expect(listing).toMatch(/fill-000\.bin\/67108864\/|fill-000\.bin\/41943040\//);
    const sample = await debugfsCat(filled, off.root, '/var/cache/pibake-fill/fill-000.bin');
    const gz = await execa('gzip', ['-c'], { input: sample, encoding: 'buffer' });
    expect(gz.stdout.length).toBeGreaterThan(sample.length * 0.99);
    await expectCleanImage(filled);
  });

  it('refuses sizes that cannot hold the partitions', async () => {
    await expect(synthesizeRaspiosImage({ path: join(dir, 'tiny.img'), generation: 'trixie', sizeMiB: 100, bootMiB: 64 }))
      .rejects.toThrow(/too small/);
  });
});
