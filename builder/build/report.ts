/**
 * How a build tells the user what it is doing: redrawn progress lines on a terminal, plain log
 * lines otherwise, or one JSON event per line for CI (--json).
 */
import { formatBytes } from '../common/bytes.ts';
import { transferText, type ProgressSink } from '../common/progress.ts';

export type BuildEvent =
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

export function jsonReporter(write: (line: string) => void = (l) => process.stdout.write(l)): Reporter {
  return { event: (e) => write(`${JSON.stringify(e)}\n`), close: () => {} };
}

function describe(event: BuildEvent): string | undefined {
  switch (event.type) {
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
  return {
    event(e) {
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


/** A status line per node, redrawn in place (stage, bytes done, rate), with log lines above. */
export function ttyReporter(stream: ProgressSink = process.stderr): Reporter {
  const status = new Map<string, { stage: string; since: number; bytes?: number; total?: number }>();
  let drawn = 0;
  const redraw = () => {
    if (drawn > 0) stream.write(`\x1b[${drawn}A\x1b[J`);
    const lines = [...status.entries()].map(([node, s]) => {
      const seconds = (Date.now() - s.since) / 1000;
      // A rate is shown once it means something (half a second in).
      const amount = s.bytes === undefined ? '' : seconds > 0.5 ? ` ${transferText(s.bytes, s.total || undefined, seconds)}` : ` ${formatBytes(s.bytes)}`;
      return `  ${node.padEnd(12)} ${s.stage}${amount}`;
    });
    for (const line of lines) stream.write(`${line}\n`);
    drawn = lines.length;
  };
  return {
    event(e) {
      if (e.type === 'stage') {
        const previous = status.get(e.node);
        const since = previous && previous.stage === e.stage ? previous.since : Date.now();
        status.set(e.node, { stage: e.stage, since, bytes: e.bytes, total: e.total });
      } else {
        if (e.type === 'done') status.delete(e.node);
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
