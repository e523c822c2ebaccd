/**
 * Which disks this machine has, from `lsblk --json` (Linux only). Partitions and their holders
 * (LVM, dm-crypt, RAID) appear as children, so "is anything on this disk mounted" and "does this
 * disk hold /" are questions about a tree. Old util-linux prints MOUNTPOINT (one string) and
 * strings for numbers and booleans; both shapes are read.
 */
import { stat } from 'node:fs/promises';
import { PibakeError } from '../common/errors.ts';
import { runTool } from '../common/exec.ts';

export interface BlockDevice {
  name: string;
  path: string;
  /** "major:minor" */
  majMin?: string;
  size: number;
  model?: string;
  serial?: string;
  transport?: string;
  removable: boolean;
  hotplug: boolean;
  readOnly: boolean;
  /** disk, part, loop, rom, lvm, crypt, ... */
  type: string;
  /** Where this device itself is mounted ("[SWAP]" for active swap). */
  mountpoints: string[];
  children: BlockDevice[];
}

export const LSBLK_COLUMNS = 'NAME,PATH,MAJ:MIN,SIZE,MODEL,SERIAL,TRAN,RM,HOTPLUG,RO,TYPE,MOUNTPOINTS,PKNAME';
const OLD_LSBLK_COLUMNS = LSBLK_COLUMNS.replace('MOUNTPOINTS', 'MOUNTPOINT');

export async function listBlockDevices(): Promise<BlockDevice[]> {
  if (process.platform === 'darwin') {
    throw new PibakeError('flashing cards on macOS is not supported yet', {
      hint: 'flash from Linux, or write output/<cluster>/<node>.img with another tool',
    });
  }
  if (process.platform !== 'linux') {
    throw new PibakeError(`flashing cards on ${process.platform} is not supported`, { hint: 'flash from Linux' });
  }
  let result = await runTool('lsblk', ['--json', '--bytes', '-o', LSBLK_COLUMNS], { reject: false });
  // util-linux before 2.37 knows only MOUNTPOINT.
  if (result.exitCode !== 0 && /MOUNTPOINTS/.test(String(result.stderr))) {
    result = await runTool('lsblk', ['--json', '--bytes', '-o', OLD_LSBLK_COLUMNS]);
  } else if (result.exitCode !== 0) {
    await runTool('lsblk', ['--json', '--bytes', '-o', LSBLK_COLUMNS]); // throws the real error
  }
  return parseLsblk(result.stdout);
}

export function parseLsblk(json: string): BlockDevice[] {
  const parsed = JSON.parse(json) as { blockdevices?: unknown[] };
  return (parsed.blockdevices ?? []).map((d) => toDevice(d as Record<string, unknown>));
}

function toDevice(raw: Record<string, unknown>): BlockDevice {
  const text = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined);
  const flag = (v: unknown): boolean => v === true || v === 1 || v === '1';
  const mountpoints = Array.isArray(raw.mountpoints)
    ? raw.mountpoints.filter((m): m is string => typeof m === 'string' && m !== '')
    : typeof raw.mountpoint === 'string' && raw.mountpoint !== ''
      ? [raw.mountpoint]
      : [];
  const name = String(raw.name ?? '');
  return {
    name,
    path: text(raw.path) ?? `/dev/${name}`,
    majMin: text(raw['maj:min']),
    size: Number(raw.size ?? 0),
    model: text(raw.model),
    serial: text(raw.serial),
    transport: text(raw.tran),
    removable: flag(raw.rm),
    hotplug: flag(raw.hotplug),
    readOnly: flag(raw.ro),
    type: String(raw.type ?? ''),
    mountpoints,
    children: Array.isArray(raw.children) ? raw.children.map((c) => toDevice(c as Record<string, unknown>)) : [],
  };
}

/** The device and everything below it (partitions, holders). */
export function descendants(device: BlockDevice): BlockDevice[] {
  return [device, ...device.children.flatMap(descendants)];
}

/** Every (device, mountpoint) in the tree, deepest first so they can be unmounted in that order. */
export function mountsOf(device: BlockDevice): { device: string; mountpoint: string }[] {
  const below = device.children.flatMap(mountsOf);
  return [...below, ...device.mountpoints.map((mountpoint) => ({ device: device.path, mountpoint }))];
}

export function isRemovable(device: BlockDevice): boolean {
  return device.removable || device.hotplug || device.transport === 'usb' || device.transport === 'mmc';
}

/** "major:minor" of the device holding `/`, to recognise the system disk even under odd mount setups. */
export async function rootMajMin(): Promise<string | undefined> {
  try {
    const { dev } = await stat('/', { bigint: true });
    // Linux dev_t encoding, as glibc's gnu_dev_major / gnu_dev_minor decode it.
    const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
    const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
    return `${major}:${minor}`;
  } catch {
    return undefined;
  }
}

/** True when `/` lives on this device or anything below it. */
export function holdsRoot(device: BlockDevice, rootDev: string | undefined): boolean {
  return descendants(device).some((d) => d.mountpoints.includes('/') || (rootDev !== undefined && d.majMin === rootDev));
}

/** Finds the device whose path is `path` anywhere in the tree, with the whole disk it belongs to. */
export function findDevice(devices: BlockDevice[], path: string): { device: BlockDevice; disk: BlockDevice } | undefined {
  for (const disk of devices) {
    const hit = descendants(disk).find((d) => d.path === path);
    if (hit) return { device: hit, disk };
  }
  return undefined;
}
