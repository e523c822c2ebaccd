import { afterEach, describe, expect, it, vi } from 'vitest';
import { jsonReporter, lineReporter, ttyReporter, unpackEvents, type BuildEvent, type UnpackEvent } from '../../builder/build/report.ts';
import type { UnpackProgress } from '../../builder/image/intake.ts';

const MiB = 2 ** 20;
const SOURCE = 'https://downloads.example/images/2025-10-01/raspios-trixie-arm64-lite.img.xz?download=1';

/** Intake's reports of unpacking a 400 MiB .img.xz into a 2 GiB image over 10 s, one every 0.25 s. */
function unpacking(): UnpackEvent[] {
  const events: UnpackEvent[] = [];
  for (let step = 1; step <= 40; step++) {
    const fraction = step / 40;
    events.push({ type: 'unpack', source: SOURCE, read: 400 * MiB * fraction, total: 400 * MiB, written: 2048 * MiB * fraction, seconds: step / 4, done: false });
  }
  events.push({ ...(events.at(-1) as UnpackEvent), done: true });
  return events;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('lineReporter', () => {
  it('prints a line when a node enters a stage, not one per progress tick, and the plan with its reasons', () => {
    const lines: string[] = [];
    const reporter = lineReporter((l) => lines.push(l));
    reporter.event({ type: 'plan', node: 'lb1', action: 'bake', reasons: ['changed root:/etc/haproxy/haproxy.cfg'] });
    reporter.event({ type: 'plan', node: 'web1', action: 'keep', reasons: [] });
    for (const bytes of [1, 2, 3]) reporter.event({ type: 'stage', node: 'lb1', stage: 'checksum', bytes, total: 3 });
    reporter.event({ type: 'done', node: 'lb1', seconds: 1.25, file: 'output/c/lb1.img' });
    expect(lines).toEqual([
      'lb1: baking — changed root:/etc/haproxy/haproxy.cfg\n',
      'web1: up to date\n',
      'lb1: checksum\n',
      'lb1: output/c/lb1.img ready in 1.3 s\n',
    ]);
  });
});

describe('jsonReporter', () => {
  it('writes one JSON object per line', () => {
    const lines: string[] = [];
    jsonReporter((l) => lines.push(l)).event({ type: 'summary', baked: 1, kept: 3, seconds: 2, out: 'o' });
    expect(lines.map((l) => JSON.parse(l))).toEqual([{ type: 'summary', baked: 1, kept: 3, seconds: 2, out: 'o' }]);
  });
});

describe('the base\'s unpacking', () => {
  it('as JSON: at most a line a second while it streams, and the last one', () => {
    const lines: string[] = [];
    const reporter = jsonReporter((l) => lines.push(l));
    for (const event of unpacking()) reporter.event(event);
    const events = lines.map((l) => JSON.parse(l) as UnpackEvent);
    expect(events.map((e) => e.seconds)).toEqual([0.25, 1.25, 2.25, 3.25, 4.25, 5.25, 6.25, 7.25, 8.25, 9.25, 10]);
    expect(events.at(-1)).toEqual({ type: 'unpack', source: SOURCE, read: 400 * MiB, total: 400 * MiB, written: 2048 * MiB, seconds: 10, done: true });
    expect(events.filter((e) => e.done)).toHaveLength(1);
  });

  it('in a log: a line as it starts and at each further quarter of the input, then the end', () => {
    const lines: string[] = [];
    const reporter = lineReporter((l) => lines.push(l));
    for (const event of unpacking()) reporter.event(event);
    reporter.event({ type: 'base', source: SOURCE, sha256: 'ab'.repeat(32), generation: 'trixie' });
    expect(lines).toEqual([
      'unpacking raspios-trixie-arm64-lite.img.xz: 2% of 400 MiB read, 51 MiB written, 205 MiB/s\n',
      'unpacking raspios-trixie-arm64-lite.img.xz: 25% of 400 MiB read, 512 MiB written, 205 MiB/s\n',
      'unpacking raspios-trixie-arm64-lite.img.xz: 50% of 400 MiB read, 1.0 GiB written, 205 MiB/s\n',
      'unpacking raspios-trixie-arm64-lite.img.xz: 75% of 400 MiB read, 1.5 GiB written, 205 MiB/s\n',
      'unpacked raspios-trixie-arm64-lite.img.xz: 2.0 GiB image from 400 MiB in 10.0 s\n',
      `base ${SOURCE} (trixie, sha256 abababababab…)\n`,
    ]);
  });

  it('in a log, from an input read at once (a small one): the start and the end', () => {
    const lines: string[] = [];
    const reporter = lineReporter((l) => lines.push(l));
    for (const event of unpacking()) reporter.event({ ...event, read: 400 * MiB });
    expect(lines).toEqual([
      'unpacking raspios-trixie-arm64-lite.img.xz: 100% of 400 MiB read, 51 MiB written, 205 MiB/s\n',
      'unpacked raspios-trixie-arm64-lite.img.xz: 2.0 GiB image from 400 MiB in 10.0 s\n',
    ]);
  });

  it('in a log, from a download of unknown length: the start and the end', () => {
    const lines: string[] = [];
    const reporter = lineReporter((l) => lines.push(l));
    for (const { total: _, ...event } of unpacking()) reporter.event(event);
    expect(lines).toEqual([
      'unpacking raspios-trixie-arm64-lite.img.xz: 10 MiB read, 51 MiB written, 205 MiB/s\n',
      'unpacked raspios-trixie-arm64-lite.img.xz: 2.0 GiB image from 400 MiB in 10.0 s\n',
    ]);
  });

  it('on a terminal: one line redrawn in place above the nodes, replaced by a log line at the end', () => {
    const writes: string[] = [];
    const reporter = ttyReporter({ write: (text: string) => writes.push(text), isTTY: true });
    const events = unpacking();
    reporter.event(events[0] as BuildEvent);
    reporter.event(events[19] as BuildEvent);
    reporter.event(events.at(-1) as BuildEvent);
    reporter.close();
    expect(writes).toEqual([
      '  unpacking raspios-trixie-arm64-lite.img.xz: 2% of 400 MiB read, 51 MiB written, 205 MiB/s\n',
      '\x1b[1A\x1b[J',
      '  unpacking raspios-trixie-arm64-lite.img.xz: 50% of 400 MiB read, 1.0 GiB written, 205 MiB/s\n',
      '\x1b[1A\x1b[J',
      'unpacked raspios-trixie-arm64-lite.img.xz: 2.0 GiB image from 400 MiB in 10.0 s\n',
    ]);
  });

  it('unpackEvents turns intake\'s per-chunk reports into events: at most one per redraw, and always the last', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const seen: BuildEvent[] = [];
    const report = unpackEvents({ event: (e) => seen.push(e), close: () => {} }, SOURCE);
    const chunk = (written: number, done = false): UnpackProgress => ({ read: written / 4, total: 100, written, seconds: 0, done });
    report(chunk(1)); // the first goes through
    report(chunk(2)); // same instant: dropped
    vi.advanceTimersByTime(100);
    report(chunk(3)); // 100 ms later: dropped
    vi.advanceTimersByTime(200);
    report(chunk(4)); // 300 ms after the first: through
    report(chunk(5, true)); // the end, at once: through
    expect(seen).toEqual([
      { type: 'unpack', source: SOURCE, ...chunk(1) },
      { type: 'unpack', source: SOURCE, ...chunk(4) },
      { type: 'unpack', source: SOURCE, ...chunk(5, true) },
    ]);
  });
});
