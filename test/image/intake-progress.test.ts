import { afterEach, describe, expect, it, vi } from 'vitest';
import { ProgressLine } from '../../builder/image/intake/progress.ts';

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

/** A terminal that records what is drawn on it. */
function terminal(): { writes: string[]; write(text: string): void; isTTY: boolean } {
  const writes: string[] = [];
  return { writes, write: (text) => writes.push(text), isTTY: true };
}

describe('ProgressLine', () => {
  it('draws one self-overwriting line with bytes, percentage and rate, at most 4 times a second', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const sink = terminal();
    const writes = sink.writes;
    const line = new ProgressLine('pibake: unpacking x.img.xz', sink);
    line.totalIn = 400 * 2 ** 20;
    let read = 0;
    line.bytesIn = () => read;
    vi.advanceTimersByTime(1000);
    read = 100 * 2 ** 20;
    line.update(512 * 2 ** 20);
    line.update(513 * 2 ** 20); // within 250 ms: not drawn
    vi.advanceTimersByTime(1000);
    line.update(1024 * 2 ** 20);
    line.done();
    expect(writes).toHaveLength(3);
    expect(writes[0]).toBe('\r\x1b[Kpibake: unpacking x.img.xz: 25% of 400 MiB read, 512 MiB written, 512 MiB/s');
    expect(writes[1]).toMatch(/1\.0 GiB written, 512 MiB\/s$/);
    expect(writes[2]).toBe('\r\x1b[K');
  });

  it('stays silent without a sink (stderr not a terminal), yet counts what was written', () => {
    const spy = vi.spyOn(process.stderr, 'write');
    const line = new ProgressLine('x', undefined);
    line.update(10);
    line.done();
    expect(line.bytesOut).toBe(10);
    expect(spy).not.toHaveBeenCalled();
  });

});
