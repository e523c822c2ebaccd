/**
 * Runs the external programs pibake stands on (mtools, debugfs, xz, zstd, lsblk...).
 * A missing program becomes a PibakeError naming the Debian package that provides it.
 */
import type { Options, Result } from 'execa';
import { PibakeError } from './errors.ts';

const PACKAGE_OF: Record<string, string> = {
  mcopy: 'mtools', mdir: 'mtools', mtype: 'mtools', mdel: 'mtools', mdeltree: 'mtools', mmd: 'mtools',
  mattrib: 'mtools', minfo: 'mtools', mrd: 'mtools', mren: 'mtools',
  debugfs: 'e2fsprogs', e2fsck: 'e2fsprogs', dumpe2fs: 'e2fsprogs', mke2fs: 'e2fsprogs', tune2fs: 'e2fsprogs',
  resize2fs: 'e2fsprogs', e2image: 'e2fsprogs', 'apt-get': 'apt', 'apt-cache': 'apt',
  'fsck.vfat': 'dosfstools', 'mkfs.vfat': 'dosfstools', sfdisk: 'fdisk', lsblk: 'util-linux', blkid: 'util-linux',
  xz: 'xz-utils', zstd: 'zstd', unzip: 'unzip', bmaptool: 'bmap-tools', haproxy: 'haproxy', nginx: 'nginx',
  'cloud-init': 'cloud-init', openssl: 'openssl', 'ssh-keygen': 'openssh-client', cp: 'coreutils',
  // eslint-disable-next-line no-restricted-syntax -- the Debian package that ships umount, not a call
  umount: 'mount', blockdev: 'util-linux', flock: 'util-linux', perl: 'perl-base', dd: 'coreutils',
};

export function packageFor(tool: string): string {
  return PACKAGE_OF[tool] ?? tool;
}

export type ToolResult = Result<{ encoding: 'utf8' }>;

/**
 * Run `tool args...` and return its result. Fails with a PibakeError when the tool is missing
 * or exits non-zero (unless `reject: false`), quoting the first line of its stderr.
 */
export async function runTool(tool: string, args: readonly string[], options: Options = {}): Promise<ToolResult> {
  // Loaded with the first tool run: a rebuild that changes nothing runs none, and execa is a
  // hundred modules to load.
  const { execa } = await import('execa');
  try {
    return (await execa(tool, args, { stripFinalNewline: false, ...options })) as unknown as ToolResult;
  } catch (error) {
    throw toolError(tool, args, error);
  }
}

export function toolError(tool: string, args: readonly string[], error: unknown): PibakeError {
  const e = error as { code?: string; stderr?: unknown; exitCode?: number; shortMessage?: string };
  if (e.code === 'ENOENT') {
    return new PibakeError(`${tool} is not installed`, {
      hint: `install it: apt-get install ${packageFor(tool)}`,
      cause: error,
    });
  }
  const stderr = typeof e.stderr === 'string' ? e.stderr.trim().split('\n').filter(Boolean) : [];
  const detail = stderr.length > 0 ? stderr[stderr.length - 1] : (e.shortMessage ?? String(error));
  return new PibakeError(`${tool} ${args.slice(0, 3).join(' ')}… failed (exit ${e.exitCode ?? '?'}): ${detail}`, {
    cause: error,
  });
}
