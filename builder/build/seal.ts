/**
 * `pibake seal IMAGE --node NAME --out FILE`: a sealed image (`pibake build --sealed`) made whole
 * with its node's secret files from the operator's cluster.secrets.yaml, into a local file for
 * Imager, Etcher or dd. The files are rendered exactly as a normal build renders them and written
 * with the same debugfs path (mode, owner, parents root:root 0755), so the result holds the files
 * an unsealed build of that node holds. The image is never modified; the output appears by rename.
 */
import { chmod, lstat, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { openImageFile, unpackImageFile } from '../bytes/open.ts';
import { siblingTempPath } from '../bytes/temp-name.ts';
import { forgetOnExit, removeOnExit } from '../common/cleanup.ts';
import { PibakeError } from '../common/errors.ts';
import { toolVersion } from '../common/paths.ts';
import { cloneImage } from '../image/copy.ts';
import { openRaspiosImage, verifyBakedImage, type RaspiosImage } from '../image/raspios.ts';
import { withStagingDir } from '../image/staging.ts';
import type { NodeSpec } from '../inventory/types.ts';
import { writeBmapFile } from '../package/bmap.ts';
import { describeChanges } from '../plan/plan.ts';
import type { PackageSource } from '../render/firstboot.ts';
import { loadProject, renderProjectNode, selectNodes, type Project } from '../render/project.ts';
import { readExistingSecrets, standInSecrets } from '../render/secrets.ts';
import { isSecretBearing, type RootEntry } from '../common/node-files.ts';
import { nodeDigest } from './build-cluster.ts';

export interface SealOptions {
  /** A sealed image (`<node>.img` of a `--sealed` build), raw, compressed or zipped (bytes/open.ts reads it). */
  image: string;
  node: string;
  out: string;
  /** The inventory the image was built from; cluster.secrets.yaml beside it. */
  config: string;
}

export interface SealResult {
  out: string;
  /** The secret files written, in the order written. */
  added: string[];
}

/** What `/etc/pibake/manifest.json` of a card says (inImageManifest in build.ts). */
interface CardManifest {
  pibake: string;
  cluster: string;
  node: string;
  diskId: string;
  digest: string;
  base: { sha256: string };
  files: Record<string, string>;
  secretFiles?: string[];
  /** Where the role packages come from ('card' or 'online'): it shapes the first-boot files. */
  packages?: { from?: PackageSource };
}

const CARD_MANIFEST = '/etc/pibake/manifest.json';

export async function sealImage(options: SealOptions): Promise<SealResult> {
  const label = path.basename(options.image);
  const out = path.resolve(options.out);
  if (out === path.resolve(options.image)) {
    throw new PibakeError(`--out ${options.out} is the image itself`, { hint: 'seal into a new file; the sealed image stays publishable as it is' });
  }
  if (!(await stat(options.image).catch(() => undefined))?.isFile()) {
    throw new PibakeError(`image ${options.image} does not exist or is not a file`, { hint: 'name the node\'s image from pibake build --sealed (.img, .img.xz, .img.zst or .zip)' });
  }
  const existing = await lstat(out).catch(() => undefined);
  if (existing && !existing.isFile()) {
    throw new PibakeError(`--out ${options.out} exists and is not a regular file`, { hint: 'to write a card, use pibake flash NODE --device DEV; seal writes image files only' });
  }

  // Loaded as pibake build loads them, so the files rendered here are the build's.
  const project = await loadProject(options.config);
  const [node] = selectNodes(project.inventory, [options.node]) as [NodeSpec];

  // A compressed image is unpacked (sparse) into the output's temp file first, and checked there.
  const partial = siblingTempPath(out);
  removeOnExit(partial);
  try {
    const file = await openImageFile(options.image, label);
    const compressed = file.format !== 'raw';
    if (compressed) await unpackImageFile(file, partial);
    const source = await openRaspiosImage(compressed ? partial : options.image, { label });
    const entries = await secretEntries(project, node, label, source);
    if (!compressed) await cloneImage(source.path, partial);
    // It is about to hold the node's secrets: its owner's only (like a normal build's image) first.
    await chmod(partial, 0o600);
    const image = await openRaspiosImage(partial, { label: path.basename(out) });
    await image.root.apply(entries);
    await verifyBakedImage(partial, path.basename(out));
    await rename(partial, out);
    return { out, added: entries.map((e) => e.path) };
  } finally {
    await rm(partial, { force: true });
    forgetOnExit(partial);
  }
}

/**
 * Seals a copy of `image` in a private folder beside it (0700, removed whatever happens, swept by
 * the next build after a kill) and hands `fn` the copy and a bmap of it: what `pibake flash` writes
 * when given a sealed image, so the card is verified against the whole sealed-then-sealed map.
 */
export async function withSealedCopy<T>(options: Omit<SealOptions, 'out'>, fn: (card: string, bmap: string) => Promise<T>): Promise<T> {
  return withStagingDir(options.image, async (dir) => {
    const card = path.join(dir, `${options.node}.img`);
    await sealImage({ ...options, out: card });
    const bmap = `${card}.bmap`;
    await writeBmapFile(card, bmap);
    return fn(card, bmap);
  });
}

/** The node's secret-bearing files as a normal build renders them, after every check on the image. */
async function secretEntries(project: Project, node: NodeSpec, label: string, source: RaspiosImage): Promise<RootEntry[]> {
  const { inventory, roles } = project;
  const card = await readCardManifest(source);
  if (card.cluster !== inventory.cluster.name || card.node !== node.name) {
    throw new PibakeError(`${label} is the image of node ${card.node} of cluster ${card.cluster}, not of node ${node.name} of cluster ${inventory.cluster.name}`, {
      hint: `seal ${node.name}.img with --node ${node.name}, using the inventory it was built from`,
    });
  }
  if (card.pibake !== toolVersion) {
    throw new PibakeError(`${label} was built by pibake ${card.pibake}; this is pibake ${toolVersion}, which may render its files differently`, {
      hint: `seal with pibake ${card.pibake}, the version that built the image`,
    });
  }
  const secretFiles = card.secretFiles ?? [];
  const present: string[] = [];
  for (const file of secretFiles) if (await source.root.exists(file)) present.push(file);
  if (secretFiles.length === 0 || present.length > 0) {
    throw new PibakeError(`${label} is not a sealed image: it already holds ${present.length > 0 ? present.join(', ') : 'everything its node needs'}`, {
      hint: 'seal an image from pibake build --sealed; an image from a normal build can be flashed as it is',
    });
  }

  // Only the node's own secrets are needed, and all of them: a fresh value would not match the cluster.
  const secrets = await readExistingSecrets(inventory, roles, [node.name]);
  const base = { generation: source.generation, installedPackages: new Set((await source.root.readDpkgStatus()).keys()) };
  // Rendered as the build renders it: the public digest must be the one the card records, or the
  // inventory, roles or overlays changed since the image was built and the files would not fit it.
  // The carried .debs are on the card already and sealing leaves them as they are: their digests
  // are taken from the card's own record.
  const carried = Object.fromEntries(Object.entries(card.files).filter(([key]) => key.startsWith('carry:')));
  const packages = card.packages?.from ?? 'card';
  const rendering = await renderProjectNode(project, node, { secrets, standIns: standInSecrets(inventory, roles), base, packages });
  const digest = nodeDigest(rendering, { baseSha256: card.base.sha256, diskId: card.diskId, sealed: false, extra: carried });
  if (digest.publicDigest !== card.digest) {
    const changes = describeChanges(card.files, digest.files);
    throw new PibakeError(`${label} was not built from ${path.basename(inventory.file)} as it is now${changes.length > 0 ? `: ${changes.join(', ')}` : ' (base image or disk id differ)'}`, {
      hint: 'seal with the inventory, roles and overlays the image was built from (the release\'s commit), or build the image again',
    });
  }
  return rendering.rendered.rootEntries.filter(isSecretBearing);
}

async function readCardManifest(image: RaspiosImage): Promise<CardManifest> {
  const hint = 'seal an image made by pibake build --sealed (output/<cluster>/<node>.img)';
  if (!(await image.root.exists(CARD_MANIFEST))) throw new PibakeError(`${image.label} has no ${CARD_MANIFEST}: it was not built by pibake`, { hint });
  try {
    const parsed = JSON.parse((await image.root.readFile(CARD_MANIFEST)).toString('utf8')) as CardManifest;
    if (typeof parsed.digest === 'string' && typeof parsed.node === 'string' && typeof parsed.files === 'object') return parsed;
  } catch {
    // reported below
  }
  throw new PibakeError(`${image.label}: ${CARD_MANIFEST} is not a pibake card manifest`, { hint });
}
