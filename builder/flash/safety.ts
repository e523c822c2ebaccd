/**
 * The rules that keep `pibake flash` from erasing the wrong disk. Pure: it judges facts gathered
 * beforehand and returns every problem of every target at once, so the user fixes them in one go.
 */
import type { Problem } from '../common/errors.ts';
import { type BlockDevice, isRemovable, mountsOf } from './devices.ts';

/** Cards sold as "128 GB" hold about 128e9 bytes; anything above 128 GiB is surely not a Pi card. */
export const LARGE_DISK_BYTES = 128 * 1024 ** 3;

/** `real` is the resolved path (symlinks such as /dev/disk/by-id/... followed), for spotting duplicates. */
export type TargetFacts = (

  | { path: string; kind: 'file'; exists: boolean; size: number; sameAsImage: boolean }
  | { path: string; kind: 'block'; device?: BlockDevice; disk?: BlockDevice; holdsRoot: boolean }
  | { path: string; kind: 'other'; what: string }
) & { real?: string };

export interface SafetyOptions {
  unmount: boolean;
  allowNonRemovable: boolean;
  allowLarge: boolean;
}

export interface SafetyVerdict {
  problems: Problem[];
  /** Mount points to unmount first (only with --unmount), deepest first. */
  unmount: { device: string; mountpoint: string }[];
}

export function checkTargets(targets: readonly TargetFacts[], imageSize: number, options: SafetyOptions): SafetyVerdict {
  const problems: Problem[] = [];
  const unmount: SafetyVerdict['unmount'] = [];
  const seen = new Set<string>();
  const add = (path: string, message: string, hint: string) => problems.push({ message: `${path}: ${message}`, hint });

  for (const t of targets) {
    const key = t.real ?? t.path;
    if (seen.has(key)) add(t.path, 'is named twice', 'name each card once');
    seen.add(key);
    if (t.kind === 'other') {
      add(t.path, `is ${t.what}, not a disk or a regular file`, 'name a whole disk such as /dev/sdX or /dev/mmcblkN (see `pibake devices`)');
      continue;
    }
    if (t.kind === 'file') {
      if (t.sameAsImage) add(t.path, 'is the image itself', 'name a card or a different output file');
      else if (t.exists && t.size < imageSize) {
        add(t.path, `holds ${formatBytes(t.size)}, less than the image's ${formatBytes(imageSize)}`, 'use a larger target, or remove the file so that pibake creates it');
      }
      continue;
    }
    const device = t.device;
    if (!device) {
      add(t.path, 'is a block device that lsblk does not list', 'check the name with `pibake devices`');
      continue;
    }
    if (device !== t.disk || device.type === 'part') {
      add(t.path, `is a partition of ${t.disk?.path ?? 'a disk'}`, `name the whole disk${t.disk ? ` (${t.disk.path})` : ''}`);
      continue;
    }
    if (t.holdsRoot) {
      add(t.path, 'holds the running system (/)', 'this is the computer\'s own disk; name the card (see `pibake devices`)');
      continue;
    }
    if (device.readOnly) add(t.path, 'is read-only', 'slide the card\'s write-protect switch to unlocked and reinsert it');
    if (device.size < imageSize) {
      add(t.path, `holds ${formatBytes(device.size)}, less than the image's ${formatBytes(imageSize)}`, 'use a larger card');
    }
    if (!isRemovable(device) && !options.allowNonRemovable) {
      add(t.path, `is not a removable disk (transport ${device.transport ?? 'unknown'})`, 'pass --allow-non-removable if it really is the card');
    }
    if (device.size > LARGE_DISK_BYTES && !options.allowLarge) {
      add(t.path, `is ${formatBytes(device.size)}, larger than any SD card pibake expects`, 'pass --allow-large if it really is the card');
    }
    const mounts = mountsOf(device);
    const swap = mounts.filter((m) => m.mountpoint === '[SWAP]');
    if (swap.length > 0) {
      add(t.path, `is in use as swap (${swap.map((m) => m.device).join(', ')})`, `run swapoff ${swap.map((m) => m.device).join(' ')} first`);
    }
    const mounted = mounts.filter((m) => m.mountpoint !== '[SWAP]');
    if (mounted.length > 0 && !options.unmount) {
      const list = mounted.map((m) => `${m.device} on ${m.mountpoint}`).join(', ');
      add(t.path, `has mounted filesystems (${list})`, 'unmount them, or pass --unmount to let pibake do it');
    } else {
      unmount.push(...mounted);
    }
  }
  return { problems, unmount: problems.length > 0 ? [] : unmount };
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}
