/** `pibake devices`: the disks of this machine and whether `pibake flash` would accept each. */
import type { CommandModule } from 'yargs';
import { holdsRoot, isRemovable, listBlockDevices, mountsOf, rootMajMin } from '../flash/devices.ts';
import { LARGE_DISK_BYTES, formatBytes } from '../flash/safety.ts';

export const devicesCommand: CommandModule<object, { json: boolean }> = {
  command: 'devices',
  describe: 'list disks that could be flashed, with the reasons pibake would refuse one',
  builder: (y) => y.option('json', { type: 'boolean', default: false, describe: 'print JSON' }) as never,
  handler: async (args) => {
    const rootDev = await rootMajMin();
    const disks = (await listBlockDevices())
      .filter((d) => d.type === 'disk' || d.type === 'loop')
      .filter((d) => d.size > 0)
      .map((d) => {
        const refusals: string[] = [];
        if (holdsRoot(d, rootDev)) refusals.push('system disk');
        if (mountsOf(d).length > 0) refusals.push('mounted');
        if (!isRemovable(d)) refusals.push('not removable');
        if (d.size > LARGE_DISK_BYTES) refusals.push('large');
        if (d.readOnly) refusals.push('read-only');
        return { path: d.path, size: d.size, model: d.model ?? null, serial: d.serial ?? null, transport: d.transport ?? null,
          removable: isRemovable(d), readOnly: d.readOnly, mountpoints: mountsOf(d).map((m) => m.mountpoint), refusals };
      });
    if (args.json) {
      process.stdout.write(`${JSON.stringify(disks, null, 2)}\n`);
      return;
    }
    if (disks.length === 0) {
      process.stdout.write('no disks found\n');
      return;
    }
    const header = ['DEVICE', 'SIZE', 'MODEL', 'SERIAL', 'TRAN', 'FLASHABLE'];
    const rows: string[][] = [header, ...disks.map((d) => [
      d.path, formatBytes(d.size), d.model ?? '-', d.serial ?? '-', d.transport ?? '-', d.refusals.length === 0 ? 'yes' : `no: ${d.refusals.join(', ')}`,
    ])];
    const widths = header.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
    for (const row of rows) process.stdout.write(`${row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')}\n`);
  },
};
