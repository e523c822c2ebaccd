/**
 * A Writable that puts a byte stream into a file *sparse*: 4 KiB blocks that are all zero are
 * skipped by writing the next data at its offset, so they stay holes; the file is truncated to the
 * stream's length at the end. A 3 GB Raspberry Pi OS image with 1 GB of data then occupies ~1 GB.
 * It also hashes (SHA-256) everything written, so the raw image's checksum costs no extra read.
 */
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';

/** Hole granularity: the block size of ext4/xfs/btrfs and of bmap files. */
export const BLOCK = 4096;
/** Data is staged in this many bytes before being scanned and written, so each write is large. */
const STAGE = 4 << 20;
const ZEROS = Buffer.alloc(STAGE);

export class SparseFileWriter extends Writable {
  private readonly hash: Hash | undefined;
  private readonly stage = Buffer.allocUnsafe(STAGE);
  private filled = 0;
  /** File offset of stage[0]. */
  private offset = 0;
  /** Bytes received so far (= the image size once finished). */
  bytes = 0;
  /** Bytes actually written (non-zero blocks). */
  writtenBytes = 0;
  private hex: string | undefined;

  /**
   * `onProgress` is called with the byte count after each chunk (for a progress line). `hash: false`
   * when the caller hashes these very bytes already (a raw image read as it is).
   */
  constructor(private readonly handle: FileHandle, private readonly onProgress?: (bytes: number) => void, hash = true) {
    super({ highWaterMark: STAGE });
    this.hash = hash ? createHash('sha256') : undefined;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.hash?.update(chunk);
    this.bytes += chunk.length;
    this.onProgress?.(this.bytes);
    this.consume(chunk).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.flush()
      .then(() => this.handle.truncate(this.bytes))
      .then(() => callback(), callback);
  }

  /** Hex SHA-256 of every byte written; valid once the stream has finished. */
  sha256(): string {
    if (!this.hash) throw new Error('SparseFileWriter made with hash: false has no SHA-256');
    this.hex ??= this.hash.digest('hex');
    return this.hex;
  }

  private async consume(chunk: Buffer): Promise<void> {
    let at = 0;
    while (at < chunk.length) {
      const n = Math.min(chunk.length - at, STAGE - this.filled);
      chunk.copy(this.stage, this.filled, at, at + n);
      this.filled += n;
      at += n;
      if (this.filled === STAGE) await this.flush();
    }
  }

  /** Write the staged bytes' non-zero blocks at their offsets; zero blocks are left as holes. */
  private async flush(): Promise<void> {
    const length = this.filled;
    if (length === 0) return;
    if (!this.stage.subarray(0, length).equals(ZEROS.subarray(0, length))) {
      let runStart = -1;
      for (let at = 0; at < length; at += BLOCK) {
        const end = Math.min(at + BLOCK, length);
        const zero = this.stage.subarray(at, end).equals(ZEROS.subarray(0, end - at));
        if (!zero && runStart < 0) runStart = at;
        if (zero && runStart >= 0) {
          await this.writeRun(runStart, at);
          runStart = -1;
        }
      }
      if (runStart >= 0) await this.writeRun(runStart, length);
    }
    this.offset += length;
    this.filled = 0;
  }

  private async writeRun(from: number, to: number): Promise<void> {
    let done = 0;
    while (done < to - from) {
      const { bytesWritten } = await this.handle.write(this.stage, from + done, to - from - done, this.offset + from + done);
      done += bytesWritten;
    }
    this.writtenBytes += to - from;
  }
}
