/** How pibake writes an amount of bytes for people: binary units, three significant digits or so. */
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 512 B, 1.5 KiB, 37 MiB, 3.9 GiB: one decimal below 10 of a unit, none above (rates too: add "/s"). */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  return `${value.toFixed(Math.abs(value) < 10 ? 1 : 0)} ${UNITS[unit]}`;
}
