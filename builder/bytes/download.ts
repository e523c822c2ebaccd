/**
 * Bytes from an https URL: redirects followed (never to plain http), a cut-off connection an
 * error rather than a short file, and a peek at the first bytes that loses none of them (to
 * recognise a download by its magic bytes before deciding how to read it).
 */
import type { IncomingMessage } from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import { PibakeError } from '../common/errors.ts';

/** GET an https URL (following redirects) and return the body stream and its length if announced. */
export async function download(url: URL, redirects = 5): Promise<{ body: Readable; length?: number }> {
  return (await get200(url, redirects, false)) as { body: Readable; length?: number };
}

/** Like download, for a file that may not be there: any HTTP 4xx (not published, not readable) gives undefined. */
export async function downloadIfPublished(url: URL): Promise<{ body: Readable; length?: number } | undefined> {
  return get200(url, 5, true);
}

async function get200(url: URL, redirects: number, absentOk: boolean): Promise<{ body: Readable; length?: number } | undefined> {
  // Loaded when a download starts: https brings tls and net, which a build from the cache never uses.
  const { get } = await import('node:https');
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
    return get200(next, redirects - 1, absentOk);
  }
  if (absentOk && status >= 400 && status < 500) {
    response.resume();
    return undefined;
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
