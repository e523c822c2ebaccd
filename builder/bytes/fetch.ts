/**
 * An image named by an https URL, made a local file before anything reads it (flash needs random
 * access and several passes; inspect hands it to debugfs and mtools). It is recognised by its first
 * bytes as it arrives (open.ts: a page that is no image stops the download at once), streamed to a
 * temp name (memory stays bounded), checked against the SHA-256 the operator gave, and only then
 * renamed to its own name, in a private folder that is itself work in progress (`.partial`): a
 * failure, Ctrl-C or exit removes it, a SIGKILL leaves it for the next run's sweep, and nothing in
 * the cache ever looks like a finished download. Files published beside the image (its bmap,
 * manifest.json) are fetched into the same folder under their own names when the server has them,
 * so every rule that looks beside a local image works unchanged.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { forgetOnExit, removeOnExit } from '../common/cleanup.ts';
import { formatBytes } from '../common/bytes.ts';
import { PibakeError } from '../common/errors.ts';
import { isNoSpace, noSpaceError } from '../common/no-space.ts';
import { imageAddressIssue, isAddress, sha256Issue } from './address.ts';
import { HashTap } from './checksums.ts';
import { downloadIfPublished } from './download.ts';
import { openImageUrl } from './open.ts';
import { siblingTempPath } from './temp-name.ts';

/**
 * `text` as an image URL when it is one (scheme://…), undefined when it is a path. Only https is
 * accepted (address.ts): anything else is refused here, before a byte moves. `what` names the argument in messages.
 */
export function imageUrlOf(text: string, what = 'image'): URL | undefined {
  if (!isAddress(text)) return undefined;
  const issue = imageAddressIssue(text, what);
  if (issue) throw new PibakeError(issue.message, { hint: issue.hint });
  return new URL(text);
}

/** A SHA-256 given on the command line, normalised; refused unless it is 64 hex digits. */
export function checkSha256(text: string, option = '--sha256'): string {
  const issue = sha256Issue(text, option);
  if (issue) throw new PibakeError(issue.message, { hint: issue.hint });
  return text.trim().toLowerCase();
}

/** Companion files are small (a bmap, a manifest); a server sending more is refused rather than filling the disk. */
const MAX_BESIDE_BYTES = 64 * 1024 * 1024;

export interface FetchOptions {
  /** The SHA-256 the downloaded file must have. */
  sha256: string;
  /** Folder the private download folder is made in (pibake's cache). */
  folder: string;
  /** Names of files published beside the image to fetch along when present (a 404 means absent). */
  beside?: readonly string[];
  /** Told the announced size (when known) before the body arrives, and the bytes received so far. */
  onStart?: (label: string, totalBytes: number | undefined) => void;
  onProgress?: (bytes: number) => void;
}

/**
 * Run `fn` on the verified local copy of the image at `url` (named as the URL names it, with the
 * files fetched beside it); the copy and its folder are removed whatever happens.
 */
export async function withFetchedImage<T>(url: URL, options: FetchOptions, fn: (path: string) => Promise<T>): Promise<T> {
  const dir = siblingTempPath(join(options.folder, 'fetch'));
  removeOnExit(dir);
  try {
    await mkdir(options.folder, { recursive: true });
    await mkdir(dir, { mode: 0o700 });
    const path = join(dir, urlFileName(url));
    await fetchImage(url, path, options);
    for (const name of options.beside ?? []) await fetchBeside(new URL(name, url), join(dir, name));
    return await fn(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
    forgetOnExit(dir);
  }
}

/**
 * The file name the URL gives the image: its last path segment as written (still percent-encoded,
 * as the names fetched beside it are), or `image` when it gives none.
 */
export function urlFileName(url: URL): string {
  const name = url.pathname.slice(url.pathname.lastIndexOf('/') + 1);
  return name === '' || name.startsWith('.') ? 'image' : name;
}

/** Download the image to `path` by way of a temp name; renamed only once its SHA-256 is the expected one. */
async function fetchImage(url: URL, path: string, options: FetchOptions): Promise<void> {
  const input = await openImageUrl(url);
  options.onStart?.(input.label, input.size);
  const temp = siblingTempPath(path);
  const tap = new HashTap();
  const report = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      options.onProgress?.(tap.bytes);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(input.body, tap, report, createWriteStream(temp, { flags: 'wx', mode: 0o600 }));
    const actual = tap.digest();
    if (actual !== options.sha256) {
      throw new PibakeError(`${url.href} has SHA-256 ${actual}, expected ${options.sha256}`, {
        hint: 'the download is damaged or is not the file you meant: check the URL and the digest (from the release\'s SHA256SUMS), then try again',
      });
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    if (!isNoSpace(error)) throw error;
    const need = input.size === undefined ? `downloading ${input.label} needs more than ${formatBytes(tap.bytes)}` : `downloading ${input.label} needs ${formatBytes(input.size)}`;
    throw await noSpaceError('the cache folder', options.folder, need,
      'free space there, or put the cache on a filesystem with room: PIBAKE_CACHE_DIR=/path');
  }
}

/**
 * A small file beside the image, when the server gives it: any 4xx means it is not there for us (not
 * published, or not readable with the image's own URL, as a signed one), and flash goes without it:
 * these files make flashing faster or say how to seal, never what the card holds.
 */
async function fetchBeside(url: URL, path: string): Promise<void> {
  const published = await downloadIfPublished(url);
  if (!published) return;
  let bytes = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      bytes += chunk.length;
      if (bytes > MAX_BESIDE_BYTES) callback(new PibakeError(`${url.href} is larger than ${MAX_BESIDE_BYTES >> 20} MiB`, { hint: 'it is not the small file published beside an image; check the release folder' }));
      else callback(null, chunk);
    },
  });
  await pipeline(published.body, limit, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
}
