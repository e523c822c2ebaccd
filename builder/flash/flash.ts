/**
 * `pibake flash`: check every target, ask, write the image's mapped ranges to all targets in one
 * pass, make it durable, read it back and compare checksums. Nothing is written before every
 * check of every target has passed.
 */
import { createHash, type Hash } from 'node:crypto';
import { type ImageFile, openImageFile } from '../bytes/open.ts';
import { PibakeError, type Problem } from '../common/errors.ts';
import { type Bmap, type ChecksumType, readBmap } from '../package/bmap-format.ts';
import { ProgressBoard, type ProgressSink } from '../common/progress.ts';
import { formatBytes } from '../common/bytes.ts';
import { checkTargets, type SafetyOptions, type TargetFacts } from './safety.ts';
import { type ByteRange, DEFAULT_CHUNK_BYTES, imageSizeOf, readPieces } from './source.ts';
import { flushTarget, gatherFacts, type OpenTarget, openTargets, unmountAll } from './target.ts';
import { bmapRangeLabel, byteRangeLabel, type ExpectedRange, verifyTarget } from './verify.ts';
import { writePieces } from './write.ts';

/**
 * Checks cards written earlier against the image, writing nothing: every mapped range (every
 * 64 MiB range without a bmap) must read back with the image's checksum. Expected checksums come
 * from the bmap, or from one pass over the image when the bmap has none.
 */
export async function verifyOnly(options: Pick<FlashOptions, 'image' | 'label' | 'bmap' | 'checkUnmapped' | 'targets' | 'out' | 'chunkBytes'>): Promise<FlashResult> {
  const started = Date.now();
  const image = await openImageFile(options.image, options.label ?? options.image);
  const bmap = options.bmap ? await readBmap(options.bmap) : undefined;
  const imageSize = await checkedImageSize(image, bmap, options.bmap);
  const { ranges, checksumType, expected } = writePlan(bmap, imageSize);
  // A bmap no digest vouches for says which ranges to compare, never what they must hold.
  let ranged = options.checkUnmapped ? undefined : expected;
  if (!ranged) {
    const sums: string[] = [];
    let hash: Hash | undefined;
    let current = -1;
    for await (const piece of readPieces(image, ranges, options.chunkBytes ?? DEFAULT_CHUNK_BYTES, { unmappedMustBeZero: options.checkUnmapped })) {
      if (piece.range !== current) {
        if (hash) sums[current] = hash.digest('hex');
        current = piece.range;
        hash = createHash(checksumType);
      }
      hash?.update(piece.data);
      piece.release();
    }
    if (hash) sums[current] = hash.digest('hex');
    ranged = ranges.map((r, i) => ({ ...r, checksum: sums[i] ?? '' }));
  }
  const handles = options.targets.map((path) => ({ path }) as OpenTarget);
  const writtenBytes = ranges.reduce((sum, r) => sum + (r.end - r.start), 0);
  await verifyAll(handles, ranged, checksumType, options, writtenBytes);
  return { imageSize, writtenBytes, bmapUsed: !!bmap, verified: true, seconds: (Date.now() - started) / 1000 };
}

/** Without a bmap the image is written whole, but verified in ranges of this size so a failure says where. */
export const UNMAPPED_VERIFY_RANGE_BYTES = 64 * 1024 * 1024;

export interface FlashOptions extends SafetyOptions {
  image: string;
  /** How messages name the image (the URL it was downloaded from); default its path. */
  label?: string;
  /** Path of the bmap; undefined writes the whole image. */
  bmap?: string;
  /** How messages name the bmap; default its path. */
  bmapLabel?: string;
  /**
   * The bmap came with a download and no digest vouches for it: every byte it leaves out must be
   * zero in the image (checked while the image streams), so it cannot leave data off the card.
   */
  checkUnmapped?: boolean;
  targets: string[];
  verify: boolean;
  /** Skip the question (required without a terminal when a target is a block device). */
  yes: boolean;
  /** Where progress and messages go; omit for silence. */
  out?: ProgressSink;
  /** Asks the user; returns true to go on. Only called when a target is a block device and !yes. */
  confirm?: (summary: string[]) => Promise<boolean>;
  chunkBytes?: number;
  /** Test hook: runs after writing and flushing, before read-back. */
  beforeVerify?: (targets: readonly string[]) => Promise<void>;
}

export interface FlashResult {
  imageSize: number;
  writtenBytes: number;
  bmapUsed: boolean;
  verified: boolean;
  seconds: number;
}

export async function flash(options: FlashOptions): Promise<FlashResult> {
  const started = Date.now();
  if (options.targets.length === 0) throw new PibakeError('no target named', { hint: 'add --device /dev/sdX (see `pibake devices`)' });
  const label = options.label ?? options.image;
  const image = await openImageFile(options.image, label);
  const bmap = options.bmap ? await readBmap(options.bmap) : undefined;
  const imageSize = await checkedImageSize(image, bmap, options.bmap);

  const facts = await gatherFacts(options.targets, options.image);
  const verdict = checkTargets(facts, imageSize, options);
  if (verdict.problems.length > 0) {
    throw PibakeError.fromProblems(`refusing to flash ${options.targets.join(', ')}`, verdict.problems);
  }
  await confirm(facts, options);
  if (verdict.unmount.length > 0) {
    say(options, `unmounting ${verdict.unmount.map((m) => m.mountpoint).join(', ')}`);
    await unmountAll(verdict.unmount);
  }

  const { ranges, checksumType, expected } = writePlan(bmap, imageSize);
  const writtenBytes = ranges.reduce((sum, r) => sum + (r.end - r.start), 0);
  say(options, `writing ${formatBytes(writtenBytes)} of ${formatBytes(imageSize)} from ${label}${bmap ? ` (bmap ${options.bmapLabel ?? options.bmap})` : ' (no bmap: whole image)'}`);

  const targets = await openTargets(facts, imageSize);
  try {
    const progress = new ProgressBoard(options.out, targets.map((t) => t.path));
    progress.begin('write', writtenBytes);
    const mismatches: Problem[] = [];
    const pieces = readPieces(image, ranges, options.chunkBytes ?? DEFAULT_CHUNK_BYTES, { unmappedMustBeZero: options.checkUnmapped });
    const digests = await writePieces(pieces, targets, {
      rangeCount: ranges.length,
      checksumType,
      progress,
      onRangeDigest: (i, digest) => {
        const want = expected?.[i];
        if (want && digest !== want.checksum) {
          mismatches.push({ message: `${label} does not match its bmap at ${want.label}`, hint: `the bmap ${options.bmapLabel ?? options.bmap} belongs to another build of the image; recreate it` });
        }
      },
    });
    progress.end();
    say(options, 'syncing');
    await Promise.all(targets.map(flushTarget));
    if (mismatches.length > 0) throw PibakeError.fromProblems('the image does not match its bmap', mismatches);
    if (!options.verify) return { imageSize, writtenBytes, bmapUsed: !!bmap, verified: false, seconds: (Date.now() - started) / 1000 };

    await options.beforeVerify?.(targets.map((t) => t.path));
    const ranged: ExpectedRange[] = expected ?? ranges.map((r, i) => ({ ...r, checksum: digests[i] ?? '' }));
    await verifyAll(targets, ranged, checksumType, options, writtenBytes);
    return { imageSize, writtenBytes, bmapUsed: !!bmap, verified: true, seconds: (Date.now() - started) / 1000 };
  } finally {
    await Promise.all(targets.map((t) => t.handle.close()));
  }
}

async function verifyAll(targets: readonly Pick<OpenTarget, 'path'>[], ranges: ExpectedRange[], checksumType: ChecksumType, options: Pick<FlashOptions, 'out' | 'chunkBytes'>, total: number): Promise<void> {
  const progress = new ProgressBoard(options.out, targets.map((t) => t.path));
  progress.begin('verify', total);
  const failures = (
    await Promise.all(targets.map((t, i) => verifyTarget(t.path, ranges, checksumType, { progress, progressIndex: i, chunkBytes: options.chunkBytes })))
  ).flat();
  progress.end();
  if (failures.length > 0) {
    throw PibakeError.fromProblems(
      'verification failed',
      failures.map((f) => ({
        message: `${f.target}: ${f.range.label} reads back differently from the image (${checksumType} ${f.actual.slice(0, 16)}…, expected ${f.range.checksum.slice(0, 16)}…)`,
        hint: 'the card is faulty, counterfeit or was removed; try another card',
      })),
    );
  }
  say(options, `verified ${targets.map((t) => t.path).join(', ')}: ${ranges.length} ranges match`);
}

/** What to write, and what each range must read back as (from the bmap when it has checksums). */
export function writePlan(bmap: Bmap | undefined, imageSize: number): { ranges: (ByteRange & { label: string })[]; checksumType: ChecksumType; expected?: ExpectedRange[] } {
  if (bmap) {
    const ranges = bmap.ranges.map((r) => ({ start: r.start, end: r.end, label: bmapRangeLabel(r) }));
    const withSums = bmap.checksumType !== undefined && bmap.ranges.every((r) => r.checksum);
    const expected = withSums ? ranges.map((r, i) => ({ ...r, checksum: bmap.ranges[i]?.checksum ?? '' })) : undefined;
    return { ranges, checksumType: bmap.checksumType ?? 'sha256', expected };
  }
  const ranges: (ByteRange & { label: string })[] = [];
  for (let start = 0; start < imageSize; start += UNMAPPED_VERIFY_RANGE_BYTES) {
    const end = Math.min(imageSize, start + UNMAPPED_VERIFY_RANGE_BYTES);
    ranges.push({ start, end, label: byteRangeLabel({ start, end }) });
  }
  return { ranges, checksumType: 'sha256' };
}

async function checkedImageSize(image: ImageFile, bmap: Bmap | undefined, bmapPath: string | undefined): Promise<number> {
  if (!bmap) return imageSizeOf(image);
  // A raw image is cheap to check against its bmap; a packed one is checked range by range while writing.
  if (image.format === 'raw') {
    const size = await imageSizeOf(image);
    if (size !== bmap.imageSize) {
      throw new PibakeError(`${image.label} is ${size} bytes but its bmap ${bmapPath} describes ${bmap.imageSize}`, {
        hint: 'the bmap belongs to another image; pass the right one with --bmap or recreate it',
      });
    }
  }
  return bmap.imageSize;
}

async function confirm(facts: readonly TargetFacts[], options: FlashOptions): Promise<void> {
  const disks = facts.filter((f): f is Extract<TargetFacts, { kind: 'block' }> => f.kind === 'block');
  if (disks.length === 0 || options.yes) return;
  const summary = disks.map((f) => {
    const d = f.device;
    return `${f.path}: ${d?.model ?? 'unknown model'}, ${formatBytes(d?.size ?? 0)}, serial ${d?.serial ?? 'unknown'}, ${d?.transport ?? 'unknown transport'}`;
  });
  if (!options.confirm) {
    throw new PibakeError(`refusing to erase ${disks.map((f) => f.path).join(', ')} without confirmation`, {
      hint: 'run it in a terminal to be asked, or pass --yes',
    });
  }
  if (!(await options.confirm(summary))) throw new PibakeError('flash cancelled; nothing was written');
}

function say(options: Pick<FlashOptions, 'out'>, line: string): void {
  options.out?.write(`${line}\n`);
}
