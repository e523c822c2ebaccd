/**
 * Writes rendered nodes into a plain folder for inspection (`pibake render`):
 *   <out>/<node>/rootfs/…      root filesystem entries (files, folders, symlinks)
 *   <out>/<node>/modes.txt     `mode uid gid kind path` per entry: a user's folder cannot hold root ownership
 *   <out>/<node>/bootfs/…      boot partition files
 *   <out>/<node>/boot-edits.txt  the edits made to the base's boot files (e.g. cmdline.txt)
 * Files that are not world-readable in the image (secrets) are written 0600 here. Nothing is
 * written through a symlink: files are created exclusively, and a node folder is only replaced
 * when it is empty or an earlier render (it has modes.txt).
 */
import { lstat, mkdir, open, readdir, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import { PibakeError } from '../common/errors.ts';
import type { RenderedNode, RootEntry } from './types.ts';

export async function writeRenderedNode(outDir: string, node: RenderedNode, baseCmdline?: string): Promise<string> {
  const dir = path.join(outDir, node.node);
  await prepareNodeDir(dir);
  const rootfs = path.join(dir, 'rootfs');
  const bootfs = path.join(dir, 'bootfs');
  await mkdir(rootfs, { recursive: true, mode: 0o755 });
  await mkdir(bootfs, { recursive: true, mode: 0o755 });
  const modes: string[] = [];
  for (const entry of node.rootEntries) {
    const target = inside(rootfs, entry.path);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    if (entry.kind === 'dir') await mkdir(target, { recursive: true, mode: 0o755 });
    else if (entry.kind === 'symlink') await symlink(entry.target, target);
    else await writeExclusive(target, entry.data, hostMode(entry));
    modes.push(`${entry.mode.toString(8).padStart(4, '0')} ${entry.uid} ${entry.gid} ${entry.kind} ${entry.path}`);
  }
  await writeExclusive(path.join(dir, 'modes.txt'), Buffer.from(modes.map((l) => `${l}\n`).join('')), 0o644);
  for (const file of node.bootFiles) {
    const target = inside(bootfs, `/${file.path}`);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    await writeExclusive(target, file.data, 0o644);
  }
  const edits = node.bootEdits.map((e) => `${e.path}: ${e.describe}\n`).join('');
  await writeExclusive(path.join(dir, 'boot-edits.txt'), Buffer.from(edits), 0o644);
  if (baseCmdline !== undefined) {
    let text = baseCmdline;
    for (const edit of node.bootEdits.filter((e) => e.path === 'cmdline.txt')) text = edit.edit(text);
    await writeExclusive(path.join(bootfs, 'cmdline.txt'), Buffer.from(text), 0o644);
  }
  return dir;
}

/** Host mode: entries others may not read in the image (secrets) stay private to the user here. */
function hostMode(entry: RootEntry): number {
  if ((entry.mode & 0o004) === 0) return entry.mode & 0o100 ? 0o700 : 0o600;
  return entry.mode & 0o777;
}

function inside(root: string, rootPath: string): string {
  const target = path.join(root, rootPath);
  if (path.relative(root, target).startsWith('..') || rootPath.split('/').includes('..')) {
    throw new PibakeError(`refusing to write ${rootPath} outside ${root}`);
  }
  return target;
}

async function writeExclusive(file: string, data: Buffer, mode: number): Promise<void> {
  const handle = await open(file, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
}

async function prepareNodeDir(dir: string): Promise<void> {
  const info = await lstat(dir).catch(() => undefined);
  if (!info) return;
  if (!info.isDirectory()) throw new PibakeError(`${dir} exists and is not a folder`, { hint: 'choose another --out folder' });
  const names = await readdir(dir);
  if (names.length > 0 && !names.includes('modes.txt')) {
    throw new PibakeError(`${dir} is not empty and not an earlier pibake render`, { hint: 'choose another --out folder or empty it' });
  }
  await rm(dir, { recursive: true, force: true });
}
