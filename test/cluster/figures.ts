/**
 * The figures the cluster tests record and print as one table at the end: how long clients waited,
 * how many requests and writes failed, whether an acknowledged write was lost, against the targets
 * of issue 10. No assertion is made on speed; the tests assert correctness (no lost row).
 */
import type { WrkResult } from './harness.ts';
import { firstAckAfter, seconds, type WriteRecord } from './ha-harness.ts';

/** Targets: writes back within 15 s, the floating address within 5 s (and no acknowledged row lost). */
export const TARGET = { writesMs: 15_000, vipMs: 5_000 };

/** "12.3 s (target 15 s: met)" or "... missed by 2.1 s". */
export function against(ms: number | undefined, target: number): string {
  const verdict = ms !== undefined && ms <= target ? 'met' : `missed by ${seconds((ms ?? Infinity) - target)}`;
  return `${seconds(ms)} (target ${target / 1000} s: ${verdict})`;
}

/**
 * ms from `event` until writes are acknowledged again after the failures it caused: 0 when none
 * failed and writes went on, undefined when no write was acknowledged after the event at all.
 */
export function writesBackMs(records: WriteRecord[], event: number): number | undefined {
  const firstFailure = records.find((r) => r.t >= event && !r.ok);
  if (!firstFailure) return records.some((r) => r.ok && r.t >= event) ? 0 : undefined;
  return firstAckAfter(records.filter((r) => r.t > firstFailure.t), event);
}

export class Figures {
  private readonly rows: [string, string, string][] = [];

  readonly add = (scenario: string, metric: string, value: string | number): void => {
    this.rows.push([scenario, metric, typeof value === 'number' ? String(Math.round(value * 100) / 100) : value]);
  };

  wrk(scenario: string, r: WrkResult): void {
    const errors = r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
    this.add(scenario, 'requests (wrk -t2 -c16)', `${r.requests} in ${r.seconds.toFixed(1)} s, ${r.requestsPerSecond} /s`);
    this.add(scenario, 'non-2xx / socket errors', `${r.non2xx} / ${errors}`);
    this.add(scenario, 'served by', Object.entries(r.byNode).sort().map(([k, v]) => `${k} ${v}`).join(', '));
  }

  /** Probe records ([ms, status, node]) around an event: failed/total, and the event → first success after the last failure. */
  probe(scenario: string, records: [number, number, string][], event: number): number | undefined {
    const failures = records.filter(([t, s]) => t >= event && s !== 200);
    const lastFailure = failures.at(-1)?.[0];
    const back = lastFailure === undefined ? undefined : records.find(([t, s]) => t > lastFailure && s === 200)?.[0];
    this.add(scenario, 'probe (GET through the address, fresh connection each): failed / total after the event',
      `${failures.length} / ${records.filter(([t]) => t >= event).length}`);
    const outage = lastFailure === undefined ? 0 : back === undefined ? undefined : back - event;
    this.add(scenario, 'event → answered again (last failure → next success)', lastFailure === undefined ? 'no failed request' : against(outage, TARGET.vipMs));
    return outage;
  }

  /** The writer's records around a failure at `event`, judged against the rows `present` afterwards; returns the acknowledged rows missing. */
  writes(scenario: string, records: WriteRecord[], event: number, present: Set<number>): number {
    this.add(scenario, 'writes (one INSERT per statement, persistent connection through the address)',
      `${records.filter((r) => r.ok).length} acknowledged, ${records.filter((r) => !r.ok).length} failed attempts`);
    this.add(scenario, 'event → writes acknowledged again', against(writesBackMs(records, event), TARGET.writesMs));
    const acked = records.filter((r) => r.ok).map((r) => r.seq);
    const missing = acked.filter((seq) => !present.has(seq));
    this.add(scenario, 'acknowledged rows missing afterwards', `${missing.length} of ${acked.length}${missing.length ? ` (seq ${missing.slice(0, 5).join(', ')})` : ''}`);
    this.add(scenario, 'rows the client saw fail but that were committed', records.filter((r) => !r.ok && present.has(r.seq)).length);
    return missing.length;
  }

  table(title: string, footer = ''): string {
    const width = [0, 1, 2].map((i) => Math.max(...this.rows.map((f) => (f[i] ?? '').length)));
    const line = (f: string[]) => `| ${f.map((c, i) => c.padEnd(width[i] as number)).join(' | ')} |`;
    return ['', title, line(['scenario', 'metric', 'value']), `|${width.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...this.rows.map(line), footer].join('\n');
  }
}
