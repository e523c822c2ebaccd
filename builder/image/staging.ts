/**
 * Private staging folders for the bytes pibake hands to mcopy and debugfs (they read files from a
 * host folder). What is staged can be secret (database passwords, host keys), so the folder is
 * 0700, every file in it 0600, and it lives beside the image being edited (the output or cache
 * folder, not a shared /tmp): a Ctrl-C removes it at once, a SIGKILL leaves a `.partial` that the
 * next run's sweep removes.
 */
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { forgetOnExit, removeOnExit } from '../common/cleanup.ts';
import { stagingDirPath } from '../bytes/temp-name.ts';

/** Run `fn` with a fresh private folder beside `nearFile`; the folder is removed whatever happens. */
export async function withStagingDir<T>(nearFile: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = stagingDirPath(dirname(nearFile));
  removeOnExit(dir);
  try {
    await mkdir(dir, { mode: 0o700 });
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
    forgetOnExit(dir);
  }
}

/** A new file readable by its owner only (never replaces one). */
export async function writePrivateFile(path: string, data: string | Buffer): Promise<void> {
  await writeFile(path, data, { mode: 0o600, flag: 'wx' });
}

/** Folders under the system temp folder where earlier pibake builds staged (secrets included, 0644). */
const LEGACY_STAGING = /^pibake-(ext4|fat)-[A-Za-z0-9]{6}$/;
/** Older than any staging run takes: such a folder's writer is gone. */
const LEGACY_AGE_MS = 10 * 60 * 1000;

/**
 * Remove staging folders that earlier pibake versions left in the system temp folder when killed.
 * Only this user's own, and only ones untouched for 10 minutes (a running old build keeps its own).
 */
export async function sweepLegacyStaging(now = Date.now()): Promise<void> {
  const root = tmpdir();
  const names = await readdir(root).catch(() => [] as string[]);
  const uid = process.getuid?.();
  for (const name of names.filter((n) => LEGACY_STAGING.test(n))) {
    const info = await stat(join(root, name)).catch(() => undefined);
    if (!info?.isDirectory() || info.uid !== uid || now - info.mtimeMs < LEGACY_AGE_MS) continue;
    await rm(join(root, name), { recursive: true, force: true });
  }
}
