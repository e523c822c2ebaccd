/**
 * An image the operator names by path or by https URL, for the commands that need it as a local
 * file (flash, inspect). A URL needs the file's SHA-256, as the build's base.url does: the digest
 * must come from somewhere the operator trusts (the CI job's log, the release notes), because a
 * SHA256SUMS fetched from the same server vouches for nothing that server could not also forge.
 * The download goes into pibake's cache folder (bytes/fetch.ts), is checked before anything reads
 * it, and is removed afterwards; a local file given with a SHA-256 is checked the same way.
 */
import { checkSha256, imageUrlOf, urlFileName, withFetchedImage } from '../bytes/fetch.ts';
import { sha256File } from '../bytes/checksums.ts';
import { PibakeError } from '../common/errors.ts';
import { ProgressBoard, type ProgressSink } from '../common/progress.ts';
import { resolveCacheDir, sweepStaleTemps } from './intake/cache.ts';

export interface LocateOptions {
  /** The expected SHA-256 (64 hex digits); required for a URL, checked for a file when given. */
  sha256?: string;
  /** How the option is spelled in messages (default --sha256). */
  shaOption?: string;
  /** Names of files published beside a URL's image to fetch along when present (its bmap, manifest.json). */
  beside?: (imageName: string) => string[];
  /** Cache folder; default as for intake ($PIBAKE_CACHE_DIR, …). */
  cacheDir?: string;
  /** Where download progress goes (the flash progress sink); omit for silence. */
  progress?: ProgressSink;
}

/**
 * Run `fn` with a local, checked file of the image `pathOrUrl`: the file itself, or the verified
 * download of the URL (removed when `fn` is done or fails).
 */
export async function withLocalImage<T>(pathOrUrl: string, options: LocateOptions, fn: (path: string) => Promise<T>): Promise<T> {
  const option = options.shaOption ?? '--sha256';
  const sha256 = options.sha256 === undefined ? undefined : checkSha256(options.sha256, option);
  const url = imageUrlOf(pathOrUrl);
  if (!url) {
    if (sha256 !== undefined) await checkFileSha256(pathOrUrl, sha256);
    return fn(pathOrUrl);
  }
  if (sha256 === undefined) {
    throw new PibakeError(`${url.href} is given without its SHA-256`, {
      hint: `add ${option} with the digest the release's SHA256SUMS lists for it, taken from a source you trust (the CI log, the release notes); pibake writes no unchecked download to a card`,
    });
  }
  const folder = resolveCacheDir(options.cacheDir);
  await sweepStaleTemps(folder);
  const board = new ProgressBoard(options.progress, [url.href]);
  let reported = 0;
  return withFetchedImage(url, {
    sha256,
    folder,
    beside: options.beside?.(urlFileName(url)) ?? [],
    onStart: (_label, total) => board.begin('download', total),
    onProgress: (bytes) => {
      board.advance(0, bytes - reported);
      reported = bytes;
    },
  }, async (path) => {
    board.end();
    return fn(path);
  });
}

async function checkFileSha256(path: string, sha256: string): Promise<void> {
  let actual: string;
  try {
    actual = await sha256File(path);
  } catch (error) {
    throw new PibakeError(`image ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, { hint: 'check the path', cause: error });
  }
  if (actual !== sha256) {
    throw new PibakeError(`${path} has SHA-256 ${actual}, expected ${sha256}`, {
      hint: 'the file is damaged or is not the one you meant: download it again, or correct the digest',
    });
  }
}
