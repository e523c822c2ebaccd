/**
 * Exclusive locks on a folder (a build's output folder, the base cache while it is filled), held by
 * the kernel: a `flock` child process takes flock(2) on `<folder>/.pibake.lock` and keeps it while
 * its stdin, a pipe from this process, stays open. When this process ends in any way, SIGKILL and
 * power loss included, the pipe closes, the child exits and the lock is gone: a stale lock can never
 * block anyone, and no pid-file guessing is needed. The file itself stays (it is only the lock's
 * name) and records who holds it, for the message the next process prints.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PibakeError } from './errors.ts';
import { packageFor } from './exec.ts';

export interface FolderLock {
  release(): Promise<void>;
}

export interface LockHolder {
  pid: number;
  since: string;
  command: string;
}

const BUSY = 75;

export function lockFileOf(folder: string): string {
  return join(folder, '.pibake.lock');
}

/** The lock on `folder`, or undefined at once when another process holds it. */
export async function tryLockFolder(folder: string): Promise<FolderLock | undefined> {
  return takeLock(folder, false);
}

/** The lock on `folder`, waiting for the holder to finish; `onWait` hears who that is, once. */
export async function waitLockFolder(folder: string, onWait: (holder: LockHolder | undefined) => void): Promise<FolderLock> {
  const lock = await takeLock(folder, false);
  if (lock) return lock;
  onWait(await lockHolder(folder));
  return (await takeLock(folder, true)) as FolderLock;
}

/** Who holds (or last held) the lock on `folder`, as it recorded itself. */
export async function lockHolder(folder: string): Promise<LockHolder | undefined> {
  try {
    const parsed = JSON.parse(await readFile(lockFileOf(folder), 'utf8')) as Partial<LockHolder>;
    if (typeof parsed.pid !== 'number' || typeof parsed.since !== 'string' || typeof parsed.command !== 'string') return undefined;
    return { pid: parsed.pid, since: parsed.since, command: parsed.command };
  } catch {
    return undefined;
  }
}

/** "pid 1234, `pibake build`, since 19:40:12" for messages. */
export function describeHolder(holder: LockHolder | undefined): string {
  if (!holder) return 'another pibake process';
  const time = Number.isNaN(Date.parse(holder.since)) ? holder.since : new Date(holder.since).toLocaleTimeString();
  return `pid ${holder.pid} (${holder.command}, since ${time})`;
}

async function takeLock(folder: string, wait: boolean): Promise<FolderLock | undefined> {
  const file = lockFileOf(folder);
  const args = [...(wait ? [] : ['--nonblock', '--conflict-exit-code', String(BUSY)]), file, '-c', 'echo locked; read _'];
  // node's own spawn, not execa: every build takes this lock, and loading execa costs more than the spawn.
  const child = spawn('flock', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  // A flock killed from outside must not take this process down with an EPIPE at release.
  child.stdin.on('error', () => {});
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const acquired = await new Promise<boolean>((resolve, reject) => {
    child.stdout.once('data', () => resolve(true));
    child.once('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'ENOENT'
        ? new PibakeError('flock is not installed', { hint: `install it: apt-get install ${packageFor('flock')}`, cause: error })
        : error);
    });
    exited.then(([code, signal]) => {
      if (code === BUSY) resolve(false);
      else reject(new PibakeError(`flock ${file} failed (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').pop() ?? ''}`));
    }, reject);
  });
  if (!acquired) return undefined;
  // Once held, the lock must not keep this process alive: when it exits, the pipe closes and the lock goes.
  const handles = [child, child.stdin, child.stdout, child.stderr] as unknown as { ref?: () => void; unref?: () => void }[];
  for (const handle of handles) handle.unref?.();
  const holder: LockHolder = { pid: process.pid, since: new Date().toISOString(), command: commandLine() };
  await writeFile(file, `${JSON.stringify(holder)}\n`);
  return {
    release: async () => {
      // Wait until flock has exited (the lock is free) before going on, e.g. to a next build.
      for (const handle of handles) handle.ref?.();
      child.stdin.end();
      await exited;
    },
  };
}

function commandLine(): string {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('-')).slice(0, 1);
  return ['pibake', ...args].join(' ');
}
