/**
 * Builds an image laid out like Raspberry Pi OS (MBR, FAT32 `bootfs`, ext4 `rootfs`) without
 * root, loop devices or mounts: sfdisk and mkfs.vfat --offset on the file, mke2fs -d from a staged
 * tree, then one debugfs run that makes every staged entry root:root with pibake's timestamp.
 * Used by tests, the demo and the benchmark; the contents are what raspios.ts checks in a real
 * image (partition types and order, /etc/os-release) and what inspect.ts reports of it.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { once } from 'node:events';
import { PibakeError } from '../../builder/common/errors.ts';
import { runTool } from '../../builder/common/exec.ts';
import type { Generation } from '../../builder/common/base-image.ts';
import { isMbrDiskId } from '../../builder/image/disk.ts';
import { Ext4Fs, quote, writeTimestamp } from '../../builder/image/ext4.ts';
import { FatFs } from '../../builder/image/fat.ts';

export interface SynthesizeOptions {
  path: string;
  generation: Generation;
  /** Whole image; default 3000 MiB (sparse), like a current Lite image. */
  sizeMiB?: number;
  /** Incompressible random data added to the root filesystem (for the benchmark). */
  fillMiB?: number;
  /** Boot partition size; default 512 MiB like pi-gen. Tests use 64. */
  bootMiB?: number;
  /** MBR disk identifier (8 lowercase hex digits); random when omitted. */
  diskId?: string;
}

const SECTOR = 512;
const FILL_FILE_MiB = 64;

export async function synthesizeRaspiosImage(opts: SynthesizeOptions): Promise<void> {
  const sizeMiB = opts.sizeMiB ?? 3000;
  const bootMiB = opts.bootMiB ?? 512;
  const diskId = opts.diskId ?? randomDiskId();
  if (!isMbrDiskId(diskId)) throw new PibakeError(`invalid disk identifier "${diskId}"`, { hint: 'use 8 lowercase hex digits' });
  const bootStart = opts.generation === 'trixie' ? 16384 : 8192; // sectors; pi-gen moved to 8 MiB in 2025
  const bootSectors = (bootMiB * 1024 * 1024) / SECTOR;
  const rootStart = bootStart + bootSectors;
  const totalSectors = (sizeMiB * 1024 * 1024) / SECTOR;
  const rootSectors = totalSectors - rootStart;
  if (rootSectors * SECTOR < 64 * 1024 * 1024 + (opts.fillMiB ?? 0) * 1024 * 1024 * 1.1) {
    throw new PibakeError(`image of ${sizeMiB} MiB is too small for a ${bootMiB} MiB boot partition and the root filesystem`, {
      hint: 'raise sizeMiB or lower bootMiB/fillMiB',
    });
  }

  await rm(opts.path, { force: true });
  await writeFile(opts.path, '');
  await truncate(opts.path, totalSectors * SECTOR);
  const table = ['label: dos', `label-id: 0x${diskId}`, 'unit: sectors', 'sector-size: 512', '',
    `start=${bootStart}, size=${bootSectors}, type=c`, `start=${rootStart}, type=83`, ''].join('\n');
  await runTool('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', opts.path], { input: table });

  await runTool('mkfs.vfat', ['-F', '32', '-n', 'bootfs', '-s', '1', '-S', '512', '-h', String(bootStart),
    '-i', diskId, '--offset', String(bootStart), opts.path, String((bootSectors * SECTOR) / 1024)]);
  const boot = new FatFs(opts.path, bootStart * SECTOR);
  await boot.writeFiles(bootFiles(opts.generation, diskId));

  const stage = await mkdtemp(join(tmpdir(), 'pibake-synth-'));
  try {
    await stageRoot(stage, opts.generation, diskId);
    if (opts.fillMiB) await stageFill(join(stage, 'var/cache/pibake-fill'), opts.fillMiB);
    await runTool('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-O', '^64bit,^huge_file', '-L', 'rootfs',
      '-d', stage, '-E', `offset=${rootStart * SECTOR},root_owner=0:0,nodiscard`, opts.path, `${(rootSectors * SECTOR) / 1024}k`]);
    // mke2fs -d copies the stager's owners and times; make them what an image build gives.
    const paths = await walk(stage);
    const time = writeTimestamp();
    const lines = ['/', ...paths].flatMap((p) => [`sif ${quote(p)} uid 0`, `sif ${quote(p)} gid 0`,
      ...['mtime', 'atime', 'ctime', 'crtime'].map((f) => `sif ${quote(p)} ${f} @${time}`)]);
    await new Ext4Fs(opts.path, rootStart * SECTOR).runCommands(lines);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

export function randomDiskId(): string {
  for (;;) {
    const id = randomBytes(4).toString('hex');
    if (id !== '00000000') return id;
  }
}

function cmdline(generation: Generation, diskId: string): string {
  const common = `console=serial0,115200 console=tty1 root=PARTUUID=${diskId}-02 rootfstype=ext4 fsck.repair=yes rootwait`;
  return generation === 'trixie'
    ? `${common} quiet splash plymouth.ignore-udev resize\n`
    : `${common} quiet init=/usr/lib/raspberrypi-sys-mods/firstboot splash plymouth.ignore-udev\n`;
}

const CONFIG_TXT = `# For more options and information see
# http://rptl.io/configtxt
# Some settings may impact device functionality. See link above for details

# Uncomment some or all of these to enable the optional hardware interfaces
#dtparam=i2c_arm=on
#dtparam=i2s=on
#dtparam=spi=on

# Enable audio (loads snd_bcm2835)
dtparam=audio=on

# Automatically load overlays for detected cameras
camera_auto_detect=1

# Automatically load overlays for detected DSI displays
display_auto_detect=1

# Automatically load initramfs files, if found
auto_initramfs=1

# Enable DRM VC4 V3D driver
dtoverlay=vc4-kms-v3d
max_framebuffers=2

# Don't have the firmware create an initial video= setting in cmdline.txt.
# Use the kernel's default instead.
disable_fw_kms_setup=1

# Run in 64-bit mode
arm_64bit=1

# Disable compensation for displays with overscan
disable_overscan=1

# Run as fast as firmware / board allows
arm_boost=1

[cm4]
# Enable host mode on the 2711 built-in XHCI USB controller.
otg_mode=1

[cm5]
dtoverlay=dwc2,dr_mode=host

[all]
`;

function bootFiles(generation: Generation, diskId: string): { path: string; data: Buffer }[] {
  const placeholder = (name: string) => Buffer.from(`pibake synthesized placeholder for ${name}; not bootable\n`);
  return [
    { path: 'cmdline.txt', data: Buffer.from(cmdline(generation, diskId)) },
    { path: 'config.txt', data: Buffer.from(CONFIG_TXT) },
    { path: 'kernel8.img', data: placeholder('kernel8.img') },
    { path: 'initramfs8', data: placeholder('initramfs8') },
    { path: 'bcm2712-rpi-5-b.dtb', data: placeholder('bcm2712-rpi-5-b.dtb') },
    { path: 'overlays/README', data: placeholder('overlays') },
    { path: 'issue.txt', data: Buffer.from(`Raspberry Pi reference ${generation === 'trixie' ? '2026-06-01' : '2025-05-13'} (pibake synthesized)\n`) },
  ];
}

interface Package { name: string; version: string; section: string; description: string; status?: string }

const PACKAGES: Record<Generation, Package[]> = {
  bookworm: [
    { name: 'base-files', version: '12.4+deb12u11', section: 'admin', description: 'Debian base system miscellaneous files' },
    { name: 'bash', version: '5.2.15-2+b8', section: 'shells', description: 'GNU Bourne Again SHell' },
    { name: 'coreutils', version: '9.1-1', section: 'utils', description: 'GNU core utilities' },
    { name: 'libc6', version: '2.36-9+rpt2+deb12u12', section: 'libs', description: 'GNU C Library: Shared libraries' },
    { name: 'libcrypt1', version: '1:4.4.33-2', section: 'libs', description: 'libcrypt shared library' },
    { name: 'systemd', version: '252.38-1~deb12u1', section: 'admin', description: 'system and service manager' },
    { name: 'openssh-server', version: '1:9.2p1-2+deb12u6', section: 'net', description: 'secure shell (SSH) server' },
    { name: 'python3', version: '3.11.2-1+b1', section: 'python', description: 'interactive high-level object-oriented language' },
    { name: 'sudo', version: '1.9.13p3-1+deb12u2', section: 'admin', description: 'Provide limited super user privileges' },
    { name: 'network-manager', version: '1.42.4-1+rpt1', section: 'net', description: 'network management framework' },
    { name: 'raspberrypi-sys-mods', version: '20250605~bookworm', section: 'admin', description: 'System tweaks for the Raspberry Pi' },
    { name: 'userconf-pi', version: '0.11', section: 'admin', description: 'Raspberry Pi tool to rename a user' },
    { name: 'dphys-swapfile', version: '20100506-7.1+rpt3', section: 'admin', description: 'Autogenerate and use a swap file', status: 'deinstall ok config-files' },
  ],
  trixie: [
    { name: 'base-files', version: '13.8+rpt1', section: 'admin', description: 'Debian base system miscellaneous files' },
    { name: 'bash', version: '5.2.37-2+b5', section: 'shells', description: 'GNU Bourne Again SHell' },
    { name: 'coreutils', version: '9.7-3', section: 'utils', description: 'GNU core utilities' },
    { name: 'libc6', version: '2.41-12+rpt1', section: 'libs', description: 'GNU C Library: Shared libraries' },
    { name: 'libcrypt1', version: '1:4.4.38-1', section: 'libs', description: 'libcrypt shared library' },
    { name: 'systemd', version: '257.9-1~deb13u1', section: 'admin', description: 'system and service manager' },
    { name: 'openssh-server', version: '1:10.0p1-7', section: 'net', description: 'secure shell (SSH) server' },
    { name: 'python3', version: '3.13.5-1', section: 'python', description: 'interactive high-level object-oriented language' },
    { name: 'sudo', version: '1.9.16p2-3', section: 'admin', description: 'Provide limited super user privileges' },
    { name: 'network-manager', version: '1.52.1-1', section: 'net', description: 'network management framework' },
    { name: 'netplan.io', version: '1.1.2-6', section: 'net', description: 'Declarative network configuration' },
    { name: 'cloud-init', version: '25.2-1+rpt1', section: 'admin', description: 'initialization and customization tool for cloud instances' },
    { name: 'rpi-cloud-init-mods', version: '20251008', section: 'admin', description: 'Raspberry Pi cloud-init configuration' },
    { name: 'raspberrypi-sys-mods', version: '20251020', section: 'admin', description: 'System tweaks for the Raspberry Pi' },
    { name: 'dphys-swapfile', version: '20100506-7.1+rpt3', section: 'admin', description: 'Autogenerate and use a swap file', status: 'deinstall ok config-files' },
  ],
};

function dpkgStatus(generation: Generation): string {
  return PACKAGES[generation].map((p) => [
    `Package: ${p.name}`, `Status: ${p.status ?? 'install ok installed'}`, 'Priority: optional', `Section: ${p.section}`,
    'Installed-Size: 1024', 'Maintainer: Raspberry Pi OS <pibake@invalid>', 'Architecture: arm64', `Version: ${p.version}`,
    `Description: ${p.description}`, ' Synthesized by pibake for tests.', '',
  ].join('\n')).join('\n');
}

function osRelease(generation: Generation): string {
  const [id, full] = generation === 'trixie' ? ['13', '13.1'] : ['12', '12.12'];
  return [`PRETTY_NAME="Debian GNU/Linux ${id} (${generation})"`, 'NAME="Debian GNU/Linux"', `VERSION_ID="${id}"`,
    `VERSION="${id} (${generation})"`, `VERSION_CODENAME=${generation}`, `DEBIAN_VERSION_FULL=${full}`, 'ID=debian',
    'HOME_URL="https://www.debian.org/"', 'SUPPORT_URL="https://www.debian.org/support"',
    'BUG_REPORT_URL="https://bugs.debian.org/"', ''].join('\n');
}

const CLOUD_CFG = `# Raspberry Pi OS: read the NoCloud seed from the boot partition
datasource_list: [ NoCloud, None ]
datasource:
  NoCloud:
    seedfrom: file:///boot/firmware
# keep the image's SSH host keys handling to the OS
ssh_deletekeys: false
ssh_genkeytypes: []
`;

const SSHD_CONFIG = `Include /etc/ssh/sshd_config.d/*.conf
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_* COLORTERM NO_COLOR
Subsystem sftp /usr/lib/openssh/sftp-server
`;

/** The root tree as (path, content or dir or symlink, mode) in a staging directory. */
async function stageRoot(stage: string, generation: Generation, diskId: string): Promise<void> {
  const file = async (path: string, text: string, mode = 0o644) => {
    const local = join(stage, path);
    await mkdir(dirname(local), { recursive: true });
    await writeFile(local, text);
    await chmod(local, mode);
  };
  const dir = async (path: string, mode = 0o755) => {
    await mkdir(join(stage, path), { recursive: true });
    await chmod(join(stage, path), mode);
  };
  const link = async (path: string, target: string) => symlink(target, join(stage, path));

  for (const d of ['boot/firmware', 'dev', 'proc', 'sys', 'run', 'home', 'mnt', 'srv', 'opt', 'media', 'usr/bin',
    'usr/sbin', 'usr/lib/systemd/system', 'etc/systemd/system/multi-user.target.wants', 'etc/ssh/sshd_config.d',
    'var/lib/dpkg', 'var/log', 'var/cache']) await dir(d);
  await dir('root', 0o700);
  await dir('tmp', 0o1777);
  await dir('var/tmp', 0o1777);
  for (const [name, target] of [['bin', 'usr/bin'], ['sbin', 'usr/sbin'], ['lib', 'usr/lib']]) await link(name as string, target as string);

  await file('usr/lib/os-release', osRelease(generation));
  await link('etc/os-release', '../usr/lib/os-release');
  await file('etc/fstab', [
    'proc            /proc           proc    defaults          0       0',
    `PARTUUID=${diskId}-01  /boot/firmware  vfat    defaults          0       2`,
    `PARTUUID=${diskId}-02  /               ext4    defaults,noatime  0       1`, ''].join('\n'));
  await file('etc/hostname', 'raspberrypi\n');
  await file('etc/hosts', '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n\n127.0.1.1\t\traspberrypi\n');
  await file('etc/machine-id', 'uninitialized\n', 0o444);
  await file('etc/passwd', 'root:x:0:0:root:/root:/bin/bash\n');
  await file('etc/group', 'root:x:0:\n');
  await file('etc/shadow', 'root:*:20000:0:99999:7:::\n', 0o640);
  await file('etc/ssh/sshd_config', SSHD_CONFIG);
  await file('var/lib/dpkg/status', dpkgStatus(generation));
  await file('usr/lib/systemd/system/ssh.service', '[Unit]\nDescription=OpenBSD Secure Shell server\n\n[Service]\nExecStart=/usr/sbin/sshd -D\n\n[Install]\nWantedBy=multi-user.target\n');
  if (generation === 'trixie') {
    await file('etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg', CLOUD_CFG);
    await file('etc/cloud/cloud.cfg', '# pibake synthesized: upstream defaults omitted\ndatasource_list: [ None ]\n');
  } else {
    await file('usr/lib/raspberrypi-sys-mods/firstboot', '#!/bin/sh\n# pibake synthesized placeholder for the bookworm first-boot script\nexit 0\n', 0o755);
  }
}

/** Random (incompressible) files streamed from AES-CTR, FILL_FILE_MiB each; memory stays at one chunk. */
async function stageFill(dir: string, mib: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  const chunk = Buffer.alloc(1024 * 1024);
  const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
  for (let n = 0, left = mib; left > 0; n++, left -= FILL_FILE_MiB) {
    const out = createWriteStream(join(dir, `fill-${String(n).padStart(3, '0')}.bin`));
    for (let i = 0; i < Math.min(left, FILL_FILE_MiB); i++) {
      if (!out.write(cipher.update(chunk))) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
  }
}

/** Every path below `root`, as absolute image paths. */
async function walk(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(join(root, rel))).sort()) {
    const path = `${rel}/${name}`;
    out.push(path);
    if ((await lstat(join(root, path))).isDirectory()) out.push(...(await walk(root, path)));
  }
  return out;
}
