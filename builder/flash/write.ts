/**
 * One pass over the source, every piece written to every target at its own position
 * (multi-destination), while the source's checksum of each range is computed on the way.
 * The next piece is read while the current one is being written.
 */
import { createHash, type Hash } from 'node:crypto';
import { PibakeError } from '../common/errors.ts';
import type { ChecksumType } from '../package/bmap-format.ts';
import type { ProgressBoard } from '../common/progress.ts';
import type { Piece } from './source.ts';
import type { OpenTarget } from './target.ts';

/** Block devices get an fdatasync this often, so dirty pages stay bounded and progress is honest. */
export const BLOCK_SYNC_BYTES = 64 * 1024 * 1024;
/** Pieces being written at once (each to every target). */
export const WRITE_DEPTH = 4;

export interface WriteOptions {
  rangeCount: number;
  checksumType: ChecksumType;
  progress?: ProgressBoard;
  /** Called with each range's source checksum as soon as the range has been read. */
  onRangeDigest?: (range: number, digest: string) => void;
}

/** Writes all pieces to all targets; returns the source's checksum per range. */
export async function writePieces(pieces: AsyncIterable<Piece>, targets: readonly OpenTarget[], options: WriteOptions): Promise<string[]> {
  const digests: string[] = new Array<string>(options.rangeCount).fill('');
  const unsynced = targets.map(() => 0);
  let hash: Hash | undefined;
  let hashRange = -1;
  const closeRange = () => {
    if (hash) {
      const digest = hash.digest('hex');
      digests[hashRange] = digest;
      options.onRangeDigest?.(hashRange, digest);
    }
    hash = undefined;
  };

  // Up to WRITE_DEPTH pieces are being written while the next is read and hashed; positional
  // writes make their order irrelevant. Memory stays bounded by the depth.
  const inFlight: Promise<unknown>[] = [];
  const iterator = pieces[Symbol.asyncIterator]();
  let next = iterator.next();
  for (;;) {
    const result = await next;
    if (result.done) break;
    const piece = result.value;
    next = iterator.next(); // read ahead while this piece is hashed and written
    next.catch(() => undefined); // its failure surfaces at the next await
    if (piece.range !== hashRange) {
      closeRange();
      hashRange = piece.range;
      hash = createHash(options.checksumType);
    }
    hash?.update(piece.data);
    const batch = Promise.all(
      targets.map(async (target, i) => {
        await writeFully(target, piece.data, piece.offset);
        options.progress?.advance(i, piece.data.length);
        if (target.kind === 'block') {
          unsynced[i] = (unsynced[i] ?? 0) + piece.data.length;
          if ((unsynced[i] ?? 0) >= BLOCK_SYNC_BYTES) {
            unsynced[i] = 0;
            await target.handle.datasync();
          }
        }
      }),
    );
    // The buffer goes back to the pool once every target has it; a failure is awaited below.
    batch.then(piece.release, () => undefined);
    inFlight.push(batch);
    if (inFlight.length >= WRITE_DEPTH) await inFlight.shift();
  }
  await Promise.all(inFlight);
  closeRange();
  return digests;
}

async function writeFully(target: OpenTarget, data: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < data.length) {
    let bytesWritten: number;
    try {
      ({ bytesWritten } = await target.handle.write(data, written, data.length - written, position + written));
    } catch (error) {
      throw new PibakeError(`${target.path}: writing at byte ${position + written} failed: ${(error as Error).message}`, {
        hint: 'the card may be faulty or was removed; try another card or reader',
        cause: error,
      });
    }
    if (bytesWritten === 0) {
      throw new PibakeError(`${target.path}: no space to write at byte ${position + written}`, { hint: 'use a larger target' });
    }
    written += bytesWritten;
  }
}
