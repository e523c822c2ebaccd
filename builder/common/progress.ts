/**
 * How long work shows its progress, the same way for a build (unpacking its base, baking nodes:
 * build/report.ts, whose Reporter also writes them as JSON), downloading an image given by URL
 * (flash, inspect) and writing cards (flash): all of it goes to one ProgressSink, a terminal is
 * redrawn in place at most every REDRAW_MS, and amounts are written as "done / total (percent)
 * rate ETA".
 */
import { formatBytes } from './bytes.ts';

/** Where progress is shown: stderr, usually. A terminal is redrawn in place; anything else gets plain lines. */
export interface ProgressSink {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** Redraws of a terminal line are at least this far apart (a byte stream reports far more often). */
export const REDRAW_MS = 250;

/** "512 MiB / 1.0 GiB (50%) 100 MiB/s ETA 5s"; without a total, "512 MiB 100 MiB/s". */
export function transferText(done: number, total: number | undefined, seconds: number): string {
  const rate = done / Math.max(seconds, 0.001);
  if (total === undefined) return `${formatBytes(done)} ${formatBytes(rate)}/s`;
  const left = total - done;
  const eta = rate > 0 && left > 0 ? ` ETA ${formatDuration(left / rate)}` : '';
  const percent = total === 0 ? 100 : Math.floor((done / total) * 100);
  return `${formatBytes(done)} / ${formatBytes(total)} (${percent}%) ${formatBytes(rate)}/s${eta}`;
}

/**
 * Several transfers at once (the cards of one flash), each a line. On a terminal the lines are
 * redrawn in place; otherwise a plain line per transfer at every further 10 % so logs stay short.
 */
export class ProgressBoard {
  private done: number[] = [];
  private lastPercent: number[] = [];
  private started = 0;
  private lastDraw = 0;
  private drawn = false;
  private phase = '';
  private total: number | undefined = 0;

  constructor(
    private readonly out: ProgressSink | undefined,
    private readonly labels: readonly string[],
  ) {}

  /** `totalBytes` undefined: the amount is not known beforehand (a download without Content-Length). */
  begin(phase: string, totalBytes: number | undefined): void {
    this.phase = phase;
    this.total = totalBytes;
    this.done = this.labels.map(() => 0);
    this.lastPercent = this.labels.map(() => -1);
    this.started = Date.now();
    this.drawn = false;
    this.lastDraw = 0;
    this.draw(true);
  }

  advance(target: number, bytes: number): void {
    this.done[target] = (this.done[target] ?? 0) + bytes;
    this.draw(false);
  }

  end(): void {
    this.draw(true);
  }

  private draw(force: boolean): void {
    if (!this.out) return;
    const now = Date.now();
    if (this.out.isTTY) {
      if (!force && now - this.lastDraw < REDRAW_MS) return;
      this.lastDraw = now;
      const lines = this.labels.map((label, i) => `${this.phase} ${label}: ${this.describe(i, now)}`);
      const up = this.drawn ? `\x1b[${lines.length}A` : '';
      this.out.write(`${up}${lines.map((l) => `\r\x1b[2K${l}`).join('\n')}\n`);
      this.drawn = true;
      return;
    }
    this.labels.forEach((label, i) => {
      if (this.total === undefined && !force) return; // no percentages to step by: first and last line only
      const percent = this.total === undefined ? (this.lastPercent[i] ?? -1) + 1
        : this.total === 0 ? 100 : Math.floor(((this.done[i] ?? 0) / this.total) * 10) * 10;
      if (percent > (this.lastPercent[i] ?? -1)) {
        this.lastPercent[i] = percent;
        this.out?.write(`${this.phase} ${label}: ${this.describe(i, now)}\n`);
      }
    });
  }

  private describe(i: number, now: number): string {
    return transferText(this.done[i] ?? 0, this.total, (now - this.started) / 1000);
  }
}

export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}
