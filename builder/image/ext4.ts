/**
 * The ext4 root partition of an image, read and edited in user space with debugfs at
 * `image?offset=N`. Each apply() is one read-only debugfs run (what exists?) and one write run
 * with every command. debugfs exits 0 after most failed commands, so anything it prints on
 * stderr besides its banner is treated as a failure.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { PibakeError } from '../common/errors.ts';
import { runTool } from '../common/exec.ts';
import type { RootEntry } from '../common/node-files.ts';
import { withStagingDir, writePrivateFile } from './staging.ts';

export type Ext4Change =
  | RootEntry
  | { kind: 'delete'; path: string }
  /** A file written straight from the build machine's disk (a carried .deb), without staging a copy. */
  | (Omit<RootEntry & { kind: 'file' }, 'kind' | 'data'> & { kind: 'copy'; source: string });

export interface Ext4Stat {
  kind: 'file' | 'dir' | 'symlink' | 'other';
  mode: number; // permission bits (incl. setuid/setgid/sticky)
  uid: number;
  gid: number;
  mtime: number; // seconds since the epoch
  size: number;
  target?: string; // symlinks only
}

export interface Ext4SuperblockInfo {
  label: string;
  uuid: string;
  blockSize: number;
  blocksCount: number;
  freeBlocks: number;
}

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

export class Ext4Fs {
  /** `label` names the image in errors (the user's base, `<node>.img`), not pibake's temp file. */
  constructor(
    readonly imagePath: string,
    readonly offsetBytes: number,
    readonly label: string = imagePath,
  ) {}

  /** Reads a regular file, following symlinks inside the image (e.g. /etc/os-release). */
  async readFile(path: string): Promise<Buffer> {
    const resolved = await this.resolve(path);
    const info = await this.stat(resolved);
    if (!info) throw new PibakeError(`${this.where()}: ${path} does not exist in the root filesystem`);
    if (info.kind !== 'file') throw new PibakeError(`${this.where()}: ${path} is not a regular file`);
    const result = await runTool('debugfs', ['-R', `cat ${quote(resolved)}`, this.device()], {
      encoding: 'buffer',
      env: debugfsEnv(),
      stdin: 'ignore',
    });
    const data = toBuffer(result.stdout);
    if (data.length !== info.size) {
      throw new PibakeError(`${this.where()}: reading ${path} gave ${data.length} of ${info.size} bytes`);
    }
    return data;
  }

  async exists(path: string): Promise<boolean> {
    return (await this.stat(path)) !== undefined;
  }

  /** The entry itself (a symlink is not followed); undefined when it does not exist. */
  async stat(path: string): Promise<Ext4Stat | undefined> {
    checkPath(path, true);
    const [section] = await this.runRead([`stat ${quote(path)}`]);
    const info = section ? parseDebugfsStat(section) : undefined;
    if (info?.kind === 'symlink' && info.target === undefined) {
      // A long ("slow") symlink keeps its target in a data block: cat prints it.
      const result = await runTool('debugfs', ['-R', `cat ${quote(path)}`, this.device()], {
        env: debugfsEnv(),
        stdin: 'ignore',
      });
      info.target = result.stdout.slice(0, info.size);
    }
    return info;
  }

  /** Names and kinds of a directory's entries (without . and ..); undefined when it is no directory. */
  async list(dir: string): Promise<{ name: string; kind: 'file' | 'dir' | 'symlink' | 'other' }[] | undefined> {
    checkPath(dir, true);
    const [info, listing] = await this.runRead([`stat ${quote(`${dir === '/' ? '' : dir}/.`)}`, `ls -p ${quote(dir)}`]);
    if (!info || parseDebugfsStat(info)?.kind !== 'dir') return undefined;
    return parseLsP(listing ?? '');
  }

  /** Installed Debian packages (Status: install ok installed) and their versions. */
  async readDpkgStatus(): Promise<Map<string, string>> {
    return parseDpkgStatus((await this.readFile('/var/lib/dpkg/status')).toString('utf8'));
  }

  /** Applies changes in order; parent directories are created (root:root 0755), existing entries replaced. */
  async apply(changes: Ext4Change[]): Promise<void> {
    if (changes.length === 0) return;
    for (const change of changes) checkPath(change.path, false);
    const state = await this.probe(changes);
    await withStagingDir(this.imagePath, async (stage) => {
      const script = new Script(writeTimestamp());
      let staged = 0;
      for (const change of changes) {
        if (change.kind === 'delete') {
          await this.planDelete(change.path, state, script);
          continue;
        }
        ensureParents(change.path, state, script);
        const current = state.get(change.path);
        if (change.kind === 'dir') {
          if (current === 'dir' || current === 'dirlink') {
            if (current === 'dir') script.attributes(change.path, S_IFDIR | change.mode, change.uid, change.gid);
            continue;
          }
          if (current !== undefined && current !== 'absent') script.remove(change.path);
          script.mkdir(change.path, S_IFDIR | change.mode, change.uid, change.gid);
          state.set(change.path, 'dir');
          continue;
        }
        if (current === 'dir') {
          throw new PibakeError(`${this.where()}: cannot replace directory ${change.path} with a ${change.kind}`, {
            hint: 'delete the directory first or choose another path',
          });
        }
        if (current !== undefined && current !== 'absent') script.remove(change.path);
        if (change.kind === 'file' || change.kind === 'copy') {
          const local = change.kind === 'copy' ? change.source : join(stage, String(staged++));
          if (change.kind === 'file') await writePrivateFile(local, change.data);
          else if (/[\n\r]/.test(local)) throw new PibakeError(`cannot hand ${JSON.stringify(local)} to debugfs (a line break in its path)`);
          script.write(local, change.path, S_IFREG | change.mode, change.uid, change.gid);
          state.set(change.path, 'file');
        } else {
          script.symlink(change.path, change.target, change.uid, change.gid);
          state.set(change.path, 'symlink');
        }
      }
      await this.runWrite(script.lines);
    });
  }

  async freeBytes(): Promise<number> {
    const sb = await this.superblock();
    return sb.freeBlocks * sb.blockSize;
  }

  /** Label, UUID and block counts straight from the superblock. */
  async superblock(): Promise<Ext4SuperblockInfo> {
    const handle = await open(this.imagePath, 'r');
    try {
      const buf = Buffer.alloc(1024);
      await handle.read(buf, 0, 1024, this.offsetBytes + 1024);
      const info = parseExt4Superblock(buf);
      if (!info) throw new PibakeError(`${this.where()}: no ext2/3/4 superblock`);
      return info;
    } finally {
      await handle.close();
    }
  }

  /** Runs raw debugfs commands in one writable session; failures become a PibakeError. */
  async runCommands(lines: string[]): Promise<void> {
    await this.runWrite(lines);
  }

  /** Follows symlinks (absolute ones relative to the image's root) until a non-link; max 40 hops. */
  private async resolve(path: string): Promise<string> {
    let current = normalise(path);
    for (let hop = 0; hop < 40; hop++) {
      const info = await this.stat(current);
      if (info?.kind !== 'symlink' || info.target === undefined) return current;
      const base = info.target.startsWith('/') ? '' : current.slice(0, current.lastIndexOf('/'));
      current = normalise(`${base}/${info.target}`);
    }
    throw new PibakeError(`${this.where()}: too many levels of symbolic links at ${path}`);
  }

  /** One read-only run: what every changed path and its ancestors are now. */
  private async probe(changes: Ext4Change[]): Promise<Map<string, Kind>> {
    const paths = new Set<string>();
    for (const change of changes) {
      paths.add(change.path);
      for (const a of ancestors(change.path)) paths.add(a);
    }
    const list = [...paths];
    const commands = list.flatMap((p) => [`stat ${quote(p)}`, `stat ${quote(`${p}/.`)}`]);
    const sections = await this.runRead(commands);
    const state = new Map<string, Kind>([['/', 'dir']]);
    list.forEach((p, i) => {
      const self = sections[2 * i] ? parseDebugfsStat(sections[2 * i] as string) : undefined;
      const through = sections[2 * i + 1] ? parseDebugfsStat(sections[2 * i + 1] as string) : undefined;
      if (!self) state.set(p, 'absent');
      else if (self.kind === 'symlink') state.set(p, through?.kind === 'dir' ? 'dirlink' : 'symlink');
      else state.set(p, self.kind);
    });
    return state;
  }

  private async planDelete(path: string, state: Map<string, Kind>, script: Script): Promise<void> {
    const current = state.get(path);
    if (current === undefined || current === 'absent') return;
    if (current === 'dir') {
      // Learn the existing subtree (one read run per level), then delete deepest first.
      let level = [path];
      while (level.length > 0) {
        const sections = await this.runRead(level.map((d) => `ls -p ${quote(d)}`));
        const next: string[] = [];
        level.forEach((dir, i) => {
          for (const e of parseLsP(sections[i] ?? '')) {
            const child = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
            if (!state.has(child)) {
              const kind: Kind = e.kind === 'dir' ? 'dir' : e.kind === 'symlink' ? 'symlink' : 'file';
              state.set(child, kind);
            }
            if (e.kind === 'dir') next.push(child);
          }
        });
        level = next;
      }
      const inside = [...state.entries()]
        .filter(([p, k]) => p.startsWith(`${path}/`) && k !== 'absent')
        .sort((a, b) => b[0].split('/').length - a[0].split('/').length);
      for (const [p, k] of inside) {
        if (k === 'dir') script.rmdir(p);
        else script.remove(p);
        state.set(p, 'absent');
      }
      script.rmdir(path);
    } else {
      script.remove(path);
    }
    state.set(path, 'absent');
  }

  /** Commands go in on stdin (`-f -`): no command file, nothing on disk to leave behind. */
  private async runRead(commands: string[]): Promise<string[]> {
    const result = await runTool('debugfs', ['-f', '-', this.device()], { env: debugfsEnv(), input: `${commands.join('\n')}\n` });
    if (/^debugfs: Bad magic|while trying to open/m.test(result.stderr)) {
      throw new PibakeError(`${this.where()}: not an ext4 filesystem (${firstError(result.stderr)})`);
    }
    return splitSections(result.stdout, commands.length);
  }

  private async runWrite(lines: string[]): Promise<void> {
    const result = await runTool('debugfs', ['-w', '-f', '-', this.device()], { env: debugfsEnv(), input: `${lines.join('\n')}\n` });
    const errors = result.stderr.split('\n').filter((l) => l.trim() !== '' && !/^debugfs \d/.test(l));
    if (errors.length > 0) {
      throw new PibakeError(`${this.where()}: debugfs failed: ${errors.slice(0, 3).join('; ')}`, {
        hint: 'check the image is a healthy ext4 filesystem (e2fsck -fn) with enough free space',
      });
    }
  }

  /** The `image?offset=N` name every e2fsprogs tool (debugfs, e2fsck, resize2fs) accepts. */
  device(): string {
    // e2fsprogs splits `name?options` at the first '?', so such a name cannot be addressed.
    if (this.imagePath.includes('?')) {
      throw new PibakeError(`${this.imagePath}: debugfs cannot open a file whose name contains "?"`, { hint: 'rename the image' });
    }
    return `${this.imagePath}?offset=${this.offsetBytes}`;
  }

  private where(): string {
    return `${this.label} (ext4 at byte ${this.offsetBytes})`;
  }
}

/** What the planner knows about a path: 'dirlink' is a symlink that leads to a directory. */
type Kind = 'file' | 'dir' | 'symlink' | 'dirlink' | 'other' | 'absent';

/** Builds the debugfs command file; every operation runs inside the parent (`cd parent/.`). */
class Script {
  readonly lines: string[] = [];
  private cwd = '';

  constructor(private readonly time: number) {}

  mkdir(path: string, mode: number, uid: number, gid: number): void {
    this.enter(path);
    this.lines.push(`mkdir ${quote(base(path))}`);
    this.attributes(path, mode, uid, gid);
  }

  write(local: string, path: string, mode: number, uid: number, gid: number): void {
    this.enter(path);
    // `write` links its second argument literally into the cwd, hence the basename.
    this.lines.push(`write ${quote(local)} ${quote(base(path))}`);
    this.attributes(path, mode, uid, gid);
  }

  symlink(path: string, target: string, uid: number, gid: number): void {
    this.enter(path);
    this.lines.push(`symlink ${quote(base(path))} ${quote(target)}`);
    this.attributes(path, S_IFLNK | 0o777, uid, gid);
  }

  remove(path: string): void {
    this.enter(path);
    this.lines.push(`rm ${quote(`./${base(path)}`)}`);
  }

  rmdir(path: string): void {
    this.enter(path);
    this.lines.push(`rmdir ${quote(`./${base(path)}`)}`);
  }

  /** Mode (with type bits), 32-bit owner and all four timestamps. */
  attributes(path: string, mode: number, uid: number, gid: number): void {
    this.enter(path);
    const name = quote(`./${base(path)}`);
    this.lines.push(`sif ${name} mode 0${mode.toString(8)}`, `sif ${name} uid ${uid}`, `sif ${name} gid ${gid}`);
    for (const field of ['mtime', 'atime', 'ctime', 'crtime']) this.lines.push(`sif ${name} ${field} @${this.time}`);
  }

  private enter(path: string): void {
    const parent = path.slice(0, path.lastIndexOf('/')) || '/';
    if (parent === this.cwd) return;
    // The trailing `/.` makes debugfs follow a final symlink (e.g. /lib -> usr/lib).
    this.lines.push(`cd ${quote(parent === '/' ? '/' : `${parent}/.`)}`);
    this.cwd = parent;
  }
}

function ensureParents(path: string, state: Map<string, Kind>, script: Script): void {
  for (const a of ancestors(path)) {
    const kind = state.get(a);
    if (kind === 'dir' || kind === 'dirlink') continue;
    if (kind === undefined || kind === 'absent') {
      script.mkdir(a, S_IFDIR | 0o755, 0, 0);
      state.set(a, 'dir');
      continue;
    }
    throw new PibakeError(`cannot create ${path}: ${a} exists and is not a directory`, {
      hint: 'remove or rename the conflicting entry',
    });
  }
}

/** Seconds for what pibake writes: SOURCE_DATE_EPOCH when set (reproducible builds), else now. */
export function writeTimestamp(): number {
  const value = process.env.SOURCE_DATE_EPOCH;
  if (value === undefined || value === '') return Math.floor(Date.now() / 1000);
  if (!/^\d+$/.test(value)) {
    throw new PibakeError(`SOURCE_DATE_EPOCH="${value}" is not a number of seconds`, {
      hint: 'set it to an integer such as the time of your last commit: $(git log -1 --format=%ct)',
    });
  }
  return Number(value);
}

/** debugfs command-line quoting: double quotes, a literal quote doubled. */
export function quote(text: string): string {
  return `"${text.replace(/"/g, '""')}"`;
}

function checkPath(path: string, allowRoot: boolean): void {
  const ok =
    path.startsWith('/') &&
    !/[\n\r\0]/.test(path) &&
    (allowRoot ? true : path !== '/') &&
    path.split('/').slice(1).every((p, i, all) => (p !== '' || (all.length === 1 && allowRoot)) && p !== '.' && p !== '..');
  if (!ok) {
    throw new PibakeError(`invalid root filesystem path "${path}"`, {
      hint: 'use a normalised absolute path without .., empty components or control characters',
    });
  }
}

function normalise(path: string): string {
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return `/${out.join('/')}`;
}

function ancestors(path: string): string[] {
  const parts = path.split('/').filter(Boolean);
  const result: string[] = [];
  for (let i = 1; i < parts.length; i++) result.push(`/${parts.slice(0, i).join('/')}`);
  return result;
}

function base(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

function debugfsEnv(): Record<string, string> {
  const env: Record<string, string> = { DEBUGFS_PAGER: '__none__', PAGER: '__none__' };
  // libext2fs stamps the superblock (and directories it touches) with the current time; this
  // makes those stamps SOURCE_DATE_EPOCH too, so equal inputs give byte-identical filesystems.
  if (process.env.SOURCE_DATE_EPOCH) env.E2FSPROGS_FAKE_TIME = String(writeTimestamp());
  return env;
}

function firstError(stderr: string): string {
  return stderr.split('\n').find((l) => l.trim() !== '' && !/^debugfs \d/.test(l))?.trim() ?? 'unknown error';
}

/** debugfs -f echoes each command as `debugfs: CMD` on stdout; the text until the next echo is its output. */
export function splitSections(stdout: string, count: number): string[] {
  const sections: string[] = [];
  let current: string[] | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('debugfs: ')) {
      if (current) sections.push(current.join('\n'));
      current = [];
    } else current?.push(line);
  }
  if (current) sections.push(current.join('\n'));
  if (sections.length !== count) {
    throw new PibakeError(`debugfs answered ${sections.length} of ${count} commands`, {
      hint: 'check the image with e2fsck -fn',
    });
  }
  return sections.map((s) => s.trim());
}

/** Parses the output of debugfs `stat`. */
export function parseDebugfsStat(text: string): Ext4Stat | undefined {
  const type = /Type: (\S+)/.exec(text)?.[1];
  if (!type) return undefined;
  const kind = type === 'regular' ? 'file' : type === 'directory' ? 'dir' : type === 'symlink' ? 'symlink' : 'other';
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
  const mtime = /^\s*mtime: 0x([0-9a-f]+)(?::([0-9a-f]+))?/m.exec(text);
  const epochBits = mtime?.[2] ? Number.parseInt(mtime[2], 16) & 3 : 0;
  const result: Ext4Stat = {
    kind,
    mode: Number.parseInt(/Mode:\s+([0-7]+)/.exec(text)?.[1] ?? 'NaN', 8),
    uid: num(/User:\s+(\d+)/),
    gid: num(/Group:\s+(\d+)/),
    size: num(/Size: (\d+)/),
    mtime: mtime ? Number.parseInt(mtime[1] as string, 16) + epochBits * 2 ** 32 : Number.NaN,
  };
  if (kind === 'symlink') {
    const fast = /Fast link dest: "(.*)"$/m.exec(text);
    if (fast) result.target = fast[1];
  }
  return result;
}

/** Parses debugfs `ls -p` lines: /inode/mode/uid/gid/name/size/. */
export function parseLsP(text: string): { name: string; kind: 'file' | 'dir' | 'symlink' | 'other' }[] {
  const entries: { name: string; kind: 'file' | 'dir' | 'symlink' | 'other' }[] = [];
  for (const line of text.split('\n')) {
    const m = /^\/(\d+)\/(\d+)\/(\d+)\/(\d+)\/(.*)\/(\d*)\/$/.exec(line);
    if (!m || m[5] === '.' || m[5] === '..' || m[1] === '0') continue;
    const type = Number.parseInt(m[2] as string, 8) & 0o170000;
    const kind = type === S_IFDIR ? 'dir' : type === S_IFLNK ? 'symlink' : type === S_IFREG ? 'file' : 'other';
    entries.push({ name: m[5] as string, kind });
  }
  return entries;
}

/** Packages whose status is "installed" in a dpkg status file, with their versions. */
export function parseDpkgStatus(text: string): Map<string, string> {
  const installed = new Map<string, string>();
  for (const stanza of text.split(/\n\s*\n/)) {
    const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(stanza)?.[1]?.trim();
    const pkg = field('Package');
    const status = field('Status')?.split(/\s+/);
    if (pkg && status?.[2] === 'installed') installed.set(pkg, field('Version') ?? '');
  }
  return installed;
}

/** Reads label, UUID and block counts from a 1024-byte ext2/3/4 superblock; undefined without magic. */
export function parseExt4Superblock(sb: Buffer): Ext4SuperblockInfo | undefined {
  if (sb.length < 1024 || sb.readUInt16LE(56) !== 0xef53) return undefined;
  const is64 = (sb.readUInt32LE(96) & 0x80) !== 0; // INCOMPAT_64BIT
  const hex = sb.subarray(104, 120).toString('hex');
  const uuid = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  const rawLabel = sb.subarray(120, 136);
  const end = rawLabel.indexOf(0);
  return {
    label: rawLabel.subarray(0, end === -1 ? 16 : end).toString('utf8'),
    uuid,
    blockSize: 1024 * 2 ** sb.readUInt32LE(24),
    blocksCount: sb.readUInt32LE(4) + (is64 ? sb.readUInt32LE(0x150) * 2 ** 32 : 0),
    freeBlocks: sb.readUInt32LE(12) + (is64 ? sb.readUInt32LE(0x158) * 2 ** 32 : 0),
  };
}

/** execa gives a Uint8Array for `encoding: 'buffer'`; callers want a Buffer. */
function toBuffer(output: unknown): Buffer {
  const bytes = output as Uint8Array;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
