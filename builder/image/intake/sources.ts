/**
 * Where a base image comes from: a local file or an https URL. The spec's own rules (https, a URL
 * pinned by its SHA-256, url or path) were checked where it was written, by the inventory's rules
 * (inventory/base.ts); this adds what only the file system can tell, before any byte moves: a path
 * names a non-empty regular file. bytes/open.ts then reads it.
 */
import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { IMAGE_KINDS_HINT } from '../../bytes/formats.ts';
import { PibakeError } from '../../common/errors.ts';
import type { BaseImageSpec } from '../../common/base-image.ts';
import type { FileIdentity } from './cache.ts';

export type Source =
  | { kind: 'file'; path: string; label: string; identity: FileIdentity; sha256?: string }
  | { kind: 'url'; url: URL; label: string; sha256: string };

/** Describe the spec's source; fails before anything is read or downloaded. */
export async function describeSource(spec: BaseImageSpec): Promise<Source> {
  if (spec.url === undefined) return describeFile(spec.path, spec.sha256);
  const url = new URL(spec.url);
  return { kind: 'url', url, label: basename(url.pathname) || url.host, sha256: spec.sha256 };
}

async function describeFile(path: string, sha256: string | undefined): Promise<Source> {
  const absolute = resolve(path);
  let info;
  try {
    info = await stat(absolute);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new PibakeError(`base image ${path} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`, {
      hint: `check the base's path (base.path in cluster.yaml, or --base); ${IMAGE_KINDS_HINT}`,
      cause: error,
    });
  }
  if (info.isDirectory()) throw new PibakeError(`base image ${path} is a directory`, { hint: IMAGE_KINDS_HINT });
  if (!info.isFile()) throw new PibakeError(`base image ${path} is not a regular file`, { hint: IMAGE_KINDS_HINT });
  if (info.size === 0) throw new PibakeError(`base image ${path} is empty`, { hint: `the download probably failed; ${IMAGE_KINDS_HINT}` });
  return {
    kind: 'file',
    path: absolute,
    label: basename(absolute),
    identity: { path: absolute, size: info.size, mtimeMs: info.mtimeMs, ino: info.ino },
    sha256,
  };
}
