import { describe, expect, it } from 'vitest';
import { findDevice, holdsRoot, isRemovable, listBlockDevices, mountsOf, parseLsblk, rootMajMin } from '../../builder/flash/devices.ts';

// Shape of util-linux >= 2.37 (MOUNTPOINTS array, typed values): an SD card with two partitions.
const NEW = JSON.stringify({
  blockdevices: [
    { name: 'sda', path: '/dev/sda', 'maj:min': '8:0', size: 500107862016, model: 'Samsung SSD', serial: 'S1', tran: 'sata', rm: false, hotplug: false, ro: false, type: 'disk', mountpoints: [null], pkname: null,
      children: [{ name: 'sda1', path: '/dev/sda1', 'maj:min': '8:1', size: 500000000000, rm: false, hotplug: false, ro: false, type: 'part', mountpoints: [null], pkname: 'sda',
        children: [{ name: 'vg-root', path: '/dev/mapper/vg-root', 'maj:min': '254:0', size: 1, type: 'lvm', mountpoints: ['/', '/var/snap'] }] }] },
    { name: 'mmcblk0', path: '/dev/mmcblk0', 'maj:min': '179:0', size: 31914983424, model: null, serial: '0x1234', tran: null, rm: false, hotplug: false, ro: false, type: 'disk', mountpoints: [null],
      children: [
        { name: 'mmcblk0p1', path: '/dev/mmcblk0p1', 'maj:min': '179:1', size: 536870912, type: 'part', mountpoints: ['/media/u/bootfs'] },
        { name: 'mmcblk0p2', path: '/dev/mmcblk0p2', 'maj:min': '179:2', size: 31000000000, type: 'part', mountpoints: ['/media/u/rootfs', '/mnt/again'] },
      ] },
  ],
});

// Shape of old util-linux (MOUNTPOINT string, strings for numbers and flags).
const OLD = JSON.stringify({
  blockdevices: [
    { name: 'sdb', path: '/dev/sdb', size: '15931539456', model: 'Card Reader', serial: 'X9', tran: 'usb', rm: '1', hotplug: '1', ro: '0', type: 'disk', mountpoint: null,
      children: [{ name: 'sdb1', path: '/dev/sdb1', size: '15930000000', rm: '1', hotplug: '1', ro: '0', type: 'part', mountpoint: '/media/card' }] },
  ],
});

describe('lsblk discovery', () => {
  it('reads the new JSON shape with holders and several mount points', () => {
    const [sda, mmc] = parseLsblk(NEW);
    expect(sda?.children[0]?.children[0]?.mountpoints).toEqual(['/', '/var/snap']);
    expect(holdsRoot(sda!, undefined)).toBe(true);
    expect(holdsRoot(mmc!, undefined)).toBe(false);
    expect(holdsRoot(mmc!, '179:2')).toBe(true); // recognised by device number too
    expect(isRemovable(sda!)).toBe(false);
    expect(mountsOf(mmc!)).toEqual([
      { device: '/dev/mmcblk0p1', mountpoint: '/media/u/bootfs' },
      { device: '/dev/mmcblk0p2', mountpoint: '/media/u/rootfs' },
      { device: '/dev/mmcblk0p2', mountpoint: '/mnt/again' },
    ]);
    expect(findDevice(parseLsblk(NEW), '/dev/mmcblk0p2')?.disk.path).toBe('/dev/mmcblk0');
  });

  it('reads the old shape (MOUNTPOINT, string numbers and flags)', () => {
    const [sdb] = parseLsblk(OLD);
    expect(sdb).toMatchObject({ size: 15931539456, removable: true, hotplug: true, readOnly: false, transport: 'usb', model: 'Card Reader' });
    expect(isRemovable(sdb!)).toBe(true);
    expect(mountsOf(sdb!)).toEqual([{ device: '/dev/sdb1', mountpoint: '/media/card' }]);
  });

  it.runIf(process.platform === 'linux')('finds the disk holding / on this machine', async () => {
    const devices = await listBlockDevices();
    const root = await rootMajMin();
    // In a container `/` may be an overlay without a block device; then no disk may claim it.
    const holders = devices.filter((d) => holdsRoot(d, root));
    expect(holders.length).toBeLessThanOrEqual(1);
    for (const d of devices) expect(typeof d.size).toBe('number');
  });
});
