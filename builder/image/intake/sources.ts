/**
 * Where a base image comes from: a local file or an https URL. Checks the spec before any
 * byte moves (a URL needs a SHA-256; a path must be a non-empty regular file); bytes/open.ts then
 * reads it.
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

const SHA256 = /^[0-9a-f]{64}$/;

/** Validate the spec and describe its source; fails before anything is read or downloaded. */
export async function describeSource(spec: BaseImageSpec): Promise<Source> {
  const sha256 = spec.sha256?.trim().toLowerCase();
  if (sha256 !== undefined && !SHA256.test(sha256)) {
    throw new PibakeError(`base.sha256 "${spec.sha256}" is not a SHA-256`, { hint: 'write the 64 hex digits that sha256sum prints' });
  }
  if (spec.url && spec.path) {
    throw new PibakeError('base has both url and path', { hint: 'keep one of them' });
  }
  if (spec.url) return describeUrl(spec.url, sha256);
  if (spec.path) return describeFile(spec.path, sha256);
  throw new PibakeError('base names no image', { hint: `set base.path or base.url; ${IMAGE_KINDS_HINT}` });
}

function describeUrl(text: string, sha256: string | undefined): Source {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new PibakeError(`base.url "${text}" is not a URL`, { hint: 'write a full https:// address' });
  }
  if (url.protocol !== 'https:') {
    throw new PibakeError(`base.url ${text} is not https`, { hint: 'download over https (the image becomes every node\'s OS)' });
  }
  if (!sha256) {
    throw new PibakeError(`base.url ${text} has no sha256`, {
      hint: 'add base.sha256 with the SHA-256 published beside the download (the .sha256 file)',
    });
  }
  return { kind: 'url', url, label: basename(url.pathname) || url.host, sha256 };
}

async function describeFile(path: string, sha256: string | undefined): Promise<Source> {
  const absolute = resolve(path);
  let info;
  try {
    info = await stat(absolute);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new PibakeError(`base image ${path} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`, {
      hint: `check base.path; ${IMAGE_KINDS_HINT}`,
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
