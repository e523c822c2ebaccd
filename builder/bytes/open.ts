/**
 * The one way pibake reads an image, whoever asks (intake, flash, seal, inspect): a local file or
 * an https download, recognised by its magic bytes (its name must agree, see checkFormat), then
 * unpacked by the format's program: xz, zstd or unzip, or read as it is when raw. Every stage that
 * accepts an image therefore accepts the same ones and refuses the same ones, with the same words.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { type Readable, pipeline as pipelineCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PibakeError } from '../common/errors.ts';
import { runTool } from '../common/exec.ts';
import { HashTap, sha256File } from './checksums.ts';
import { download, peek } from './download.ts';
import { checkFormat, IMAGE_KINDS_HINT, readHeader, type ImageFormat } from './formats.ts';
import { SparseFileWriter } from './sparse-writer.ts';
import { decompressStream, filterThroughTool } from './tool-stream.ts';

/** An image file, recognised. */
export interface ImageFile {
  kind: 'file';
  path: string;
  /** How messages name it: the name the user gave. */
  label: string;
  format: ImageFormat;
  /** Bytes of the file (compressed when compressed). */
  size: number;
}

/** An image being downloaded, recognised by its first bytes (which `body` still yields). */
export interface ImageDownload {
  kind: 'download';
  url: URL;
  label: string;
  format: ImageFormat;
  /** Content-Length, when the server announced it. */
  size?: number;
  body: Readable;
}

export type ImageInput = ImageFile | ImageDownload;

/** Recognise the image file at `path`; `label` names it in messages (default: its file name). */
export async function openImageFile(path: string, label = basename(path)): Promise<ImageFile> {
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new PibakeError(`image ${label} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`, { hint: IMAGE_KINDS_HINT, cause: error });
  }
  if (!info.isFile()) throw new PibakeError(`image ${label} is not a regular file`, { hint: IMAGE_KINDS_HINT });
  return { kind: 'file', path, label, format: checkFormat(label, await readHeader(path)), size: info.size };
}

/** Start downloading `url` and recognise what it is from its first bytes. */
export async function openImageUrl(url: URL, label = basename(url.pathname) || url.host): Promise<ImageDownload> {
  const { body, length } = await download(url);
  const { header, stream } = await peek(body, 512);
  try {
    return { kind: 'download', url, label, format: checkFormat(label, header), size: length, body: stream };
  } catch (error) {
    stream.destroy();
    throw error;
  }
}

export interface RawBytes {
  /** The raw disk image. It ends only after the unpacking program exited 0; destroying it stops the program. */
  stream: Readable;
  /** Bytes of the input consumed so far (for progress against the input's size). */
  inputBytes: () => number;
  /** SHA-256 of the input (the compressed file when compressed), once `stream` has ended; with `hashInput` only. */
  inputSha256: () => Promise<string>;
}

export interface ReadRawOptions {
  /** Hash the input as it is read (intake checks it against base.sha256 and keys its cache by it). */
  hashInput?: boolean;
  /**
   * A new file path where a downloaded zip is kept while unzip reads it (its directory is at the
   * end, so it needs the whole file). The caller removes it once `stream` has ended.
   */
  spillPath?: string;
}

/** The raw bytes of an image, unpacked on the way when it is compressed or zipped. */
export async function readRaw(input: ImageInput, options: ReadRawOptions = {}): Promise<RawBytes> {
  if (input.format === 'zip') {
    let path: string;
    let sha: Promise<string> | undefined;
    if (input.kind === 'file') {
      path = input.path;
      sha = options.hashInput ? sha256File(path) : undefined;
      // Whatever happens below, the hashing read must not be left rejecting unobserved.
      sha?.catch(() => {});
    } else {
      const spilled = await spill(input, options.spillPath);
      path = spilled.path;
      sha = Promise.resolve(spilled.sha256);
    }
    const stream = await unzipImage(path, input.label);
    return { stream, inputBytes: () => 0, inputSha256: () => sha ?? noHash() };
  }
  const source = input.kind === 'file' ? createReadStream(input.path, { highWaterMark: 1 << 20 }) : input.body;
  // Counts (and, when asked, hashes) what passes: a 'data' listener instead would start the flow before a reader is attached.
  const tap = new HashTap(options.hashInput ?? false);
  const counted = pipelineCallback(source, tap, () => {}) as unknown as Readable;
  const stream = input.format === 'raw' ? counted : decompressStream(counted, input.format, input.label);
  return {
    stream,
    inputBytes: () => tap.bytes,
    inputSha256: () => (options.hashInput ? Promise.resolve(tap.digest()) : noHash()),
  };
}

function noHash(): Promise<string> {
  return Promise.reject(new Error('readRaw was not asked to hash the input'));
}

/** Download a zip into `path` (hashing it on the way) so unzip can read it. */
async function spill(input: ImageDownload, path: string | undefined): Promise<{ path: string; sha256: string }> {
  if (!path) {
    input.body.destroy();
    throw new PibakeError(`${input.label} is a zip archive, which cannot be read while it downloads`, { hint: 'download it first and give the file' });
  }
  const tap = new HashTap();
  await pipeline(input.body, tap, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
  return { path, sha256: tap.digest() };
}

/** The one .img inside a zip, as a stream; a zip with none or several is refused (pibake does not guess). */
async function unzipImage(zipPath: string, label: string): Promise<Readable> {
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
  return filterThroughTool('unzip', ['-p', zipPath, pattern], undefined, (detail) =>
    new PibakeError(`${label} is truncated or corrupt (unzip: ${detail})`, { hint: 'download it again' }));
}

/**
 * The raw image size an image file unpacks to, as its container records it; undefined when it
 * does not (a zstd stream compressed from a pipe records none).
 */
export async function recordedRawSize(file: ImageFile): Promise<number | undefined> {
  switch (file.format) {
    case 'raw':
      return file.size;
    case 'xz': {
      const totals = (await runTool('xz', ['--robot', '--list', '--', file.path])).stdout.split('\n').find((l) => l.startsWith('totals\t'));
      const size = totals ? Number(totals.split('\t')[4]) : NaN;
      return Number.isFinite(size) ? size : undefined;
    }
    case 'zstd': {
      const { stdout } = await runTool('zstd', ['-lv', '--', file.path], { reject: false });
      const size = /Decompressed Size:.*\((\d+) B\)/.exec(String(stdout))?.[1];
      return size ? Number(size) : undefined;
    }
    case 'zip': {
      const sizes = (await runTool('unzip', ['-Zl', file.path])).stdout.split('\n')
        .filter((l) => /\.img$/i.test(l)).map((l) => /^\S+\s+\S+\s+\S+\s+(\d+)\s/.exec(l)?.[1]);
      return sizes.length === 1 ? Number(sizes[0]) : undefined;
    }
  }
}

/** The raw image size of an image file: as recorded, else counted by unpacking it once. */
export async function rawSizeOf(file: ImageFile): Promise<number> {
  const recorded = await recordedRawSize(file);
  if (recorded !== undefined) return recorded;
  let size = 0;
  for await (const chunk of (await readRaw(file)).stream) size += (chunk as Buffer).length;
  return size;
}

export interface Unpacked {
  /** Bytes of the raw image written. */
  bytes: number;
  /** SHA-256 of the raw image, unless told not to hash. */
  sha256?: string;
}

/**
 * Write a raw image stream into the new file `target` (created, never overwritten), all-zero
 * 4 KiB blocks left as holes, hashing it unless told not to. `mode` defaults to owner-only: an
 * image may hold a node's secrets.
 */
export async function writeSparse(
  raw: Readable, target: string, options: { hash?: boolean; mode?: number; onProgress?: (bytes: number) => void } = {},
): Promise<Unpacked> {
  const hash = options.hash ?? true;
  let handle: FileHandle | undefined;
  try {
    handle = await open(target, 'wx', options.mode ?? 0o600);
    const writer = new SparseFileWriter(handle, options.onProgress, hash);
    await pipeline(raw, writer);
    return { bytes: writer.bytes, ...(hash ? { sha256: writer.sha256() } : {}) };
  } catch (error) {
    raw.destroy();
    throw error;
  } finally {
    await handle?.close();
  }
}

/**
 * A raw, sparse copy of any image file in the new file `target`: for the readers that need random
 * access (debugfs, mtools) to an image given compressed. A failure removes `target`.
 */
export async function unpackImageFile(file: ImageFile, target: string, options: { mode?: number } = {}): Promise<Unpacked> {
  try {
    const result = await writeSparse((await readRaw(file)).stream, target, { hash: false, mode: options.mode });
    if (result.bytes === 0) throw new PibakeError(`${file.label} contains an empty image`, { hint: IMAGE_KINDS_HINT });
    return result;
  } catch (error) {
    await rm(target, { force: true });
    throw error;
  }
}
