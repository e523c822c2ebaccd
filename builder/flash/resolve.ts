/**
 * What `pibake flash NODE|IMAGE|URL` means: an existing image file, an https URL of one (downloaded
 * and checked by image/remote.ts), or a node of the cluster whose image lies where `pibake build`
 * writes it: <out>/<cluster>/<node>.img(.zst|.xz), the inventory read by the build's own loader.
 * The bmap next to the image (X.img.bmap or X.bmap) is used when there is one.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { clusterOutputDir } from '../package/output.ts';
import { imageUrlOf } from '../bytes/fetch.ts';
import { COMPRESSIONS, extensionOf } from '../bytes/formats.ts';
import { PibakeError } from '../common/errors.ts';
import { loadProject, selectNodes } from '../render/project.ts';

/** The build's record of an output folder, read to tell a sealed image (package/output.ts writes it). */
const MANIFEST = 'manifest.json';

/** The image files a build writes for a node: the raw one, then each compressed one (bytes/formats.ts). */
export const IMAGE_SUFFIXES = ['.img', ...COMPRESSIONS.map((c) => `.img${extensionOf(c)}`)];

/**
 * The image file or https URL (returned as given); `config`: the inventory (for node names); `out`:
 * the build's output root (--out, default ./output). A URL that is not https is refused.
 */
export async function resolveImage(nodeOrImage: string, where: { config: string; out: string }): Promise<string> {
  if (existsSync(nodeOrImage) || imageUrlOf(nodeOrImage)) return nodeOrImage;
  if (/[/\\]|\.img/.test(nodeOrImage)) {
    throw new PibakeError(`image ${nodeOrImage} does not exist`, { hint: 'name an existing image file or a node of the cluster' });
  }
  const { inventory } = await loadProject(where.config);
  selectNodes(inventory, [nodeOrImage]);
  const dir = clusterOutputDir(where.out, inventory);
  const found = IMAGE_SUFFIXES.map((s) => join(dir, `${nodeOrImage}${s}`)).find((p) => existsSync(p));
  if (!found) {
    throw new PibakeError(`no image for node "${nodeOrImage}" in ${dir}`, {
      hint: 'build it first with `pibake build`, or pass the folder it built into with --out',
    });
  }
  return found;
}

/** X.img.zst → X.img.bmap or X.bmap, whichever exists. */
export function bmapBeside(image: string): string | undefined {
  return bmapNames(image).find((p) => existsSync(p));
}

/** Where the bmap of X.img.zst may be, in the order looked at: X.img.bmap, X.bmap (also for names beside a URL). */
export function bmapNames(image: string): string[] {
  const packed = COMPRESSIONS.map(extensionOf).find((ext) => image.toLowerCase().endsWith(ext));
  const stem = packed ? image.slice(0, -packed.length) : image;
  return [...new Set([`${stem}.bmap`, `${stem.replace(/\.img$/i, '')}.bmap`])];
}

/** What is fetched beside an image given by URL: its bmap (either name) and the release's manifest.json (sealed or not). */
export function filesBesideImage(name: string): string[] {
  return [...bmapNames(name), MANIFEST];
}

/**
 * The node whose sealed image (`pibake build --sealed`) `image` is, from manifest.json beside it
 * (the build's output folder, or a downloaded release); undefined for any other image.
 */
export async function sealedNodeOf(image: string): Promise<string | undefined> {
  let manifest: { nodes?: Record<string, { sealed?: boolean; image?: { file?: string }; extras?: Record<string, { file?: string }> }> };
  try {
    manifest = JSON.parse(await readFile(join(dirname(image), MANIFEST), 'utf8')) as typeof manifest;
  } catch {
    return undefined;
  }
  const name = basename(image);
  for (const [node, record] of Object.entries(manifest.nodes ?? {})) {
    const files = [record.image?.file, ...Object.values(record.extras ?? {}).map((e) => e.file)];
    if (files.includes(name)) return record.sealed === true ? node : undefined;
  }
  return undefined;
}
