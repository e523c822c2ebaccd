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
import type { BaseImageSpec } from '../inventory/types.ts';
import { HashTap, sha256File } from '../package/checksums.ts';
import { decompressStream, filterThroughTool, readHeader, sniffFormat, type ContainerFormat } from '../package/compress.ts';
import {
  imagePathFor, lookup, lookupByFile, publish, releaseTemp, resolveCacheDir, sweepStaleTemps, tempPath, type CacheRecord,
} from './intake/cache.ts';
import { ProgressLine } from './intake/progress.ts';
import { SparseFileWriter } from './intake/sparse-writer.ts';
import { describeSource, download, peek, type Source } from './intake/sources.ts';

export { resolveCacheDir } from './intake/cache.ts';

export interface ObtainBaseOptions {
  /** Cache folder; default $PIBAKE_CACHE_DIR, $XDG_CACHE_HOME/pibake or ~/.cache/pibake. */
  cacheDir?: string;
  /** Checks the raw image before it enters the cache (e.g. openRaspiosImage); throwing rejects it. */
  validate?: (rawImagePath: string) => Promise<void>;
  /** Progress line on stderr; default: when stderr is a terminal. */
  progress?: boolean;
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

  const known = source.sha256 ?? (source.kind === 'file' ? await lookupByFile(cacheDir, source.identity) : undefined);
  if (known) {
    const hit = await lookup(cacheDir, known);
    if (hit) return { path: imagePathFor(cacheDir, known), sha256: hit.rawSha256 };
  }

  const temp = tempPath(cacheDir, '.img');
  const progress = new ProgressLine(`pibake: unpacking ${source.label}`, options.progress ?? process.stderr.isTTY === true);
  try {
    const result = await intake(source, temp, cacheDir, progress);
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
    if (options.validate) await options.validate(temp);
    const record: CacheRecord = {
      inputSha256: result.inputSha256,
      rawSha256: result.rawSha256,
      sizeBytes: result.sizeBytes,
      files: source.kind === 'file' ? [source.identity] : [],
      ...(source.kind === 'url' ? { url: source.url.href } : {}),
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
    if (format === 'zip') return intakeZip(source.path, source.label, temp, progress, sha256File(source.path));
    progress.totalIn = source.identity.size;
    return intakeStream(createReadStream(source.path, { highWaterMark: 1 << 20 }), format, source.label, temp, progress);
  }
  const { body, length } = await download(source.url);
  const { header, stream } = await peek(body, 512);
  const format = sniffFormat(header);
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
  const result = await writeSparse(raw, temp, progress);
  return { inputSha256: tap.digest(), rawSha256: result.sha256, sizeBytes: result.bytes };
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
  const entry = names.find((name) => /\.img$/i.test(name) && !name.endsWith('/'));
  if (!entry) {
    throw new PibakeError(`${label} contains no .img file`, { hint: 'give the zip that Raspberry Pi publishes, or the .img itself' });
  }
  // unzip treats the name as a wildcard pattern: bracket its special characters to match it literally.
  const pattern = entry.replace(/[[\]*?\\]/g, '[$&]');
  const raw = filterThroughTool('unzip', ['-p', zipPath, pattern], undefined, (detail) =>
    new PibakeError(`${label} is truncated or corrupt (unzip: ${detail})`, { hint: 'download it again' }));
  const result = await writeSparse(raw, temp, progress);
  return { inputSha256: await inputSha256, rawSha256: result.sha256, sizeBytes: result.bytes };
}

/** Write a raw image stream sparsely into a new file at `temp`. */
async function writeSparse(raw: Readable, temp: string, progress: ProgressLine): Promise<{ sha256: string; bytes: number }> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(temp, 'wx', 0o644);
    const writer = new SparseFileWriter(handle, (bytes) => progress.update(bytes));
    await pipeline(raw, writer);
    return { sha256: writer.sha256(), bytes: writer.bytes };
  } catch (error) {
    raw.destroy();
    throw error;
  } finally {
    await handle?.close();
  }
}
