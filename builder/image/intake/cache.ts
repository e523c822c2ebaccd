/**
 * The base-image cache: decompressed images keyed by the SHA-256 of the file the user gave
 * (`base-<sha>.img`), each with a `base-<sha>.json` record (raw image SHA-256, size, where it came
 * from). Writers use temp names (`.intake….<pid>-….partial`, bytes/temp-name.ts) in the same folder and rename when complete, so a
 * cache entry is always whole; temps of dead processes are swept at the next start, and a Ctrl-C
 * or exit removes the temps of the running one.
 */
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { forgetOnExit, removeOnExit } from '../../common/cleanup.ts';
import { isAlive, partialOwner, siblingTempPath } from '../../bytes/temp-name.ts';

export interface CacheRecord {
  /** SHA-256 of the input file (compressed file when compressed): the cache key. */
  inputSha256: string;
  /** SHA-256 of the raw image. */
  rawSha256: string;
  sizeBytes: number;
  /** Local files this entry was made from, so a later call with the same unchanged file hits without re-hashing. */
  files: FileIdentity[];
  url?: string;
  /**
   * The image passed the caller's validation (both filesystems checked whole) when it was cached.
   * Entries cached without it (older pibake, or no validator) are validated on their next use.
   */
  validated?: boolean;
}

/** What identifies an unchanged local file without reading it (the way make and git do). */
export interface FileIdentity {
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

/** `$PIBAKE_CACHE_DIR`, else `$XDG_CACHE_HOME/pibake`, else `~/.cache/pibake`; an explicit option wins. */
export function resolveCacheDir(option?: string): string {
  if (option) return option;
  if (process.env.PIBAKE_CACHE_DIR) return process.env.PIBAKE_CACHE_DIR;
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache'), 'pibake');
}

export function imagePathFor(cacheDir: string, inputSha256: string): string {
  return join(cacheDir, `base-${inputSha256}.img`);
}

function recordPathFor(cacheDir: string, inputSha256: string): string {
  return join(cacheDir, `base-${inputSha256}.json`);
}

/** The cache entry for `inputSha256`, if complete. */
export async function lookup(cacheDir: string, inputSha256: string): Promise<CacheRecord | undefined> {
  try {
    const record = JSON.parse(await readFile(recordPathFor(cacheDir, inputSha256), 'utf8')) as CacheRecord;
    const image = await stat(imagePathFor(cacheDir, inputSha256));
    if (record.inputSha256 !== inputSha256 || image.size !== record.sizeBytes) return undefined;
    return record;
  } catch {
    return undefined;
  }
}

/** The input SHA-256 a previous intake recorded for this very (unchanged) file, if any. */
export async function lookupByFile(cacheDir: string, file: FileIdentity): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(cacheDir);
  } catch {
    return undefined;
  }
  for (const name of names) {
    if (!/^base-[0-9a-f]{64}\.json$/.test(name)) continue;
    try {
      const record = JSON.parse(await readFile(join(cacheDir, name), 'utf8')) as CacheRecord;
      if (record.files.some((f) => sameFile(f, file))) return record.inputSha256;
    } catch {
      // unreadable record: ignore, the entry will be rebuilt
    }
  }
  return undefined;
}

function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.path === b.path && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
}

/**
 * Publish a finished image: record first, image last (renames are atomic), so a present image
 * always has its record. If the entry exists already (same input), the temp image is dropped.
 */
export async function publish(cacheDir: string, tempImage: string, record: CacheRecord): Promise<void> {
  const existing = await lookup(cacheDir, record.inputSha256);
  const merged: CacheRecord = existing
    ? { ...existing, files: mergeFiles(existing.files, record.files), url: existing.url ?? record.url, validated: existing.validated || record.validated }
    : record;
  await writeRecord(cacheDir, merged);
  if (existing) await rm(tempImage, { force: true });
  else await rename(tempImage, imagePathFor(cacheDir, record.inputSha256));
}

/** Note that a cached image has passed validation since it was cached. */
export async function markValidated(cacheDir: string, record: CacheRecord): Promise<void> {
  await writeRecord(cacheDir, { ...record, validated: true });
}

/** Drop a cache entry (image first: an image without its record is never used, a record without its image neither). */
export async function evict(cacheDir: string, inputSha256: string): Promise<void> {
  await rm(imagePathFor(cacheDir, inputSha256), { force: true });
  await rm(recordPathFor(cacheDir, inputSha256), { force: true });
}

async function writeRecord(cacheDir: string, merged: CacheRecord): Promise<void> {
  const tempRecord = tempPath(cacheDir, '.json');
  await writeFile(tempRecord, `${JSON.stringify(merged, null, 2)}\n`);
  try {
    await rename(tempRecord, recordPathFor(cacheDir, merged.inputSha256));
  } catch (error) {
    await rm(tempRecord, { force: true });
    throw error;
  } finally {
    forgetOnExit(tempRecord);
  }
}

function mergeFiles(a: FileIdentity[], b: FileIdentity[]): FileIdentity[] {
  const kept = a.filter((f) => !b.some((g) => g.path === f.path));
  return [...kept, ...b];
}

/** A fresh temp name in the cache folder (`.intake<suffix>.<pid>-<hex>.partial`), removed on Ctrl-C/exit until released. */
export function tempPath(cacheDir: string, suffix: string): string {
  const path = siblingTempPath(join(cacheDir, `intake${suffix}`));
  removeOnExit(path);
  return path;
}

/** Remove a temp file (if still there) and stop tracking it. */
export async function releaseTemp(path: string): Promise<void> {
  await rm(path, { force: true });
  forgetOnExit(path);
}

/**
 * Delete temp files and staging folders left by pibake processes that no longer run (killed,
 * crashed, power loss). Only dead processes' entries: other builds may be using the cache.
 */
export async function sweepStaleTemps(cacheDir: string): Promise<void> {
  await mkdir(cacheDir, { recursive: true });
  for (const name of await readdir(cacheDir)) {
    // `.tmp-<pid>-…`: the temp names of pibake before 0.2.
    const owner = /^\.tmp-(\d+)-/.exec(name)?.[1] ?? partialOwner(name);
    if (owner !== undefined && !isAlive(Number(owner))) await rm(join(cacheDir, name), { force: true, recursive: true });
  }
}
