/**
 * Progress per card. On a terminal, one line per card redrawn in place (bytes, rate, ETA);
 * otherwise a plain line per card at every further 10 % so logs stay short.
 */
import { formatBytes } from '../common/bytes.ts';

export interface ProgressSink {
  write(text: string): unknown;
  isTTY?: boolean;
}

export class Progress {
  private done: number[] = [];
  private lastPercent: number[] = [];
  private started = 0;
  private lastDraw = 0;
  private drawn = false;
  private phase = '';
  private total = 0;

  constructor(
    private readonly out: ProgressSink | undefined,
    private readonly labels: readonly string[],
  ) {}

  begin(phase: string, totalBytes: number): void {
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
      if (!force && now - this.lastDraw < 250) return;
      this.lastDraw = now;
      const lines = this.labels.map((label, i) => `${this.phase} ${label}: ${this.describe(i, now)}`);
      const up = this.drawn ? `\x1b[${lines.length}A` : '';
      this.out.write(`${up}${lines.map((l) => `\r\x1b[2K${l}`).join('\n')}\n`);
      this.drawn = true;
      return;
    }
    this.labels.forEach((label, i) => {
      const percent = this.total === 0 ? 100 : Math.floor(((this.done[i] ?? 0) / this.total) * 10) * 10;
      if (percent > (this.lastPercent[i] ?? -1)) {
        this.lastPercent[i] = percent;
        this.out?.write(`${this.phase} ${label}: ${this.describe(i, now)}\n`);
      }
    });
  }

  private describe(i: number, now: number): string {
    const seconds = Math.max((now - this.started) / 1000, 0.001);
    const done = this.done[i] ?? 0;
    const rate = done / seconds;
    const left = this.total - done;
    const eta = rate > 0 && left > 0 ? ` ETA ${formatDuration(left / rate)}` : '';
    const percent = this.total === 0 ? 100 : Math.floor((done / this.total) * 100);
    return `${formatBytes(done)} / ${formatBytes(this.total)} (${percent}%) ${formatBytes(rate)}/s${eta}`;
  }
}

export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}
