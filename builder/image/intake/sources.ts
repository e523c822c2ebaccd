/**
 * Where a base image comes from: a local file or an https URL. Checks the spec before any
 * byte moves (a URL needs a SHA-256; a path must be a non-empty regular file) and opens the
 * input as a stream.
 */
import { stat } from 'node:fs/promises';
import { get } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { basename, resolve } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { PibakeError } from '../../common/errors.ts';
import type { BaseImageSpec } from '../../inventory/types.ts';
import type { FileIdentity } from './cache.ts';

export type Source =
  | { kind: 'file'; path: string; label: string; identity: FileIdentity; sha256?: string }
  | { kind: 'url'; url: URL; label: string; sha256: string };

const SHA256 = /^[0-9a-f]{64}$/;
const KINDS_HINT = 'give a Raspberry Pi OS .img, .img.xz, .img.zst or .zip';

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
  throw new PibakeError('base names no image', { hint: `set base.path or base.url; ${KINDS_HINT}` });
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
      hint: `check base.path; ${KINDS_HINT}`,
      cause: error,
    });
  }
  if (info.isDirectory()) throw new PibakeError(`base image ${path} is a directory`, { hint: KINDS_HINT });
  if (!info.isFile()) throw new PibakeError(`base image ${path} is not a regular file`, { hint: KINDS_HINT });
  if (info.size === 0) throw new PibakeError(`base image ${path} is empty`, { hint: `the download probably failed; ${KINDS_HINT}` });
  return {
    kind: 'file',
    path: absolute,
    label: basename(absolute),
    identity: { path: absolute, size: info.size, mtimeMs: info.mtimeMs, ino: info.ino },
    sha256,
  };
}

/** GET an https URL (following redirects) and return the body stream and its length if announced. */
export async function download(url: URL, redirects = 5): Promise<{ body: Readable; length?: number }> {
  const response = await new Promise<IncomingMessage>((resolvePromise, reject) => {
    const request = get(url, { headers: { 'user-agent': 'pibake' } }, resolvePromise);
    request.on('error', (error) =>
      reject(new PibakeError(`cannot download ${url.href}: ${error.message}`, { hint: 'check the URL and the network', cause: error })));
  });
  const status = response.statusCode ?? 0;
  if (status >= 300 && status < 400 && response.headers.location) {
    response.resume();
    if (redirects === 0) throw new PibakeError(`too many redirects downloading ${url.href}`, { hint: 'check the URL' });
    const next = new URL(response.headers.location, url);
    if (next.protocol !== 'https:') throw new PibakeError(`${url.href} redirects to non-https ${next.href}`, { hint: 'use an https mirror' });
    return download(next, redirects - 1);
  }
  if (status !== 200) {
    response.resume();
    throw new PibakeError(`cannot download ${url.href}: HTTP ${status} ${response.statusMessage ?? ''}`.trim(), {
      hint: 'check the URL (releases move; copy it again from the download page)',
    });
  }
  const length = Number(response.headers['content-length']);
  // A connection cut short must be an error, not a short image.
  const body = new PassThrough({ highWaterMark: 1 << 20 });
  let received = 0;
  response.on('data', (chunk: Buffer) => {
    received += chunk.length;
  });
  response.on('aborted', () => body.destroy(new PibakeError(`download of ${url.href} was cut off`, { hint: 'try again' })));
  response.on('error', (error) => body.destroy(new PibakeError(`download of ${url.href} failed: ${error.message}`, { hint: 'try again', cause: error })));
  response.on('end', () => {
    if (Number.isFinite(length) && received !== length) {
      body.destroy(new PibakeError(`download of ${url.href} ended after ${received} of ${length} bytes`, { hint: 'try again' }));
    }
  });
  response.pipe(body);
  return { body, length: Number.isFinite(length) ? length : undefined };
}

/**
 * Read the first `length` bytes of a stream without losing them: returns them and a stream that
 * yields the whole input from the start (for recognising a download by its magic bytes).
 */
export async function peek(input: Readable, length: number): Promise<{ header: Buffer; stream: Readable }> {
  const chunks: Buffer[] = [];
  let have = 0;
  const iterator = input[Symbol.asyncIterator]();
  while (have < length) {
    const next = await iterator.next();
    if (next.done) break;
    const chunk = next.value as Buffer;
    chunks.push(chunk);
    have += chunk.length;
  }
  const header = Buffer.concat(chunks);
  async function* replay(): AsyncGenerator<Buffer> {
    try {
      if (header.length > 0) yield header;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value as Buffer;
      }
    } finally {
      await iterator.return?.();
    }
  }
  return { header: header.subarray(0, length), stream: Readable.from(replay(), { objectMode: false, highWaterMark: 1 << 20 }) };
}
