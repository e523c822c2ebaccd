/** `pibake devices`: the disks of this machine and whether `pibake flash` would accept each. */
import { defineCommand, printResult, withJson } from './options.ts';

export const command = defineCommand({
  builder: (y) => withJson(y),
  handler: async (args) => {
    const [{ holdsRoot, isRemovable, listBlockDevices, mountsOf, rootMajMin }, { diskRefusals }, { formatBytes }] = await Promise.all([
      import('../flash/devices.ts'), import('../flash/safety.ts'), import('../common/bytes.ts'),
    ]);
    const rootDev = await rootMajMin();
    const disks = (await listBlockDevices())
      .filter((d) => d.type === 'disk' || d.type === 'loop')
      .filter((d) => d.size > 0)
      .map((d) => {
        // flash's own rules; an option that lets flash go ahead anyway is named beside its reason.
        const refusals = diskRefusals(d, { holdsRoot: holdsRoot(d, rootDev) });
        return {
          path: d.path, size: d.size, model: d.model ?? null, serial: d.serial ?? null, transport: d.transport ?? null,
          removable: isRemovable(d), readOnly: d.readOnly, mountpoints: mountsOf(d).map((m) => m.mountpoint),
          refusals: refusals.map((r) => r.reason),
          overrides: Object.fromEntries(refusals.flatMap((r) => (r.override ? [[r.reason, r.override] as const] : []))),
        };
      });
    printResult(args.json, disks, () => {
      if (disks.length === 0) return ['no disks found'];
      const header = ['DEVICE', 'SIZE', 'MODEL', 'SERIAL', 'TRAN', 'FLASHABLE'];
      const rows: string[][] = [header, ...disks.map((d) => [
        d.path, formatBytes(d.size), d.model ?? '-', d.serial ?? '-', d.transport ?? '-',
        d.refusals.length === 0 ? 'yes' : `no: ${d.refusals.map((r) => (d.overrides[r] ? `${r} (${d.overrides[r]})` : r)).join(', ')}`,
      ])];
      const widths = header.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
      return rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  '));
    });
  },
});
