import { describe, expect, it } from 'vitest';
import { parseLsblk } from '../../builder/flash/devices.ts';
import { checkTargets, diskRefusals, type TargetFacts } from '../../builder/flash/safety.ts';

const GiB = 1024 ** 3;
const devs = parseLsblk(JSON.stringify({
  blockdevices: [
    { name: 'sdb', path: '/dev/sdb', size: 32 * GiB, tran: 'usb', rm: true, hotplug: true, ro: false, type: 'disk', mountpoints: [null],
      children: [{ name: 'sdb1', path: '/dev/sdb1', size: 1 * GiB, type: 'part', mountpoints: ['/media/boot'] }] },
    { name: 'sdc', path: '/dev/sdc', size: 2 * GiB, tran: 'usb', rm: true, ro: true, type: 'disk', mountpoints: [null] },
    { name: 'sdd', path: '/dev/sdd', size: 1000 * GiB, tran: 'sata', rm: false, hotplug: false, ro: false, type: 'disk', mountpoints: [null] },
    { name: 'mmcblk0', path: '/dev/mmcblk0', size: 16 * GiB, tran: 'mmc', rm: false, ro: false, type: 'disk', mountpoints: [null] },
    { name: 'sde', path: '/dev/sde', size: 64 * GiB, tran: null, rm: false, hotplug: true, ro: false, type: 'disk', mountpoints: [null],
      children: [{ name: 'sde1', path: '/dev/sde1', size: 1, type: 'part', mountpoints: ['[SWAP]'] }] },
  ],
}));
const [sdb, sdc, sdd, mmc, sde] = devs;
const block = (d: (typeof devs)[number] | undefined, holdsRoot = false): TargetFacts => ({ path: d!.path, kind: 'block', device: d, disk: d, holdsRoot });
const opts = { unmount: false, allowNonRemovable: false, allowLarge: false };

describe('safety rules', () => {
  it('accepts a removable unmounted card of sufficient size', () => {
    expect(checkTargets([block(mmc)], 4 * GiB, opts)).toEqual({ problems: [], unmount: [] });
  });

  it('reports every problem of every target at once', () => {
    const { problems } = checkTargets([block(sdb), block(sdc), block(sdd), block(sde), block(mmc, true), block(mmc, true)], 4 * GiB, opts);
    const text = problems.map((p) => p.message);
    expect(text).toEqual([
      '/dev/sdb: has mounted filesystems (/dev/sdb1 on /media/boot)',
      '/dev/sdc: is read-only',
      '/dev/sdc: holds 2.0 GiB, less than the image\'s 4.0 GiB',
      '/dev/sdd: is not a removable disk (transport sata)',
      '/dev/sdd: is 1000 GiB, larger than any SD card pibake expects',
      '/dev/sde: is in use as swap (/dev/sde1)',
      '/dev/mmcblk0: holds the running system (/)',
      '/dev/mmcblk0: is named twice',
      '/dev/mmcblk0: holds the running system (/)',
    ]);
    for (const p of problems) expect(p.hint).toBeTruthy();
  });

  it('lets the user overrule removable, size and mount checks, never the system disk', () => {
    const ok = checkTargets([block(sdb), block(sdd)], 4 * GiB, { unmount: true, allowNonRemovable: true, allowLarge: true });
    expect(ok).toEqual({ problems: [], unmount: [{ device: '/dev/sdb1', mountpoint: '/media/boot' }] });
    const root = checkTargets([block(sdd, true)], 4 * GiB, { unmount: true, allowNonRemovable: true, allowLarge: true });
    expect(root.problems.map((p) => p.message)).toEqual(['/dev/sdd: holds the running system (/)']);
  });

  it('refuses partitions, odd files and the image itself; checks file size only', () => {
    const part = sdb!.children[0];
    const { problems } = checkTargets([
      { path: '/dev/sdb1', kind: 'block', device: part, disk: sdb, holdsRoot: false },
      { path: '/tmp', kind: 'other', what: 'a directory' },
      { path: 'a.img', kind: 'file', exists: true, size: 10 * GiB, sameAsImage: true },
      { path: 'small.img', kind: 'file', exists: true, size: 1 * GiB, sameAsImage: false },
      { path: 'new.img', kind: 'file', exists: false, size: 0, sameAsImage: false },
      { path: './new.img', real: '/w/new.img', kind: 'file', exists: false, size: 0, sameAsImage: false },
      { path: 'link.img', real: '/w/new.img', kind: 'file', exists: false, size: 0, sameAsImage: false },
    ], 4 * GiB, opts);
    expect(problems.map((p) => p.message)).toEqual([
      '/dev/sdb1: is a partition of /dev/sdb',
      '/tmp: is a directory, not a disk or a regular file',
      'a.img: is the image itself',
      'small.img: holds 1.0 GiB, less than the image\'s 4.0 GiB',
      'link.img: is named twice',
    ]);
  });

  it('gives pibake devices the reasons flash refuses, telling swap from mounted, with the option that overrides each', () => {
    const reasons = (d: (typeof devs)[number] | undefined, holdsRoot = false) =>
      diskRefusals(d!, { holdsRoot }).map((r) => (r.override ? `${r.reason} (${r.override})` : r.reason));
    expect(reasons(sdb)).toEqual(['mounted (--unmount)']);
    expect(reasons(sdc)).toEqual(['read-only']);
    expect(reasons(sdd)).toEqual(['not removable (--allow-non-removable)', 'large (--allow-large)']);
    expect(reasons(sde)).toEqual(['swap']);
    expect(reasons(mmc)).toEqual([]);
    expect(reasons(mmc, true)).toEqual(['system disk']);
    // The same rules decide flash: a disk devices calls flashable is accepted, each refusal refused.
    for (const d of [sdb, sdc, sdd, sde, mmc]) {
      const refused = checkTargets([block(d)], 1, opts).problems.length > 0;
      expect(refused, d!.path).toBe(reasons(d).length > 0);
    }
    // Swap has no override: --unmount unmounts filesystems, never swap.
    expect(checkTargets([block(sde)], 1, { ...opts, unmount: true }).problems.map((p) => p.message)).toEqual(['/dev/sde: is in use as swap (/dev/sde1)']);
  });
});
