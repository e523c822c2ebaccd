/**
 * Intake of the base image: from a local .img / .img.xz / .img.zst / .zip or an https URL (with its
 * SHA-256) to a raw, sparse image in the cache, decompressed once and reused by every later build.
 * Streams end to end (memory stays bounded whatever the size), checks the input's SHA-256 while it
 * streams, and is atomic: an interrupted or failed intake leaves nothing in the cache.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { type Readable, pipeline as pipelineCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PibakeError } from '../common/errors.ts';
import { runTool } from '../common/exec.ts';
import { describeHolder, waitLockFolder } from '../common/lock.ts';
import { isNoSpace, noSpaceError } from '../common/no-space.ts';
import type { BaseImageSpec } from '../inventory/types.ts';
import { HashTap, sha256File } from '../package/checksums.ts';
import { decompressStream, filterThroughTool, readHeader, sniffFormat, type ContainerFormat } from '../package/compress.ts';
import {
  evict, imagePathFor, lookup, lookupByFile, markValidated, publish, releaseTemp, resolveCacheDir, sweepStaleTemps, tempPath, type CacheRecord,
} from './intake/cache.ts';
import { formatBytes } from '../common/bytes.ts';
import { ProgressLine } from './intake/progress.ts';
import { SparseFileWriter } from './intake/sparse-writer.ts';
import { describeSource, download, peek, type Source } from './intake/sources.ts';

export { resolveCacheDir } from './intake/cache.ts';

export interface ObtainBaseOptions {
  /** Cache folder; default $PIBAKE_CACHE_DIR, $XDG_CACHE_HOME/pibake or ~/.cache/pibake. */
  cacheDir?: string;
  /**
   * Checks the raw image before it enters the cache (e.g. openRaspiosImage); throwing rejects it.
   * `label` is how its errors must name the image: the file or URL the user gave, not the temp file.
   */
  validate?: (rawImagePath: string, label: string) => Promise<void>;
  /** Progress line on stderr; default: when stderr is a terminal. */
  progress?: boolean;
  /** Told when another pibake is filling the cache and this one waits for it; default: a line on stderr. */
  onWait?: (message: string) => void;
}

export interface BaseImage {
  /** The raw .img in the cache. Treat it as read-only: clone it (cloneImage) before editing. */
  path: string;
  /** SHA-256 of the raw image. */
  sha256: string;
}

const KINDS_HINT = 'give a Raspberry Pi OS .img, .img.xz, .img.zst or .zip';

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
  const progress = new ProgressLine(`pibake: unpacking ${source.label}`, (options.progress ?? process.stderr.isTTY === true) ? process.stderr : undefined);
  try {
    const result = await intake(source, temp, cacheDir, progress).catch(async (error: unknown) => {
      if (!isNoSpace(error)) throw error;
      const expected = await rawSizeOf(source).catch(() => undefined);
      const need = `unpacking ${source.label} needs ${expected === undefined ? `more than ${formatBytes(progress.bytesOut)}` : `up to ${formatBytes(expected)}`} ` +
        `(sparse: only its data; ${formatBytes(progress.bytesOut)} of the image were unpacked when it filled)`;
      throw await noSpaceError('the cache folder', cacheDir, need,
        'free space there, or put the cache on a filesystem with room: PIBAKE_CACHE_DIR=/path or --cache-dir /path');
    });
    progress.done();
    if (source.sha256 && result.inputSha256 !== source.sha256) {
      throw new PibakeError(`${source.label} has SHA-256 ${result.inputSha256}, expected ${source.sha256}`, {
        hint: 'the file is damaged or not the one you meant: download it again, or correct base.sha256',
      });
    }
    if (result.sizeBytes === 0) throw new PibakeError(`${source.label} contains an empty image`, { hint: KINDS_HINT });
    if (sniffFormat(await readHeader(temp)) !== 'raw') {
      throw new PibakeError(`${source.label} does not contain a disk image (no partition table)`, { hint: KINDS_HINT });
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
    progress.done();
    await releaseTemp(temp);
  }
}

interface IntakeResult {
  inputSha256: string;
  rawSha256: string;
  sizeBytes: number;
}

/** Stream the source into `temp` as a sparse raw image, hashing the input and the output on the way. */
async function intake(source: Source, temp: string, cacheDir: string, progress: ProgressLine): Promise<IntakeResult> {
  if (source.kind === 'file') {
    const format = sniffFormat(await readHeader(source.path));
    checkContentMatchesName(source.label, format);
    if (format === 'zip') return intakeZip(source.path, source.label, temp, progress, sha256File(source.path));
    progress.totalIn = source.identity.size;
    return intakeStream(createReadStream(source.path, { highWaterMark: 1 << 20 }), format, source.label, temp, progress);
  }
  const { body, length } = await download(source.url);
  const { header, stream } = await peek(body, 512);
  const format = sniffFormat(header);
  try {
    checkContentMatchesName(source.label, format);
  } catch (error) {
    stream.destroy();
    throw error;
  }
  progress.totalIn = length;
  if (format !== 'zip') return intakeStream(stream, format, source.label, temp, progress);
  // unzip needs random access (the directory is at the end): download first, hashing as it comes.
  const zipPath = tempPath(cacheDir, '.zip');
  try {
    const tap = new HashTap();
    await pipeline(stream, tap, createWriteStream(zipPath, { flags: 'wx', mode: 0o600 }));
    return await intakeZip(zipPath, source.label, temp, progress, Promise.resolve(tap.digest()));
  } finally {
    await releaseTemp(zipPath);
  }
}

async function intakeStream(
  input: Readable, format: Exclude<ContainerFormat, 'zip'> | undefined, label: string, temp: string, progress: ProgressLine,
): Promise<IntakeResult> {
  if (format === undefined) {
    input.destroy();
    throw new PibakeError(`${label} is not a disk image, .xz, .zst or .zip file`, { hint: KINDS_HINT });
  }
  const tap = new HashTap();
  const hashed = pipelineCallback(input, tap, () => {}) as unknown as Readable;
  const raw = format === 'raw' ? hashed : decompressStream(hashed, format, label);
  progress.bytesIn = () => tap.bytes;
  // A raw input is the raw image: its one SHA-256 serves as both (hashing 3 GB twice costs seconds).
  const result = await writeSparse(raw, temp, progress, format !== 'raw');
  return { inputSha256: tap.digest(), rawSha256: result.sha256 ?? tap.digest(), sizeBytes: result.bytes };
}

async function intakeZip(
  zipPath: string, label: string, temp: string, progress: ProgressLine, inputSha256: Promise<string>,
): Promise<IntakeResult> {
  // Whatever happens below, the hashing read must not be left rejecting unobserved.
  inputSha256.catch(() => {});
  let names: string[];
  try {
    names = (await runTool('unzip', ['-Z1', zipPath])).stdout.split('\n');
  } catch (error) {
    throw new PibakeError(`${label} is not a readable zip archive`, { hint: 'download it again', cause: error });
  }
  const images = names.filter((name) => /\.img$/i.test(name) && !name.endsWith('/'));
  const [entry] = images;
  if (!entry) {
    throw new PibakeError(`${label} contains no .img file`, { hint: 'give the zip that Raspberry Pi publishes, or the .img itself' });
  }
  if (images.length > 1) {
    const shown = images.slice(0, 5).join(', ') + (images.length > 5 ? ` and ${images.length - 5} more` : '');
    throw new PibakeError(`${label} holds ${images.length} images (${shown}); pibake will not guess which is the base`, {
      hint: 'unzip the one you mean and give that .img as the base',
    });
  }
  // unzip treats the name as a wildcard pattern: bracket its special characters to match it literally.
  const pattern = entry.replace(/[[\]*?\\]/g, '[$&]');
  const raw = filterThroughTool('unzip', ['-p', zipPath, pattern], undefined, (detail) =>
    new PibakeError(`${label} is truncated or corrupt (unzip: ${detail})`, { hint: 'download it again' }));
  const result = await writeSparse(raw, temp, progress);
  return { inputSha256: await inputSha256, rawSha256: result.sha256 as string, sizeBytes: result.bytes };
}

/** Write a raw image stream sparsely into a new file at `temp`, hashing it unless told not to. */
async function writeSparse(raw: Readable, temp: string, progress: ProgressLine, hash = true): Promise<{ sha256?: string; bytes: number }> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(temp, 'wx', 0o644);
    const writer = new SparseFileWriter(handle, (bytes) => progress.update(bytes), hash);
    await pipeline(raw, writer);
    return { sha256: hash ? writer.sha256() : undefined, bytes: writer.bytes };
  } catch (error) {
    raw.destroy();
    throw error;
  } finally {
    await handle?.close();
  }
}

/** What a file's name promises, by its last extension; undefined when the name promises nothing. */
function formatByName(name: string): ContainerFormat | undefined {
  const extension = /\.([a-z0-9]+)$/i.exec(name)?.[1]?.toLowerCase();
  switch (extension) {
    case 'xz': return 'xz';
    case 'zst': case 'zstd': return 'zstd';
    case 'zip': return 'zip';
    case 'img': case 'raw': return 'raw';
    default: return undefined;
  }
}

const FORMAT_NAMES: Record<ContainerFormat, string> = { xz: 'xz', zstd: 'zstd', zip: 'a zip archive', raw: 'a raw image' };
const FORMAT_EXTENSIONS: Record<ContainerFormat, string> = { xz: '.img.xz', zstd: '.img.zst', zip: '.zip', raw: '.img' };

/**
 * Content that does not match its name is refused and named ("m.img.xz is not xz: it is a raw
 * image"): it is a mix-up or a broken download, and guessing would hide which.
 */
function checkContentMatchesName(label: string, format: ContainerFormat | undefined): void {
  const promised = formatByName(label);
  if (promised === undefined || format === undefined || format === promised) return;
  const stem = label.replace(/(\.img)?\.[a-z0-9]+$/i, '');
  throw new PibakeError(`${label} is not ${FORMAT_NAMES[promised]}: it is ${FORMAT_NAMES[format]}`, {
    hint: `if that is what you meant, rename it to ${stem}${FORMAT_EXTENSIONS[format]}; otherwise download it again`,
  });
}

/** The raw image size the source unpacks to, when its container records it (for "needs up to N"). */
async function rawSizeOf(source: Source): Promise<number | undefined> {
  if (source.kind !== 'file') return undefined;
  const format = sniffFormat(await readHeader(source.path));
  if (format === 'raw') return source.identity.size;
  if (format === 'xz') {
    const totals = (await runTool('xz', ['--robot', '--list', '--', source.path])).stdout.split('\n').find((l) => l.startsWith('totals\t'));
    return totals ? Number(totals.split('\t')[4]) : undefined;
  }
  if (format === 'zstd') {
    const size = /Decompressed Size:.*\((\d+) B\)/.exec((await runTool('zstd', ['-lv', '--', source.path])).stdout)?.[1];
    return size ? Number(size) : undefined;
  }
  if (format === 'zip') {
    const sizes = (await runTool('unzip', ['-Zl', source.path])).stdout.split('\n').map((l) => /^\S+\s+\S+\s+\S+\s+(\d+)\s/.exec(l)?.[1]);
    return sizes.reduce((sum, n) => sum + Number(n ?? 0), 0) || undefined;
  }
  return undefined;
}
