/**
 * Programs as stream transforms: bytes in on stdin, bytes out of stdout, and the program's exit
 * status turned into the stream's end or error, so a truncated archive can never pass as a short
 * image.
 */
import { PassThrough, type Readable } from 'node:stream';
import { PibakeError } from '../common/errors.ts';
import { toolError } from '../common/exec.ts';
import { type Compression, formatEntry } from './formats.ts';

/** Decompress a stream of `format` through the xz/zstd program; `label` names the source in errors. */
export function decompressStream(input: Readable, format: Compression, label: string): Readable {
  const { tool, unpackArgs } = formatEntry(format) as { tool: string; unpackArgs: readonly string[] };
  return filterThroughTool(tool, unpackArgs, input, (detail) =>
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
  let kill: (() => void) | undefined;
  let finished = false;
  input?.on('error', (error) => {
    out.destroy(error);
  });
  out.on('close', () => {
    if (!finished) kill?.();
    // Release the input (an open file, a download) if the tool stopped before reading it all.
    if (input && !input.readableEnded) input.destroy();
  });
  // execa is loaded with the first tool run (runTool says why); the stream is returned at once.
  import('execa').then(({ execa }) => {
    if (out.destroyed) return;
    const subprocess = execa(tool, args, {
      stdin: input ? 'pipe' : 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: { stdout: false, stderr: true },
    });
    kill = () => subprocess.kill();
    if (input && subprocess.stdin) {
      // The tool may exit early (corrupt data); EPIPE on its stdin is then expected, its exit code tells why.
      subprocess.stdin.on('error', () => {});
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
  }, (error: unknown) => out.destroy(error as Error));
  return out;
}
