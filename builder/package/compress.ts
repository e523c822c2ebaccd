/**
 * Compression and decompression of disk images through the xz and zstd programs (they are
 * multi-threaded, fast, and the formats users expect). Everything streams: memory stays bounded
 * whatever the image size. Compressed output is reproducible: same input → byte-identical archive,
 * whatever the thread count (parameters that would change the bytes are pinned below).
 */
import { createReadStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { execa } from 'execa';
import { PibakeError } from '../common/errors.ts';
import { runTool, toolError } from '../common/exec.ts';
import { siblingTempPath } from './temp-name.ts';

export type Compression = 'zstd' | 'xz';
/** What the first bytes of a file say it is. */
export type ContainerFormat = Compression | 'zip' | 'raw';

/** xz block size, pinned: it decides the output bytes in multi-threaded mode (default = 3 × dict size). */
const XZ_BLOCK_SIZE = 24 << 20;

export interface CompressOptions {
  /** Worker threads; 0 = one per core. The output bytes do not depend on it. */
  threads?: number;
  /** Compression level (zstd 1-19, default 3; xz 0-9, default 6). */
  level?: number;
}

/** File-name extension of a compressed image (`.zst`, `.xz`). */
export function extensionOf(format: Compression): string {
  return format === 'zstd' ? '.zst' : '.xz';
}

/** The program arguments that compress `src` to stdout. Exported for the bench's bare-tool comparison. */
export function compressArgs(format: Compression, src: string, options: CompressOptions = {}): string[] {
  const threads = options.threads ?? 0;
  if (format === 'zstd') {
    // -T1 and above are zstd's multi-threaded mode, whose output does not depend on the worker
    // count (only --single-thread differs). Reading from a file records the content size.
    return ['-q', `-${options.level ?? 3}`, `-T${threads}`, '-c', '--', src];
  }
  // xz: threads=1 would pick the single-threaded encoder (different bytes); '+1' keeps the
  // multi-threaded one. --no-adjust forbids silently falling back to it under a memory limit.
  return [
    '-q', `-${options.level ?? 6}`, `--threads=${threads === 1 ? '+1' : threads}`, `--block-size=${XZ_BLOCK_SIZE}`,
    '--check=crc64', '--no-adjust', '-c', '--', src,
  ];
}

/**
 * Compress `src` into `dst` with `format`. Atomic: written to a temp file beside `dst`, renamed
 * when complete; a failure leaves no `dst` and no temp file.
 */
export async function compressImage(src: string, dst: string, format: Compression, options: CompressOptions = {}): Promise<void> {
  const tool = format === 'zstd' ? 'zstd' : 'xz';
  const temp = siblingTempPath(dst);
  try {
    // The tool writes straight into the file through an inherited fd. (execa's `{ file }` target
    // pipes through this process instead: measured 2.7x slower and 240 MiB RSS on 256 MiB.)
    // Owner-only like the image it packs (a node image holds the node's secrets).
    const handle = await open(temp, 'wx', 0o600);
    try {
      const stdout = handle.fd as unknown as 'inherit'; // execa takes an fd number; its types omit it
      await runTool(tool, compressArgs(format, src, options), { stdout, stdin: 'ignore' });
    } finally {
      await handle.close();
    }
    await rename(temp, dst);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** Identify a file by its magic bytes (at least 6 bytes of header; 512 to recognise a raw disk image). */
export function sniffFormat(header: Buffer): ContainerFormat | undefined {
  if (header.length >= 6 && header.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (header.length >= 4 && header.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (header.length >= 4 && header.subarray(0, 4).equals(Buffer.from('PK\x03\x04', 'latin1'))) return 'zip';
  // MBR and GPT's protective MBR both end sector 0 with 0x55 0xAA.
  if (header.length >= 512 && header[510] === 0x55 && header[511] === 0xaa) return 'raw';
  return undefined;
}

/** Read up to `length` bytes from the start of a file. */
export async function readHeader(path: string, length = 512): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/**
 * The raw bytes of an image file, whether it is raw, .xz or .zst (recognised by content, not name).
 * The stream errors with a PibakeError if the archive turns out truncated or corrupt; it ends
 * only after the decompressor has exited successfully.
 */
export async function openDecompressed(path: string): Promise<Readable> {
  const format = sniffFormat(await readHeader(path));
  if (format === 'xz' || format === 'zstd') {
    return decompressStream(createReadStream(path, { highWaterMark: 1 << 20 }), format, basename(path));
  }
  if (format === 'raw') return createReadStream(path, { highWaterMark: 1 << 20 });
  throw new PibakeError(`${path} is not a disk image, .xz or .zst file`, {
    hint: 'give a Raspberry Pi OS .img, .img.xz or .img.zst',
  });
}

/** Decompress a stream of `format` through the xz/zstd program; `label` names the source in errors. */
export function decompressStream(input: Readable, format: Compression, label: string): Readable {
  const tool = format === 'zstd' ? 'zstd' : 'xz';
  const args = format === 'zstd' ? ['-q', '-dc'] : ['-q', '-T0', '-dc'];
  return filterThroughTool(tool, args, input, (detail) =>
    new PibakeError(`${label} is truncated or corrupt (${tool}: ${detail})`, {
      hint: 'download the image again and compare its SHA-256 with the published one',
    }));
}

/**
 * Run `tool args` with `input` on its stdin (or none) and return its stdout as a stream.
 * The returned stream ends only once the tool exited 0; a non-zero exit destroys it with the
 * error `describe(last stderr line)` builds (default: the generic tool error). Destroying the
 * returned stream kills the tool.
 */
export function filterThroughTool(
  tool: string,
  args: readonly string[],
  input: Readable | undefined,
  describe?: (detail: string) => PibakeError,
): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const subprocess = execa(tool, args, {
    stdin: input ? 'pipe' : 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: { stdout: false, stderr: true },
  });
  let finished = false;
  if (input && subprocess.stdin) {
    // The tool may exit early (corrupt data); EPIPE on its stdin is then expected, its exit code tells why.
    subprocess.stdin.on('error', () => {});
    input.on('error', (error) => {
      out.destroy(error);
    });
    input.pipe(subprocess.stdin);
  }
  subprocess.stdout.pipe(out, { end: false });
  subprocess.then(
    () => {
      finished = true;
      out.end();
    },
    (error: unknown) => {
      finished = true;
      const e = error as { stderr?: unknown; code?: string; isTerminated?: boolean };
      if (out.destroyed) return;
      if (e.code === 'ENOENT' || !describe) {
        out.destroy(toolError(tool, args, error));
        return;
      }
      const lines = typeof e.stderr === 'string' ? e.stderr.trim().split('\n').filter(Boolean) : [];
      // Drop the program name and the "(stdin):" / "/*stdin*\ :" the tools put before their message.
      const detail = (lines[lines.length - 1] ?? `exit ${String((error as { exitCode?: number }).exitCode)}`)
        .replace(/^[\w.-]+:\s*/, '')
        .replace(/^\S*stdin\S*\s*:\s*/, '');
      out.destroy(describe(detail));
    },
  );
  out.on('close', () => {
    if (!finished) subprocess.kill();
    // Release the input (an open file, a download) if the tool stopped before reading it all.
    if (input && !input.readableEnded) input.destroy();
  });
  return out;
}
