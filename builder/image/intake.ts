/**
 * Intake of the base image: from a local .img / .img.xz / .img.zst / .zip or an https URL (with its
 * SHA-256) to a raw, sparse image in the cache, decompressed once and reused by every later build.
 * Streams end to end (memory stays bounded whatever the size), checks the input's SHA-256 while it
 * streams, and is atomic: an interrupted or failed intake leaves nothing in the cache.
 */
import { IMAGE_KINDS_HINT, readHeader, sniffFormat } from '../bytes/formats.ts';
import { openImageFile, openImageUrl, readRaw, recordedRawSize, writeSparse } from '../bytes/open.ts';
import { PibakeError } from '../common/errors.ts';
import { describeHolder, waitLockFolder } from '../common/lock.ts';
import { isNoSpace, noSpaceError } from '../common/no-space.ts';
import type { BaseImageSpec } from '../common/base-image.ts';
import {
  evict, imagePathFor, lookup, lookupByFile, markValidated, publish, releaseTemp, resolveCacheDir, sweepStaleTemps, tempPath, type CacheRecord,
} from './intake/cache.ts';
import { formatBytes } from '../common/bytes.ts';
import { describeSource, type Source } from './intake/sources.ts';

export { resolveCacheDir } from './intake/cache.ts';

export interface ObtainBaseOptions {
  /** Cache folder; default $PIBAKE_CACHE_DIR, $XDG_CACHE_HOME/pibake or ~/.cache/pibake. */
  cacheDir?: string;
  /**
   * Checks the raw image before it enters the cache (e.g. openRaspiosImage); throwing rejects it.
   * `label` is how its errors must name the image: the file or URL the user gave, not the temp file.
   */
  validate?: (rawImagePath: string, label: string) => Promise<void>;
  /**
   * Told how far an unpacking into the cache has come, after every chunk written (the receiver
   * throttles), and once more with `done` when the image is whole. A cache hit reports nothing.
   */
  onProgress?: (progress: UnpackProgress) => void;
  /** Told when another pibake is filling the cache and this one waits for it; default: a line on stderr. */
  onWait?: (message: string) => void;
}

/** How far an unpacking has come. */
export interface UnpackProgress {
  /** Input bytes read (from the file, or downloaded) so far. */
  read: number;
  /** The input's size, when known (a file; a download that announced its length). */
  total?: number;
  /** Raw image bytes written so far. */
  written: number;
  /** Seconds since the unpacking started. */
  seconds: number;
  /** The last report: the image is unpacked whole (its checks follow). */
  done: boolean;
}

export interface BaseImage {
  /** The raw .img in the cache. Treat it as read-only: clone it (cloneImage) before editing. */
  path: string;
  /** SHA-256 of the raw image. */
  sha256: string;
}

export async function obtainBase(spec: BaseImageSpec, options: ObtainBaseOptions = {}): Promise<BaseImage> {
  const source = await describeSource(spec);
  const cacheDir = resolveCacheDir(options.cacheDir);
  await sweepStaleTemps(cacheDir);
  const hit = await cached(source, cacheDir, options);
  if (hit) return hit;

  // One filler at a time: a second build of the same base waits and then finds it cached.
  const onWait = options.onWait ?? ((message: string) => process.stderr.write(`${message}\n`));
  const lock = await waitLockFolder(cacheDir, (holder) =>
    onWait(`pibake: waiting for ${describeHolder(holder)} to finish filling the base cache ${cacheDir}`));
  try {
    return (await cached(source, cacheDir, options)) ?? (await fill(source, cacheDir, options));
  } finally {
    await lock.release();
  }
}

/**
 * The cache entry for the source, when one is complete (for a file: same file unchanged, or same
 * SHA-256). An entry cached without validation (by an older pibake) is validated once now; one that
 * fails is dropped from the cache, so a damaged base cached in the past cannot become a card either.
 */
async function cached(source: Source, cacheDir: string, options: ObtainBaseOptions): Promise<BaseImage | undefined> {
  const known = source.sha256 ?? (source.kind === 'file' ? await lookupByFile(cacheDir, source.identity) : undefined);
  if (!known) return undefined;
  const hit = await lookup(cacheDir, known);
  if (!hit) return undefined;
  const image = { path: imagePathFor(cacheDir, known), sha256: hit.rawSha256 };
  if (options.validate && !hit.validated) {
    try {
      await options.validate(image.path, source.label);
    } catch (error) {
      await evict(cacheDir, known);
      throw error;
    }
    await markValidated(cacheDir, hit);
  }
  return image;
}

async function fill(source: Source, cacheDir: string, options: ObtainBaseOptions): Promise<BaseImage> {
  const temp = tempPath(cacheDir, '.img');
  const progress = { started: Date.now(), written: 0 };
  try {
    const result = await intake(source, temp, cacheDir, progress, options.onProgress).catch(async (error: unknown) => {
      if (!isNoSpace(error)) throw error;
      const expected = await rawSizeOf(source).catch(() => undefined);
      const need = `unpacking ${source.label} needs ${expected === undefined ? `more than ${formatBytes(progress.written)}` : `up to ${formatBytes(expected)}`} ` +
        `(sparse: only its data; ${formatBytes(progress.written)} of the image were unpacked when it filled)`;
      throw await noSpaceError('the cache folder', cacheDir, need,
        'free space there, or put the cache on a filesystem with room: PIBAKE_CACHE_DIR=/path or --cache-dir /path');
    });
    if (source.sha256 && result.inputSha256 !== source.sha256) {
      throw new PibakeError(`${source.label} has SHA-256 ${result.inputSha256}, expected ${source.sha256}`, {
        hint: 'the file is damaged or not the one you meant: download it again, or correct the SHA-256 given for it (base.sha256, or --base-sha256)',
      });
    }
    if (result.sizeBytes === 0) throw new PibakeError(`${source.label} contains an empty image`, { hint: IMAGE_KINDS_HINT });
    if (sniffFormat(await readHeader(temp)) !== 'raw') {
      throw new PibakeError(`${source.label} does not contain a disk image (no partition table)`, { hint: IMAGE_KINDS_HINT });
    }
    if (options.validate) await options.validate(temp, source.label);
    const record: CacheRecord = {
      inputSha256: result.inputSha256,
      rawSha256: result.rawSha256,
      sizeBytes: result.sizeBytes,
      files: source.kind === 'file' ? [source.identity] : [],
      ...(source.kind === 'url' ? { url: source.url.href } : {}),
      validated: options.validate !== undefined,
    };
    await publish(cacheDir, temp, record);
    const published = await lookup(cacheDir, result.inputSha256);
    return { path: imagePathFor(cacheDir, result.inputSha256), sha256: published?.rawSha256 ?? result.rawSha256 };
  } finally {
    await releaseTemp(temp);
  }
}

interface IntakeResult {
  inputSha256: string;
  rawSha256: string;
  sizeBytes: number;
}

/**
 * Stream the source into `temp` as a sparse raw image, hashing the input and the output on the way;
 * `progress.written` follows the bytes written (for the no-space message), `report` hears them too.
 */
async function intake(
  source: Source, temp: string, cacheDir: string, progress: { started: number; written: number }, report?: (progress: UnpackProgress) => void,
): Promise<IntakeResult> {
  const input = source.kind === 'file' ? await openImageFile(source.path, source.label) : await openImageUrl(source.url, source.label);
  // A downloaded zip is kept in the cache folder while unzip reads it.
  const spillPath = input.kind === 'download' && input.format === 'zip' ? tempPath(cacheDir, '.zip') : undefined;
  try {
    const raw = await readRaw(input, { hashInput: true, spillPath });
    // Once the image is whole its input was read to the end (a zip's reading is not counted on the way).
    const tell = (done: boolean) => report?.({
      read: done && input.size !== undefined ? input.size : raw.inputBytes(),
      ...(input.size === undefined ? {} : { total: input.size }),
      written: progress.written,
      seconds: (Date.now() - progress.started) / 1000,
      done,
    });
    const onProgress = (bytes: number) => {
      progress.written = bytes;
      tell(false);
    };
    // A raw input is the raw image: its one SHA-256 serves as both (hashing 3 GB twice costs seconds).
    const unpacked = await writeSparse(raw.stream, temp, { hash: input.format !== 'raw', mode: 0o644, onProgress });
    progress.written = unpacked.bytes;
    tell(true);
    const inputSha256 = await raw.inputSha256();
    return { inputSha256, rawSha256: unpacked.sha256 ?? inputSha256, sizeBytes: unpacked.bytes };
  } finally {
    if (spillPath) await releaseTemp(spillPath);
  }
}

/** The raw image size the source unpacks to, when its container records it (for "needs up to N"). */
async function rawSizeOf(source: Source): Promise<number | undefined> {
  return source.kind === 'file' ? recordedRawSize(await openImageFile(source.path, source.label)) : undefined;
}
