/**
 * The output folder of one cluster (output/<cluster>/): finished files appear only by rename, so a
 * crash or Ctrl-C never leaves something that looks finished; work in progress carries a
 * `.partial` name that the next build sweeps away. manifest.json is both the operator's record
 * and the incremental state.
 */
import { mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { PibakeError } from '../common/errors.ts';
import type { Inventory } from '../inventory/types.ts';
import { sumLine } from '../bytes/checksums.ts';
import { isPartial } from '../bytes/temp-name.ts';

/**
 * Where a build of `inventory` writes: <out>/<cluster>/, `out` (--out, default ./output) taken from
 * the current folder. Every command that reads a build's output (status, flash) finds it here.
 */
export function clusterOutputDir(out: string, inventory: Pick<Inventory, 'cluster'>): string {
  return path.join(path.resolve(out), inventory.cluster.name);
}

export const MANIFEST_FORMAT = 1;

export interface Artifact {
  file: string;
  size: number;
  mtimeMs: number;
  sha256: string;
}

export interface ManifestNode {
  role: string;
  ip: string;
  diskId: string;
  /** Everything the image was made from, the secret values included: what decides a rebuild. */
  digest: string;
  /**
   * The same without the secret values (stand-ins count instead), as the card's own
   * /etc/pibake/manifest.json records it: a sealed image cannot know its secrets, and a card must
   * not carry anything derived from them. What `pibake status` checks a card against.
   */
  publicDigest?: string;
  /** `root:/path` / `boot:path` -> digest; lets the next build say which files changed. */
  files: Record<string, string>;
  image: Artifact;
  /** Compressed images and .bmap files made from this image, by kind ('zst', 'xz', 'bmap'). */
  extras: Record<string, Artifact & { fromDigest: string }>;
  /** Built with --sealed: the image lacks `secretFiles`, which `pibake seal` / `flash` add. */
  sealed?: boolean;
  /** The node's secret-bearing root files (made from cluster.secrets.yaml or the Wi-Fi passphrase). */
  secretFiles?: string[];
}

export interface OutputManifest {
  format: number;
  cluster: string;
  pibake: string;
  base: { source: string; sha256: string; generation: string };
  /** Every image in the folder is sealed (holds no secret): safe to publish. */
  sealed?: boolean;
  nodes: Record<string, ManifestNode>;
}

/**
 * Removes work in progress left by an interrupted build: unfinished files and staging folders.
 * All of them, whoever wrote them: the caller holds the folder's lock, so no other build is running.
 */
export async function sweepPartials(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  await Promise.all(names.filter(isPartial).map((n) => rm(path.join(dir, n), { force: true, recursive: true })));
}

export async function ensureOutputDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (cause) {
    throw new PibakeError(`cannot create the output folder ${dir}`, { cause, hint: 'choose another one with --out' });
  }
}

/** Writes a small file atomically: temp name, fsync, rename. */
export async function readManifest(dir: string, cluster: string): Promise<OutputManifest | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as OutputManifest;
    if (parsed.format !== MANIFEST_FORMAT || parsed.cluster !== cluster || typeof parsed.nodes !== 'object') return undefined;
    return parsed;
  } catch {
    return undefined; // no usable record: every node is built again
  }
}

export async function fileState(file: string): Promise<{ size: number; mtimeMs: number } | undefined> {
  try {
    const s = await stat(file);
    return s.isFile() ? { size: s.size, mtimeMs: s.mtimeMs } : undefined;
  } catch {
    return undefined;
  }
}

/** `SHA256SUMS` in the format `sha256sum -c` reads. */
export function sha256SumsText(manifest: OutputManifest): string {
  const lines: string[] = [];
  for (const name of Object.keys(manifest.nodes).sort()) {
    const node = manifest.nodes[name] as ManifestNode;
    lines.push(sumLine(node.image.sha256, node.image.file));
    for (const kind of Object.keys(node.extras).sort()) {
      const extra = node.extras[kind] as Artifact;
      lines.push(sumLine(extra.sha256, extra.file));
    }
  }
  return lines.join('');
}
