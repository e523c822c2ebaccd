/**
 * The bytes to flash: a raw `.img` read at positions, or a `.img.zst` / `.img.xz` decompressed
 * once, front to back, through `zstd -dc` / `xz -dc`. Either way it yields the image's wanted
 * ranges as pieces of at most `chunkBytes`, split at multiples of `chunkBytes` so that writes are
 * large and aligned. A raw image is read only where it is mapped; a compressed one is streamed,
 * its gaps skipped, and read to the end so the decompressor's own integrity check runs.
 */
import { open, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { PibakeError } from '../common/errors.ts';
import { runTool } from '../common/exec.ts';
import { openDecompressed } from '../package/compress.ts';

export type Compression = 'none' | 'zstd' | 'xz';

export interface ByteRange {
  start: number;
  end: number;
}

export interface Piece {
  /** Index into the ranges the pieces were asked for. */
  range: number;
  offset: number;
  data: Buffer;
  /** Hands the memory back for a later piece; call it when the data is no longer needed. */
  release: () => void;
}

/**
 * Recycles chunk buffers. A new large buffer is fresh mmap'ed memory that the kernel must fault in
 * page by page (a micro-benchmark here: 512 MiB written from new 4 MiB buffers 2.9 s, from reused
 * ones 0.12 s). The pool holds at most as many buffers as there are pieces in flight.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  constructor(private readonly chunkBytes: number) {}

  take(length: number): { data: Buffer; release: () => void } {
    const buffer = this.free.pop() ?? Buffer.allocUnsafeSlow(this.chunkBytes);
    let released = false;
    return {
      data: buffer.subarray(0, length),
      release: () => {
        if (!released) this.free.push(buffer);
        released = true;
      },
    };
  }
}

export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

export function compressionOf(path: string): Compression {
  if (/\.zst$/i.test(path)) return 'zstd';
  if (/\.xz$/i.test(path)) return 'xz';
  return 'none';
}

/** Splits ranges into pieces that never cross a range end or a multiple of chunkBytes. */
export function* planPieces(ranges: readonly ByteRange[], chunkBytes: number): Generator<{ range: number; offset: number; length: number }> {
  for (const [i, { start, end }] of ranges.entries()) {
    for (let offset = start; offset < end; ) {
      const next = Math.min(end, (Math.floor(offset / chunkBytes) + 1) * chunkBytes);
      yield { range: i, offset, length: next - offset };
      offset = next;
    }
  }
}

/** Size in bytes of the (decompressed) image. */
export async function imageSizeOf(path: string): Promise<number> {
  const compression = compressionOf(path);
  if (compression === 'none') return (await statOrFail(path)).size;
  await statOrFail(path);
  if (compression === 'xz') {
    const { stdout } = await runTool('xz', ['--robot', '--list', path]);
    const totals = stdout.split('\n').find((line) => line.startsWith('totals\t'));
    const size = totals ? Number(totals.split('\t')[4]) : NaN;
    if (Number.isFinite(size)) return size;
  } else {
    const { stdout } = await runTool('zstd', ['--list', '-v', path], { reject: false });
    const m = /Decompressed Size:.*\((\d+) B\)/.exec(stdout);
    if (m) return Number(m[1]);
  }
  // The size is not recorded (streamed compression): count it with one decompression pass.
  let size = 0;
  for await (const chunk of await openDecompressed(path)) size += (chunk as Buffer).length;
  return size;
}

/** Yields the bytes of `ranges` of the image at `path`, in order, as pieces. */
export async function* readPieces(path: string, ranges: readonly ByteRange[], chunkBytes = DEFAULT_CHUNK_BYTES): AsyncGenerator<Piece> {
  const compression = compressionOf(path);
  if (compression === 'none') {
    yield* readRawPieces(path, ranges, chunkBytes);
  } else {
    yield* readStreamPieces(await openDecompressed(path), path, ranges, chunkBytes);
  }
}

async function* readRawPieces(path: string, ranges: readonly ByteRange[], chunkBytes: number): AsyncGenerator<Piece> {
  const pool = new BufferPool(chunkBytes);
  const handle = await open(path, 'r');
  try {
    for (const { range, offset, length } of planPieces(ranges, chunkBytes)) {
      const { data, release } = pool.take(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(data, filled, length - filled, offset + filled);
        if (bytesRead === 0) throw endedEarly(path, offset + filled);
        filled += bytesRead;
      }
      yield { range, offset, data, release };
    }
  } finally {
    await handle.close();
  }
}

/**
 * Pieces out of a decompressed stream (package/compress.ts: it ends only after the decompressor
 * exited successfully, and destroying it stops the decompressor).
 */
async function* readStreamPieces(
  stream: Readable,
  path: string,
  ranges: readonly ByteRange[],
  chunkBytes: number,
): AsyncGenerator<Piece> {
  const pool = new BufferPool(chunkBytes);
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let current: Buffer = Buffer.alloc(0); // bytes of the stream from position `position` on
  let position = 0;
  let completed = false;
  try {
    for (const { range, offset, length } of planPieces(ranges, chunkBytes)) {
      const { data, release } = pool.take(length);
      let filled = 0;
      while (filled < length) {
        const want = offset + filled;
        if (want >= position + current.length) {
          position += current.length;
          const next = await iterator.next();
          if (next.done) throw endedEarly(path, position);
          current = next.value;
          continue;
        }
        const from = want - position; // >= 0: pieces come in stream order
        const n = Math.min(length - filled, current.length - from);
        current.copy(data, filled, from, from + n);
        filled += n;
      }
      yield { range, offset, data, release };
    }
    // Read to the end so that the decompressor's own integrity check (xz, zstd) runs.
    for (let next = await iterator.next(); !next.done; next = await iterator.next());
    completed = true;
  } finally {
    if (!completed) stream.destroy();
  }
}

async function statOrFail(path: string) {
  try {
    return await stat(path);
  } catch (error) {
    throw new PibakeError(`image ${path} cannot be read: ${(error as Error).message}`, {
      hint: 'build it with `pibake build` or name an existing .img, .img.zst or .img.xz',
      cause: error,
    });
  }
}

function endedEarly(path: string, at: number): PibakeError {
  return new PibakeError(`image ${path} ends at byte ${at}, before the end of its mapped data`, {
    hint: 'the image is truncated or does not belong to this bmap; rebuild it or pass the matching --bmap',
  });
}
