/**
 * How a build tells the user what it is doing: redrawn progress lines on a terminal, plain log
 * lines otherwise, or one JSON event per line for CI (--json).
 */
import { formatBytes } from '../common/bytes.ts';
import { throttled } from '../common/parallel.ts';
import { REDRAW_MS, transferText, type ProgressSink } from '../common/progress.ts';
import type { UnpackProgress } from '../image/intake.ts';

/** Unpacking the base into the cache (its first use only): input read of its size, image written. */
export type UnpackEvent = { type: 'unpack'; source: string } & UnpackProgress;

export type BuildEvent =
  | UnpackEvent
  | { type: 'base'; source: string; sha256: string; generation: string }
  | { type: 'warning'; message: string }
  | { type: 'plan'; node: string; action: 'bake' | 'keep'; reasons: string[] }
  | { type: 'packages'; role: string; packages: string[]; debs: number; bytes: number; installedBytes: number; fetched: number; seconds: number }
  | { type: 'stage'; node: string; stage: string; bytes?: number; total?: number }
  | { type: 'done'; node: string; seconds: number; file: string }
  | { type: 'removed'; node: string; files: string[] }
  | { type: 'summary'; baked: number; kept: number; seconds: number; out: string };

export interface Reporter {
  event(event: BuildEvent): void;
  close(): void;
}

/**
 * Intake's progress reports as the reporter's events: at most one per redraw interval while the
 * base streams (intake reports every chunk), and its last one always.
 */
export function unpackEvents(reporter: Reporter, source: string): (progress: UnpackProgress) => void {
  const send = (progress: UnpackProgress) => reporter.event({ type: 'unpack', source, ...progress });
  const tick = throttled(send, REDRAW_MS);
  return (progress) => (progress.done ? send(progress) : tick(progress));
}

/** JSON lines for unpacking: at most one a second (and the last), enough to follow a 3 GB base. */
const JSON_UNPACK_SECONDS = 1;

export function jsonReporter(write: (line: string) => void = (l) => process.stdout.write(l)): Reporter {
  let lastUnpack = -Infinity;
  return {
    event(e) {
      if (e.type === 'unpack' && !e.done) {
        if (e.seconds - lastUnpack < JSON_UNPACK_SECONDS) return;
        lastUnpack = e.seconds;
      }
      write(`${JSON.stringify(e)}\n`);
    },
    close: () => {},
  };
}

/** The file name of a path or URL: a progress line must fit on one terminal row. */
function shortName(source: string): string {
  return source.replace(/[?#].*$/, '').split('/').filter(Boolean).pop() ?? source;
}

/** "unpacking x.img.xz: 25% of 400 MiB read, 1.0 GiB written, 512 MiB/s", or the line saying it is done. */
function describeUnpack(e: UnpackEvent): string {
  const name = shortName(e.source);
  if (e.done) return `unpacked ${name}: ${formatBytes(e.written)} image from ${formatBytes(e.read)} in ${e.seconds.toFixed(1)} s`;
  const read = e.total === undefined ? `${formatBytes(e.read)} read` : e.read > 0 ? `${percentOf(e.read, e.total)}% of ${formatBytes(e.total)} read` : `${formatBytes(e.total)} to read`;
  return `unpacking ${name}: ${read}, ${formatBytes(e.written)} written, ${formatBytes(e.written / Math.max(e.seconds, 0.001))}/s`;
}

function percentOf(done: number, total: number): number {
  return total === 0 ? 100 : Math.min(100, Math.floor((100 * done) / total));
}

function describe(event: BuildEvent): string | undefined {
  switch (event.type) {
    case 'unpack':
      return describeUnpack(event);
    case 'base':
      return `base ${event.source} (${event.generation}, sha256 ${event.sha256.slice(0, 12)}…)`;
    case 'warning':
      return `warning: ${event.message}`;
    case 'plan':
      return event.action === 'keep'
        ? `${event.node}: up to date`
        : `${event.node}: baking — ${event.reasons.join('; ')}`;
    case 'packages':
      return `role ${event.role}: carrying ${event.packages.join(' ')} — ${event.debs} .debs, ${formatBytes(event.bytes)} ` +
        `(${formatBytes(event.installedBytes)} installed; ${event.fetched} fetched, ${event.debs - event.fetched} cached) in ${event.seconds.toFixed(1)} s`;
    case 'stage':
      return undefined;
    case 'done':
      return `${event.node}: ${event.file} ready in ${event.seconds.toFixed(1)} s`;
    case 'removed':
      return `${event.node}: no longer in the inventory, removed ${event.files.join(', ')}`;
    case 'summary':
      return `${event.baked} baked, ${event.kept} up to date in ${event.seconds.toFixed(1)} s → ${event.out}`;
  }
}

export function lineReporter(write: (line: string) => void = (l) => process.stderr.write(l)): Reporter {
  const stageOf = new Map<string, string>();
  // The quarter of the input last told about (-1: nothing yet): a log gets its start, a line at
  // each further quarter read, and its end.
  let unpackQuarter = -1;
  return {
    event(e) {
      if (e.type === 'unpack' && !e.done) {
        const quarter = e.total === undefined || e.total === 0 ? 0 : Math.floor((4 * e.read) / e.total);
        if (unpackQuarter >= 0 && (quarter <= unpackQuarter || quarter >= 4)) return;
        unpackQuarter = quarter;
      }
      if (e.type === 'stage') {
        // One line when a node enters a stage, not one per progress tick.
        if (stageOf.get(e.node) === e.stage) return;
        stageOf.set(e.node, e.stage);
        write(`${e.node}: ${e.stage}\n`);
        return;
      }
      const text = describe(e);
      if (text) write(`${text}\n`);
    },
    close: () => {},
  };
}


/**
 * A status line per node, redrawn in place (stage, bytes done, rate), with log lines above; while
 * the base is unpacked, a line for that first.
 */
export function ttyReporter(stream: ProgressSink = process.stderr): Reporter {
  const status = new Map<string, { stage: string; since: number; bytes?: number; total?: number }>();
  let unpacking: UnpackEvent | undefined;
  let drawn = 0;
  const redraw = () => {
    if (drawn > 0) stream.write(`\x1b[${drawn}A\x1b[J`);
    const lines = [...status.entries()].map(([node, s]) => {
      const seconds = (Date.now() - s.since) / 1000;
      // A rate is shown once it means something (half a second in).
      const amount = s.bytes === undefined ? '' : seconds > 0.5 ? ` ${transferText(s.bytes, s.total || undefined, seconds)}` : ` ${formatBytes(s.bytes)}`;
      return `  ${node.padEnd(12)} ${s.stage}${amount}`;
    });
    if (unpacking) lines.unshift(`  ${describeUnpack(unpacking)}`);
    for (const line of lines) stream.write(`${line}\n`);
    drawn = lines.length;
  };
  return {
    event(e) {
      if (e.type === 'unpack' && !e.done) {
        unpacking = e;
      } else if (e.type === 'stage') {
        const previous = status.get(e.node);
        const since = previous && previous.stage === e.stage ? previous.since : Date.now();
        status.set(e.node, { stage: e.stage, since, bytes: e.bytes, total: e.total });
      } else {
        if (e.type === 'done') status.delete(e.node);
        if (e.type === 'unpack') unpacking = undefined;
        const text = describe(e);
        if (drawn > 0) stream.write(`\x1b[${drawn}A\x1b[J`);
        drawn = 0;
        if (text) stream.write(`${text}\n`);
      }
      redraw();
    },
    close() {
      if (drawn > 0) stream.write(`\x1b[${drawn}A\x1b[J`);
      drawn = 0;
    },
  };
}
