/**
 * The FAT boot partition of an image, edited in user space with mtools at `image@@OFFSET`.
 * Writes are batched into one mcopy process from a staged tree; timestamps follow
 * SOURCE_DATE_EPOCH (mtools reads it itself) and are written as UTC.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PibakeError } from '../common/errors.ts';
import { runTool, type ToolResult } from '../common/exec.ts';
import { writeTimestamp } from './ext4.ts';
import { withStagingDir, writePrivateFile } from './staging.ts';

export interface FatEntry {
  name: string;
  dir: boolean;
  size: number;
}

export interface FatVolumeInfo {
  /** Volume label from the root directory, as blkid's LABEL reports it ('' when none). */
  label: string;
  /** Volume serial number, `XXXX-XXXX` as blkid's UUID reports it. */
  serial: string;
  freeBytes: number;
}

export class FatFs {
  /** `label` names the image in errors (the user's base, `<node>.img`), not pibake's temp file. */
  constructor(
    readonly imagePath: string,
    readonly offsetBytes: number,
    readonly label: string = imagePath,
  ) {}

  async list(dir = '/'): Promise<FatEntry[]> {
    const parts = fatPathParts(dir, true);
    const result = await this.mtools('mdir', ['-a', this.dosPath(parts)]);
    return parseMdir(result.stdout).entries;
  }

  async readFile(path: string): Promise<Buffer> {
    const parts = fatPathParts(path);
    const entry = await this.entry(parts);
    if (!entry) throw new PibakeError(`${this.where()}: /${parts.join('/')} does not exist on the boot partition`);
    if (entry.dir) throw new PibakeError(`${this.where()}: /${parts.join('/')} is a directory, not a file`);
    const result = await runTool('mtype', ['-i', this.device(), this.dosPath(parts)], {
      env: mtoolsEnv(),
      extendEnv: false,
      encoding: 'buffer',
      stdin: 'ignore',
    });
    return toBuffer(result.stdout);
  }

  async exists(path: string): Promise<boolean> {
    const parts = fatPathParts(path, true);
    if (parts.length === 0) return true;
    return (await this.entry(parts)) !== undefined;
  }

  /** Writes every file in one mcopy run; parent directories are created, existing files replaced. */
  async writeFiles(files: { path: string; data: Buffer }[]): Promise<void> {
    if (files.length === 0) return;
    writeTimestamp(); // mtools stamps with SOURCE_DATE_EPOCH itself; this rejects a malformed value early
    await withStagingDir(this.imagePath, async (stage) => {
      const tops = new Set<string>();
      for (const file of files) {
        const parts = fatPathParts(file.path);
        const local = join(stage, ...parts);
        await mkdir(dirname(local), { recursive: true, mode: 0o700 });
        await writePrivateFile(local, file.data);
        tops.add(join(stage, parts[0] as string));
      }
      // -s: recurse into staged directories, merging with existing ones; -o: replace existing files.
      await this.mtools('mcopy', ['-s', '-o', ...[...tops].sort(), '::/']);
    });
  }

  /** Removes files and directories (recursively); paths that do not exist are ignored. */
  async remove(paths: string[]): Promise<void> {
    const files: string[] = [];
    const dirs: string[] = [];
    for (const path of paths) {
      const parts = fatPathParts(path);
      const entry = await this.entry(parts);
      if (entry) (entry.dir ? dirs : files).push(this.dosPath(parts));
    }
    if (files.length > 0) await this.mtools('mdel', files);
    if (dirs.length > 0) await this.mtools('mdeltree', dirs);
  }

  async freeBytes(): Promise<number> {
    return (await this.volumeInfo()).freeBytes;
  }

  async volumeInfo(): Promise<FatVolumeInfo> {
    const parsed = parseMdir((await this.mtools('mdir', ['-a', '::/'])).stdout);
    return { label: parsed.label, serial: parsed.serial, freeBytes: parsed.freeBytes };
  }

  private async entry(parts: string[]): Promise<FatEntry | undefined> {
    const name = parts[parts.length - 1]?.toLowerCase();
    const parentParts = parts.slice(0, -1);
    // A missing parent means the entry is missing too; mdir fails on it, so check step by step.
    if (parentParts.length > 0) {
      const parent = await this.entry(parentParts);
      if (!parent?.dir) return undefined;
    }
    const entries = parseMdir((await this.mtools('mdir', ['-a', this.dosPath(parentParts)])).stdout).entries;
    return entries.find((e) => e.name.toLowerCase() === name);
  }

  private device(): string {
    // mtools reads `name@@offset`; a name that already contains "@@" would be cut short.
    if (this.imagePath.includes('@@')) {
      throw new PibakeError(`${this.imagePath}: mtools cannot open a file whose name contains "@@"`, { hint: 'rename the image' });
    }
    return `${this.imagePath}@@${this.offsetBytes}`;
  }

  private dosPath(parts: string[]): string {
    return `::/${parts.join('/')}`;
  }

  private where(): string {
    return `${this.label} (FAT at byte ${this.offsetBytes})`;
  }

  private async mtools(tool: string, args: string[]): Promise<ToolResult> {
    return runTool(tool, ['-i', this.device(), ...args], { env: mtoolsEnv(), extendEnv: false, stdin: 'ignore' });
  }
}

/**
 * The environment mtools runs in: the caller's, minus anything that would make behaviour depend
 * on the machine (MTOOLS_* overrides, ~/.mtoolsrc via HOME), with timestamps in UTC.
 */
export function mtoolsEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('MTOOLS')) env[key] = value;
  }
  env.HOME = '/nonexistent'; // mtools reads $HOME/.mtoolsrc; MTOOLSRC only adds to it
  env.MTOOLSRC = '/dev/null';
  env.MTOOLS_SKIP_CHECK = '1';
  env.MTOOLS_LOWER_CASE = '0';
  env.TZ = 'UTC'; // FAT stores local time; make it the same on every machine
  return env;
}

const FAT_FORBIDDEN = /["*:<>?\\|]/;

/** Splits a boot-partition path ('cmdline.txt', '/overlays/x.dtbo') into checked components. */
export function fatPathParts(path: string, allowRoot = false): string[] {
  const parts = path.split('/').filter((p) => p !== '');
  const bad = parts.find((p) => p === '.' || p === '..' || FAT_FORBIDDEN.test(p) || hasControl(p) || p.length > 255);
  if (bad !== undefined || (!allowRoot && parts.length === 0)) {
    throw new PibakeError(`invalid boot partition path "${path}"`, {
      hint: 'use a relative path like overlays/name.dtbo without .., control characters or any of "*:<>?\\|',
    });
  }
  return parts;
}

function hasControl(text: string): boolean {
  return [...text].some((c) => c.charCodeAt(0) < 0x20);
}

export interface MdirListing {
  label: string;
  serial: string;
  freeBytes: number;
  entries: FatEntry[];
}

/** Parses `mdir -a` output: 8.3 name and extension columns, size or <DIR>, date, time, long name. */
export function parseMdir(text: string): MdirListing {
  const listing: MdirListing = { label: '', serial: '', freeBytes: 0, entries: [] };
  for (const line of text.split('\n')) {
    const label = /^ Volume in drive \S* ?is (.*)$/.exec(line);
    if (label) listing.label = (label[1] ?? '').trim();
    const serial = /^ Volume Serial Number is ([0-9A-Fa-f]{4}-[0-9A-Fa-f]{4})/.exec(line);
    if (serial) listing.serial = (serial[1] ?? '').toUpperCase();
    const free = /^\s+([\d ]+) bytes free/.exec(line);
    if (free) listing.freeBytes = Number((free[1] ?? '').replace(/ /g, ''));
    if (line.length < 13 || line[8] !== ' ') continue;
    const rest = /^\s*(<DIR>|\d+)\s+(\d[\d-]*-\d+)\s+(\d+:\d+)\s*(.*)$/.exec(line.slice(12));
    if (!rest) continue;
    const base = line.slice(0, 8).trimEnd();
    const ext = line.slice(9, 12).trim();
    const longName = (rest[4] ?? '').trim();
    const name = longName !== '' ? longName : ext !== '' ? `${base}.${ext}` : base;
    if (name === '.' || name === '..') continue;
    const dir = rest[1] === '<DIR>';
    listing.entries.push({ name, dir, size: dir ? 0 : Number(rest[1]) });
  }
  return listing;
}

/** execa gives a Uint8Array for `encoding: 'buffer'`; callers want a Buffer. */
function toBuffer(output: unknown): Buffer {
  const bytes = output as Uint8Array;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
