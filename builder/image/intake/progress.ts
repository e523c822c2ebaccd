import { formatBytes } from '../../common/bytes.ts';
import { REDRAW_MS, type ProgressSink } from '../../common/progress.ts';

/**
 * One self-overwriting line while a base is unpacked (input read, bytes written, rate), drawn only
 * when a sink is given (intake gives stderr when it is a terminal): logs and pipes stay clean.
 */
export class ProgressLine {
  private readonly started = Date.now();
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly sink: ProgressSink | undefined,
  ) {}

  /** Size of the input when known, for a percentage. */
  totalIn: number | undefined;
  /** Bytes of input read so far, when known. */
  bytesIn: () => number = () => 0;
  /** Bytes written so far (the last update), also when the line is not drawn. */
  bytesOut = 0;

  update(bytesOut: number): void {
    this.bytesOut = bytesOut;
    if (!this.sink) return;
    const now = Date.now();
    if (now - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = now;
    const seconds = Math.max((now - this.started) / 1000, 0.001);
    const bytesIn = this.bytesIn();
    const percent = this.totalIn && bytesIn > 0 ? ` ${Math.min(100, (100 * bytesIn) / this.totalIn).toFixed(0)}% of ${formatBytes(this.totalIn)} read,` : '';
    this.sink.write(`\r\x1b[K${this.label}:${percent} ${formatBytes(bytesOut)} written, ${formatBytes(bytesOut / seconds)}/s`);
    this.drawn = true;
  }

  done(): void {
    if (this.drawn) this.sink?.write('\r\x1b[K');
  }
}
