import { describe, expect, it } from 'vitest';
import { formatBytes } from '../../builder/common/bytes.ts';

describe('formatBytes', () => {
  it('writes binary units with one decimal below ten of a unit and none above', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(37 * 2 ** 20 + 2 ** 19)).toBe('38 MiB');
    expect(formatBytes(3 * 2 ** 30)).toBe('3.0 GiB');
    expect(formatBytes(128 * 2 ** 30)).toBe('128 GiB');
    expect(formatBytes(5 * 2 ** 40)).toBe('5.0 TiB');
    expect(formatBytes(2 ** 60)).toBe('1048576 TiB');
  });

  it('keeps the sign of a difference (a WAL position behind another)', () => {
    expect(formatBytes(-1536)).toBe('-1.5 KiB');
  });
});
