/**
 * Opens a raw Raspberry Pi OS image: checks it is one (partition table, FAT boot partition first,
 * ext4 root partition last), learns its generation from /etc/os-release, and gives the two
 * filesystem adapters. Also changes the disk identifier consistently (MBR, cmdline.txt, fstab).
 */
import { stat } from 'node:fs/promises';
import { PibakeError } from '../common/errors.ts';
import type { Generation } from '../common/base-image.ts';
import { type DiskLayout, type PartitionInfo, isMbrDiskId, readBytes, readDiskLayout, writeMbrDiskId } from './disk.ts';
import { Ext4Fs, parseExt4Superblock } from './ext4.ts';
import { FatFs } from './fat.ts';
import { checkFilesystems } from './fs-check.ts';

export interface RaspiosImage {
  path: string;
  /** How errors name it (see OpenOptions.label). */
  label: string;
  layout: DiskLayout;
  bootPartition: PartitionInfo;
  rootPartition: PartitionInfo;
  boot: FatFs;
  root: Ext4Fs;
  generation: Generation;
  osRelease: Record<string, string>;
  diskId: string;
}

const GENERATIONS: readonly Generation[] = ['bookworm', 'trixie'];
const IMAGE_HINT = 'give a Raspberry Pi OS .img, .img.xz, .img.zst or .zip';
/** MBR types of FAT partitions; GPT "Microsoft basic data" and EFI system partitions. */
const FAT_TYPES = new Set(['01', '04', '06', '0b', '0c', '0e', 'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7',
  'c12a7328-f81f-11d2-ba4b-00a0c93ec93b']);

export interface OpenOptions {
  /** How errors name the image: the user's base or `<node>.img`, never pibake's temp file. Default: the path. */
  label?: string;
  /**
   * Check both filesystems whole (fs-check.ts) before reading anything from them, as intake does,
   * so a damaged one is named as such rather than as a missing file.
   */
  checkFilesystems?: boolean;
}

/** The partition table, the FAT boot partition (first) and the ext4 root partition (last). */
export async function locatePartitions(path: string, label = path): Promise<{ layout: DiskLayout; bootPartition: PartitionInfo; rootPartition: PartitionInfo }> {
  await checkRegularFile(path, label);
  const layout = await readDiskLayout(path).catch((error: unknown) => {
    if (error instanceof PibakeError) throw new PibakeError(`${label}: ${error.message}`, { hint: error.hint, cause: error });
    throw error;
  });
  const [bootPartition] = layout.partitions;
  const rootPartition = layout.partitions[layout.partitions.length - 1];
  if (!bootPartition || !rootPartition || layout.partitions.length < 2) {
    throw new PibakeError(`${label}: not a Raspberry Pi OS image: it has ${layout.partitions.length} partition(s), expected a FAT boot and an ext4 root partition`, { hint: IMAGE_HINT });
  }
  if (!(await isFat(path, bootPartition))) {
    throw new PibakeError(`${label}: not a Raspberry Pi OS image: partition ${bootPartition.index} (type ${bootPartition.type}) is not a FAT boot partition`, { hint: IMAGE_HINT });
  }
  if (!(await isExt4(path, rootPartition))) {
    throw new PibakeError(`${label}: not a Raspberry Pi OS image: partition ${rootPartition.index} (the last) has no ext4 filesystem`, { hint: IMAGE_HINT });
  }
  return { layout, bootPartition, rootPartition };
}

export async function openRaspiosImage(path: string, options: OpenOptions = {}): Promise<RaspiosImage> {
  const label = options.label ?? path;
  const { layout, bootPartition, rootPartition } = await locatePartitions(path, label);
  if (options.checkFilesystems) await checkFilesystems({ path, label, boot: bootPartition, root: rootPartition });
  const boot = new FatFs(path, bootPartition.startBytes, label);
  const root = new Ext4Fs(path, rootPartition.startBytes, label);
  if (!(await root.exists('/etc/os-release'))) {
    throw new PibakeError(`${label}: the root filesystem has no /etc/os-release`, { hint: IMAGE_HINT });
  }
  const osRelease = parseOsRelease((await root.readFile('/etc/os-release')).toString('utf8'));
  const codename = osRelease.VERSION_CODENAME ?? '';
  if (!(GENERATIONS as readonly string[]).includes(codename)) {
    throw new PibakeError(`${label}: unsupported OS release "${osRelease.PRETTY_NAME ?? codename}" (VERSION_CODENAME=${codename || 'missing'})`, {
      hint: `pibake supports Raspberry Pi OS ${GENERATIONS.join(' and ')}; use such an image`,
    });
  }
  return {
    path, label, layout, bootPartition, rootPartition, boot, root, osRelease,
    generation: await firstBootGeneration(root, codename as Generation),
    diskId: layout.diskId,
  };
}

/**
 * The final check of a baked image before it gets its name: pibake checked the base at intake and
 * only writes through debugfs and mtools, so a failure here is a bug in pibake, and says so.
 */
export async function verifyBakedImage(path: string, label: string): Promise<void> {
  const { bootPartition, rootPartition } = await locatePartitions(path, label);
  try {
    await checkFilesystems({ path, label, boot: bootPartition, root: rootPartition });
  } catch (error) {
    if (!(error instanceof PibakeError)) throw error;
    const found = error.problems.map((p) => p.message).join('; ');
    throw new PibakeError(`${found}: the baked image failed its final filesystem check, which is a bug in pibake`, {
      hint: `nothing was published under ${label}; the unfinished image is kept at ${path} for the bug report (the next build removes it), please report this line with it`,
      cause: error,
    });
  }
}

/** Raspberry Pi OS's cloud-init configuration: NoCloud seeds from the boot partition. */
const RPI_CLOUD_INIT_CONFIG = '/etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg';

/**
 * The generation whose first-boot contract the image follows. What counts is what first boot will
 * run, not the release name: an image that carries Raspberry Pi OS's cloud-init NoCloud
 * configuration takes cloud-init seeds (the Trixie way) even when its codename is bookworm — such
 * as the Debian test base the boot tests build.
 */
async function firstBootGeneration(root: Ext4Fs, codename: Generation): Promise<Generation> {
  return (await root.exists(RPI_CLOUD_INIT_CONFIG)) ? 'trixie' : codename;
}

/**
 * Gives the image a new MBR disk identifier and rewrites every `PARTUUID=xxxxxxxx-0N` in
 * cmdline.txt and /etc/fstab to match, keeping fstab's mode and owner.
 */
export async function changeDiskId(image: RaspiosImage, newId: string): Promise<void> {
  if (!isMbrDiskId(newId)) {
    throw new PibakeError(`invalid disk identifier "${newId}"`, { hint: 'use exactly 8 lowercase hex digits, e.g. 1a2b3c4d' });
  }
  if (image.layout.scheme !== 'mbr') {
    throw new PibakeError(`${image.label}: changing the disk identifier needs an MBR image, this one is GPT`);
  }
  const cmdline = (await image.boot.readFile('cmdline.txt')).toString('utf8');
  const fstabInfo = await image.root.stat('/etc/fstab');
  if (fstabInfo?.kind !== 'file') throw new PibakeError(`${image.label}: the root filesystem has no /etc/fstab`);
  const fstab = (await image.root.readFile('/etc/fstab')).toString('utf8');
  await image.boot.writeFiles([{ path: 'cmdline.txt', data: Buffer.from(replacePartuuids(cmdline, newId)) }]);
  await image.root.apply([{
    kind: 'file', path: '/etc/fstab', data: Buffer.from(replacePartuuids(fstab, newId)),
    mode: fstabInfo.mode, uid: fstabInfo.uid, gid: fstabInfo.gid,
  }]);
  await writeMbrDiskId(image.path, newId);
  image.diskId = newId;
  image.layout = await readDiskLayout(image.path);
  image.bootPartition = image.layout.partitions[0] as PartitionInfo;
  image.rootPartition = image.layout.partitions[image.layout.partitions.length - 1] as PartitionInfo;
}

/** Rewrites every MBR-style PARTUUID (`PARTUUID=1a2b3c4d-02`) to the new disk id. */
export function replacePartuuids(text: string, newId: string): string {
  return text.replace(/PARTUUID=[0-9a-fA-F]{8}-(\d{2})\b/g, (_m, part: string) => `PARTUUID=${newId}-${part}`);
}

/** KEY=value lines of os-release, shell-style quotes removed. */
export function parseOsRelease(text: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let value = (m[2] as string).trim();
    if (/^(".*"|'.*')$/.test(value)) value = value.slice(1, -1).replace(/\\(["\\$`])/g, '$1');
    result[m[1] as string] = value;
  }
  return result;
}

async function checkRegularFile(path: string, label: string): Promise<void> {
  const info = await stat(path).catch((error: unknown) => {
    throw new PibakeError(`${label}: no such image file`, { hint: 'check the path', cause: error });
  });
  if (info.isDirectory()) throw new PibakeError(`${label} is a directory, not a disk image`, { hint: IMAGE_HINT });
  if (!info.isFile()) throw new PibakeError(`${label} is not a regular file`, { hint: IMAGE_HINT });
  if (info.size === 0) throw new PibakeError(`${label} is empty`, { hint: IMAGE_HINT });
}

/** A FAT partition type, or a FAT boot sector (0x55AA and a FAT filesystem type string). */
export async function isFat(path: string, p: PartitionInfo): Promise<boolean> {
  const sector = await readBytes(path, p.startBytes, 512);
  if (sector.length < 512) return false;
  const hasFatBootSector = sector.readUInt16LE(510) === 0xaa55 &&
    (sector.toString('latin1', 82, 87) === 'FAT32' || sector.toString('latin1', 54, 57) === 'FAT');
  return hasFatBootSector || (FAT_TYPES.has(p.type) && sector.readUInt16LE(510) === 0xaa55);
}

export async function isExt4(path: string, p: PartitionInfo): Promise<boolean> {
  return parseExt4Superblock(await readBytes(path, p.startBytes + 1024, 1024)) !== undefined;
}
