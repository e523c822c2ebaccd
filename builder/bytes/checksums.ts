/**
 * SHA-256 of big files, streamed (memory stays bounded), and SHA256SUMS files that
 * `sha256sum -c` accepts, so users can check downloads with the standard tool.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join, relative, isAbsolute } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PibakeError } from '../common/errors.ts';
import { writeFileAtomic } from './atomic.ts';

/** Lowercase hex SHA-256 of a file, read as a stream; `onProgress` hears the bytes hashed so far. */
export async function sha256File(path: string, onProgress?: (bytes: number) => void): Promise<string> {
  const tap = new HashTap();
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), tap, async (source) => {
    for await (const _chunk of source) onProgress?.(tap.bytes); // the tap hashes what passes
  });
  return tap.digest();
}

/**
 * A pass-through stream that hashes (SHA-256) and counts the bytes flowing through it,
 * so a download or a decompression is checked without a second read. `hashing: false` only counts.
 */
export class HashTap extends Transform {
  private readonly hash: Hash | undefined;
  private hex: string | undefined;
  bytes = 0;

  constructor(hashing = true) {
    super();
    this.hash = hashing ? createHash('sha256') : undefined;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash?.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  /** The hex digest; call once the stream has ended. */
  digest(): string {
    if (!this.hash) throw new Error('this HashTap only counts');
    this.hex ??= this.hash.digest('hex');
    return this.hex;
  }
}

/**
 * Write `SHA256SUMS` (or `name`) in `dir` for `files` (paths inside dir, relative or absolute),
 * one `<hex>  <name>` line each in the given order, the format `sha256sum -c` reads.
 * Names with a backslash or newline use sha256sum's escaped form (line starts with `\`).
 * Written atomically (temp file + rename). Returns the path written.
 */
export async function writeSha256Sums(dir: string, files: readonly string[], name = 'SHA256SUMS'): Promise<string> {
  const lines: string[] = [];
  for (const file of files) {
    const rel = isAbsolute(file) ? relative(dir, file) : file;
    if (rel.startsWith('..') || isAbsolute(rel)) {
      throw new PibakeError(`${file} is not inside ${dir}`, { hint: 'checksum files may only list files beside them' });
    }
    const digest = await sha256File(join(dir, rel));
    lines.push(sumLine(digest, rel));
  }
  const target = join(dir, name);
  await writeFileAtomic(target, lines.join(''));
  return target;
}

/** One line of a sha256sum file, escaped the way coreutils does when the name needs it. */
export function sumLine(digest: string, name: string): string {
  if (/[\\\n]/.test(name)) {
    const escaped = name.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
    return `\\${digest}  ${escaped}\n`;
  }
  return `${digest}  ${name}\n`;
}
