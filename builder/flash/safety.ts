/**
 * The rules that keep `pibake flash` from erasing the wrong disk. Pure: it judges facts gathered
 * beforehand and returns every problem of every target at once, so the user fixes them in one go.
 */
import { formatBytes } from '../common/bytes.ts';
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

const SWAP = '[SWAP]';

/** A reason to refuse a whole disk, and the option that lets flash go ahead anyway, if any. */
export interface DiskRefusal {
  /** A few words for `pibake devices`. */
  reason: string;
  message: string;
  hint: string;
  override?: '--unmount' | '--allow-non-removable' | '--allow-large';
}

const OVERRIDES = { '--unmount': 'unmount', '--allow-non-removable': 'allowNonRemovable', '--allow-large': 'allowLarge' } as const;

/**
 * Every reason `pibake flash` refuses this disk, before any option: the one rule set behind both
 * flash's refusals and the FLASHABLE column of `pibake devices`. The disk holding the running
 * system is refused for that alone. `imageSize` is known only when an image is to be written.
 */
export function diskRefusals(device: BlockDevice, facts: { holdsRoot: boolean; imageSize?: number }): DiskRefusal[] {
  if (facts.holdsRoot) {
    return [{ reason: 'system disk', message: 'holds the running system (/)', hint: 'this is the computer\'s own disk; name the card (see `pibake devices`)' }];
  }
  const refusals: DiskRefusal[] = [];
  if (device.readOnly) refusals.push({ reason: 'read-only', message: 'is read-only', hint: 'slide the card\'s write-protect switch to unlocked and reinsert it' });
  if (facts.imageSize !== undefined && device.size < facts.imageSize) {
    refusals.push({ reason: 'too small', message: `holds ${formatBytes(device.size)}, less than the image's ${formatBytes(facts.imageSize)}`, hint: 'use a larger card' });
  }
  if (!isRemovable(device)) {
    refusals.push({
      reason: 'not removable', message: `is not a removable disk (transport ${device.transport ?? 'unknown'})`,
      hint: 'pass --allow-non-removable if it really is the card', override: '--allow-non-removable',
    });
  }
  if (device.size > LARGE_DISK_BYTES) {
    refusals.push({
      reason: 'large', message: `is ${formatBytes(device.size)}, larger than any SD card pibake expects`,
      hint: 'pass --allow-large if it really is the card', override: '--allow-large',
    });
  }
  const mounts = mountsOf(device);
  const swap = mounts.filter((m) => m.mountpoint === SWAP).map((m) => m.device);
  if (swap.length > 0) refusals.push({ reason: 'swap', message: `is in use as swap (${swap.join(', ')})`, hint: `run swapoff ${swap.join(' ')} first` });
  const mounted = mounts.filter((m) => m.mountpoint !== SWAP);
  if (mounted.length > 0) {
    refusals.push({
      reason: 'mounted', message: `has mounted filesystems (${mounted.map((m) => `${m.device} on ${m.mountpoint}`).join(', ')})`,
      hint: 'unmount them, or pass --unmount to let pibake do it', override: '--unmount',
    });
  }
  return refusals;
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
    for (const refusal of diskRefusals(device, { holdsRoot: t.holdsRoot, imageSize })) {
      if (refusal.override && options[OVERRIDES[refusal.override]]) continue;
      add(t.path, refusal.message, refusal.hint);
    }
    if (!t.holdsRoot && options.unmount) unmount.push(...mountsOf(device).filter((m) => m.mountpoint !== SWAP));
  }
  return { problems, unmount: problems.length > 0 ? [] : unmount };
}

