/**
 * Where the image goes: a whole block device (a card) or a regular file (a card image, or a stand-in
 * in tests). Gathers the facts the safety rules judge, opens targets for writing, and drops a block
 * device's cached pages before read-back so that verification reads the card, not memory.
 */
import { constants } from 'node:fs';
import { type FileHandle, open, realpath, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { PibakeError, type Problem } from '../common/errors.ts';
import { runTool } from '../common/exec.ts';
import { findDevice, holdsRoot, listBlockDevices, rootMajMin, type BlockDevice } from './devices.ts';
import type { TargetFacts } from './safety.ts';

export interface OpenTarget {
  path: string;
  kind: 'file' | 'block';
  handle: FileHandle;
  device?: BlockDevice;
}

export async function gatherFacts(paths: readonly string[], imagePath: string): Promise<TargetFacts[]> {
  let devices: BlockDevice[] | undefined;
  let rootDev: string | undefined;
  const imageReal = await realpath(imagePath).catch(() => imagePath);
  const facts: TargetFacts[] = [];
  for (const path of paths) {
    const info = await stat(path).catch(() => undefined);
    const real = await realpath(path).catch(() => resolve(path));
    if (!info) {
      facts.push({ path, real, kind: 'file', exists: false, size: 0, sameAsImage: false });
    } else if (info.isFile()) {
      facts.push({ path, real, kind: 'file', exists: true, size: info.size, sameAsImage: real === imageReal });
    } else if (info.isBlockDevice()) {
      devices ??= await listBlockDevices();
      rootDev ??= await rootMajMin();
      const found = findDevice(devices, real);
      facts.push({
        path,
        real,
        kind: 'block',
        device: found?.device,
        disk: found?.disk,
        holdsRoot: found ? holdsRoot(found.disk, rootDev) : false,
      });
    } else {
      facts.push({ path, real, kind: 'other', what: info.isDirectory() ? 'a directory' : info.isCharacterDevice() ? 'a character device' : 'not a regular file' });
    }
  }
  return facts;
}

/** Unmounts what --unmount allowed, deepest first. */
export async function unmountAll(mounts: readonly { device: string; mountpoint: string }[]): Promise<void> {
  for (const { mountpoint } of mounts) await runTool('umount', [mountpoint]);
}

/**
 * Opens every target read-write. Block devices are opened with O_EXCL, which Linux refuses with
 * EBUSY while the device is mounted or claimed by anyone else. New files are created at the
 * image's size (sparse). On any failure, whatever was opened is closed and all failures reported.
 */
export async function openTargets(facts: readonly TargetFacts[], imageSize: number): Promise<OpenTarget[]> {
  const opened: OpenTarget[] = [];
  const problems: Problem[] = [];
  for (const t of facts) {
    try {
      if (t.kind === 'block') {
        const handle = await open(t.path, constants.O_RDWR | constants.O_EXCL);
        opened.push({ path: t.path, kind: 'block', handle, device: t.device });
      } else if (t.kind === 'file') {
        const handle = await open(t.path, constants.O_RDWR | constants.O_CREAT, 0o644);
        if (!t.exists) await handle.truncate(imageSize);
        opened.push({ path: t.path, kind: 'file', handle });
      }
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      problems.push(
        code === 'EBUSY'
          ? { message: `${t.path}: is in use (mounted, or opened by another program)`, hint: 'unmount it and close programs using it, then retry' }
          : { message: `${t.path}: cannot be opened for writing: ${(error as Error).message}`, hint: code === 'EACCES' || code === 'EPERM' ? 'writing to a card needs root (or membership of the disk group)' : 'check the path' },
      );
    }
  }
  if (problems.length > 0) {
    await Promise.all(opened.map((o) => o.handle.close()));
    throw PibakeError.fromProblems('cannot open the targets', problems);
  }
  return opened;
}

/**
 * Makes written data durable: fsync, and for a block device also `blockdev --flushbufs`
 * (BLKFLSBUF), which writes back and then drops the device's page cache, so that the following
 * read-back comes from the device itself. Regular files have no such per-file drop in Node
 * (no posix_fadvise); their read-back may be served from the page cache.
 */
export async function flushTarget(target: OpenTarget): Promise<void> {
  await target.handle.sync();
  if (target.kind === 'block') await runTool('blockdev', ['--flushbufs', target.path]);
}
