/**
 * The .deb cache, keyed by content: `<cache>/debs/<sha256>.deb`. A file enters only after its
 * SHA-256 matched the archive's signed index, under a temp name renamed into place, so an entry is
 * always whole and right; every image, suite and build shares it.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { PibakeError } from '../common/errors.ts';

export class DebStore {
  constructor(readonly dir: string) {}

  static async open(cacheDir: string): Promise<DebStore> {
    const dir = path.resolve(cacheDir, 'debs');
    await mkdir(dir, { recursive: true });
    return new DebStore(dir);
  }

  pathOf(sha256: string): string {
    return path.join(this.dir, `${sha256}.deb`);
  }

  async has(sha256: string, size: number): Promise<boolean> {
    const info = await stat(this.pathOf(sha256)).catch(() => undefined);
    return info?.isFile() === true && info.size === size;
  }

  /** Adds `file` if its content hashes to `sha256`; a mismatch is an error, never an entry. */
  async put(file: string, sha256: string): Promise<void> {
    const actual = await sha256Of(file);
    if (actual !== sha256) {
      throw new PibakeError(`${path.basename(file)} does not match the archive's signed index (SHA256 ${actual.slice(0, 12)}… instead of ${sha256.slice(0, 12)}…)`, {
        hint: 'something between this machine and the archive altered it; name a mirror (packages.mirrors) or a proxy (packages.proxy) you trust, or build with --packages online',
      });
    }
    const temp = path.join(this.dir, `.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}-${sha256}`);
    try {
      await link(file, temp).catch(() => copyFile(file, temp));
      await rename(temp, this.pathOf(sha256));
    } finally {
      await rm(temp, { force: true });
    }
  }

  /** Makes the cached file appear at `target` (hard link, or a copy across filesystems). */
  async placeAt(sha256: string, target: string): Promise<void> {
    await link(this.pathOf(sha256), target).catch(() => copyFile(this.pathOf(sha256), target));
  }
}

export async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}
