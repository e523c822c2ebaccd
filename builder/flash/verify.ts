/**
 * Read-back verification: every written range is read from the target and its checksum compared
 * with the expected one (the bmap's, or the one computed from the source while writing).
 * Usable on its own (`verifyTarget`) to check a card that was written earlier.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Bmap, ChecksumType } from '../package/bmap-format.ts';
import type { ProgressBoard } from '../common/progress.ts';
import { DEFAULT_CHUNK_BYTES, planPieces } from './source.ts';

export interface ExpectedRange {
  start: number;
  end: number;
  checksum: string;
  /** How the user should see this range, e.g. "blocks 2560-3327 (bytes 10485760-13631487)". */
  label: string;
}

export interface VerifyFailure {
  target: string;
  range: ExpectedRange;
  actual: string;
}

/** The bmap's ranges as expected ranges; undefined when the bmap carries no checksums. */
export function expectedFromBmap(bmap: Bmap): ExpectedRange[] | undefined {
  if (!bmap.checksumType || bmap.ranges.some((r) => !r.checksum)) return undefined;
  return bmap.ranges.map((r) => ({ start: r.start, end: r.end, checksum: r.checksum as string, label: bmapRangeLabel(r) }));
}

export function bmapRangeLabel(r: { firstBlock: number; lastBlock: number; start: number; end: number }): string {
  return `blocks ${r.firstBlock}-${r.lastBlock} (bytes ${r.start}-${r.end - 1})`;
}

export function byteRangeLabel(r: { start: number; end: number }): string {
  return `bytes ${r.start}-${r.end - 1}`;
}

/** Reads every range back from `path` and returns those whose checksum differs. */
export async function verifyTarget(
  path: string,
  ranges: readonly ExpectedRange[],
  checksumType: ChecksumType,
  options: { progress?: ProgressBoard; progressIndex?: number; chunkBytes?: number } = {},
): Promise<VerifyFailure[]> {
  const failures: VerifyFailure[] = [];
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const handle = await open(path, 'r');
  // The next chunk is read while the current one is hashed.
  // Two buffers in turn: one is hashed (synchronously, then free) while the other is filled.
  const buffers = [Buffer.allocUnsafeSlow(chunkBytes), Buffer.allocUnsafeSlow(chunkBytes)];
  let turn = 0;
  const readChunk = async (offset: number, length: number): Promise<Buffer> => {
    const data = (buffers[turn++ % 2] as Buffer).subarray(0, length);
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await handle.read(data, filled, length - filled, offset + filled);
      if (bytesRead === 0) break; // short target: the checksum will differ
      filled += bytesRead;
    }
    return data.subarray(0, filled);
  };
  try {
    let hash = createHash(checksumType);
    let current = -1;
    const finish = () => {
      if (current < 0) return;
      const range = ranges[current] as ExpectedRange;
      const actual = hash.digest('hex');
      if (actual !== range.checksum) failures.push({ target: path, range, actual });
    };
    const plan = [...planPieces(ranges, chunkBytes)];
    let pending = plan[0] ? readChunk(plan[0].offset, plan[0].length) : undefined;
    for (const [i, { range, length }] of plan.entries()) {
      const data = await (pending as Promise<Buffer>);
      const following = plan[i + 1];
      pending = following ? readChunk(following.offset, following.length) : undefined;
      pending?.catch(() => undefined); // surfaces at the next await
      if (range !== current) {
        finish();
        current = range;
        hash = createHash(checksumType);
      }
      hash.update(data);
      options.progress?.advance(options.progressIndex ?? 0, length);
    }
    finish();
  } finally {
    await handle.close();
  }
  return failures;
}
