/**
 * Independent oracles for image tests: sfdisk, fsck.vfat, e2fsck, mtools and debugfs run
 * directly (not through pibake's adapters), plus scratch directories that clean up after themselves.
 */
import { execa } from 'execa';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

export async function scratchDir(prefix = 'pibake-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Names in a folder (sorted) other than pibake's lock file, which stays once released; [] when there is no folder. */
export async function entriesOf(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).filter((name) => name !== '.pibake.lock').sort();
}

export interface SfdiskPartition {
  node: string;
  start: number;
  size: number;
  type: string;
  uuid?: string;
  bootable?: boolean;
}

export async function sfdiskJson(image: string): Promise<{ label: string; id: string; partitions: SfdiskPartition[] }> {
  const { stdout } = await execa('sfdisk', ['--json', image]);
  return (JSON.parse(stdout) as { partitiontable: { label: string; id: string; partitions: SfdiskPartition[] } }).partitiontable;
}

/** `fsck.vfat -n` on a byte copy of the partition (fsck.vfat has no offset option). */
export async function fsckFat(image: string, startBytes: number, sizeBytes: number): Promise<{ exitCode: number; output: string }> {
  const { dir, cleanup } = await scratchDir('pibake-fsck-');
  try {
    const copy = join(dir, 'fat.img');
    await pipeline(createReadStream(image, { start: startBytes, end: startBytes + sizeBytes - 1 }), createWriteStream(copy));
    const r = await execa('fsck.vfat', ['-n', copy], { reject: false, all: true });
    return { exitCode: r.exitCode ?? -1, output: r.all ?? '' };
  } finally {
    await cleanup();
  }
}

export async function e2fsck(image: string, offsetBytes: number): Promise<{ exitCode: number; output: string }> {
  const r = await execa('e2fsck', ['-fn', `${image}?offset=${offsetBytes}`], { reject: false, all: true });
  return { exitCode: r.exitCode ?? -1, output: r.all ?? '' };
}

/** Both filesystems of a two-partition image checked by their own fsck; throws with the output if unclean. */
export async function expectCleanImage(image: string): Promise<void> {
  const table = await sfdiskJson(image);
  const [boot, root] = [table.partitions[0], table.partitions[table.partitions.length - 1]];
  if (!boot || !root) throw new Error(`${image}: expected two partitions`);
  const fat = await fsckFat(image, boot.start * 512, boot.size * 512);
  if (fat.exitCode !== 0) throw new Error(`fsck.vfat -n failed (${fat.exitCode}):\n${fat.output}`);
  const ext = await e2fsck(image, root.start * 512);
  if (ext.exitCode !== 0) throw new Error(`e2fsck -fn failed (${ext.exitCode}):\n${ext.output}`);
}

export async function partitionOffsets(image: string): Promise<{ boot: number; root: number; bootSize: number; rootSize: number }> {
  const table = await sfdiskJson(image);
  const boot = table.partitions[0];
  const root = table.partitions[table.partitions.length - 1];
  if (!boot || !root) throw new Error('expected partitions');
  return { boot: boot.start * 512, root: root.start * 512, bootSize: boot.size * 512, rootSize: root.size * 512 };
}

const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1', TZ: 'UTC' };

export async function mtype(image: string, offset: number, path: string): Promise<Buffer> {
  const r = await execa('mtype', ['-i', `${image}@@${offset}`, `::/${path}`], { env: MTOOLS_ENV, encoding: 'buffer', stripFinalNewline: false });
  return Buffer.from(r.stdout);
}

/** `mdir -b` names below a directory, recursively (`-/`), directories ending in '/'. */
export async function mdirBare(image: string, offset: number, dir = ''): Promise<string[]> {
  const r = await execa('mdir', ['-b', '-/', '-i', `${image}@@${offset}`, `::/${dir}`], { env: MTOOLS_ENV, reject: false });
  return r.stdout.split('\n').filter(Boolean).map((l) => l.replace(/^::/, '')).sort();
}

export async function mdirText(image: string, offset: number, dir = ''): Promise<string> {
  return (await execa('mdir', ['-i', `${image}@@${offset}`, `::/${dir}`], { env: MTOOLS_ENV })).stdout;
}

export async function debugfs(image: string, offset: number, command: string): Promise<string> {
  const r = await execa('debugfs', ['-R', command, `${image}?offset=${offset}`], { env: { DEBUGFS_PAGER: '__none__' } });
  return r.stdout;
}

export async function debugfsCat(image: string, offset: number, path: string): Promise<Buffer> {
  const r = await execa('debugfs', ['-R', `cat "${path}"`, `${image}?offset=${offset}`], { encoding: 'buffer', stripFinalNewline: false });
  return Buffer.from(r.stdout);
}

/** The fields of debugfs `stat`, parsed here independently of pibake's parser. */
export async function debugfsStat(image: string, offset: number, path: string): Promise<{
  type: string; mode: string; user: number; group: number; mtime: number; size: number; fastLink?: string;
} | undefined> {
  const text = await debugfs(image, offset, `stat "${path.replace(/"/g, '""')}"`);
  const m = /Type: (\w+)\s+Mode:\s+(\d+)/.exec(text);
  if (!m) return undefined;
  return {
    type: m[1] as string,
    mode: m[2] as string,
    user: Number(/User:\s+(\d+)/.exec(text)?.[1]),
    group: Number(/Group:\s+(\d+)/.exec(text)?.[1]),
    mtime: Number.parseInt(/ mtime: 0x([0-9a-f]+)/.exec(text)?.[1] ?? 'x', 16),
    size: Number(/Size: (\d+)/.exec(text)?.[1]),
    fastLink: /Fast link dest: "(.*)"/.exec(text)?.[1],
  };
}

export async function dumpe2fsHeader(image: string, offset: number): Promise<Record<string, string>> {
  const { stdout } = await execa('dumpe2fs', ['-h', `${image}?offset=${offset}`], { stderr: 'ignore' });
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^([^:]+):\s+(.*)$/.exec(line);
    if (m) out[(m[1] as string).trim()] = (m[2] as string).trim();
  }
  return out;
}

export async function blkid(image: string, offset: number): Promise<Record<string, string>> {
  const { stdout } = await execa('blkid', ['-p', '-o', 'export', '-O', String(offset), image]);
  return Object.fromEntries(stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** Runs the real CLI as a child process. */
export async function runPibake(args: string[], env: Record<string, string> = {}): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa('node', [join(import.meta.dirname, '../../bin/pibake.js'), ...args], { reject: false, env });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}
