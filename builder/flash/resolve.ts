/**
 * What `pibake flash NODE|IMAGE` means: an existing image file, or a node of the cluster whose
 * image lies in output/<cluster>/<node>.img(.zst|.xz) beside the config. The bmap next to the
 * image (X.img.bmap or X.bmap) is used when there is one.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { load } from 'js-yaml';
import { PibakeError } from '../common/errors.ts';

export const IMAGE_SUFFIXES = ['.img', '.img.zst', '.img.xz'];

export function resolveImage(nodeOrImage: string, configPath = 'cluster.yaml'): string {
  if (existsSync(nodeOrImage)) return nodeOrImage;
  if (/[/\\]|\.img/.test(nodeOrImage)) {
    throw new PibakeError(`image ${nodeOrImage} does not exist`, { hint: 'name an existing image file or a node of the cluster' });
  }
  const cluster = clusterName(configPath);
  const base = join(dirname(resolve(configPath)), 'output', cluster, nodeOrImage);
  const found = IMAGE_SUFFIXES.map((s) => base + s).find((p) => existsSync(p));
  if (!found) {
    throw new PibakeError(`no image for node "${nodeOrImage}" in ${dirname(base)}`, {
      hint: `build it first with \`pibake build\`, or check the node name in ${configPath}`,
    });
  }
  return found;
}

/** X.img.zst → X.img.bmap or X.bmap, whichever exists. */
export function bmapBeside(image: string): string | undefined {
  const stem = image.replace(/\.(zst|xz)$/i, '');
  const candidates = [`${stem}.bmap`, `${stem.replace(/\.img$/i, '')}.bmap`];
  return candidates.find((p) => existsSync(p));
}

/**
 * The node whose sealed image (`pibake build --sealed`) `image` is, from manifest.json beside it
 * (the build's output folder, or a downloaded release); undefined for any other image.
 */
export async function sealedNodeOf(image: string): Promise<string | undefined> {
  let manifest: { nodes?: Record<string, { sealed?: boolean; image?: { file?: string }; extras?: Record<string, { file?: string }> }> };
  try {
    manifest = JSON.parse(await readFile(join(dirname(image), 'manifest.json'), 'utf8')) as typeof manifest;
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

function clusterName(configPath: string): string {
  let doc: unknown;
  try {
    doc = load(readFileSync(configPath, 'utf8'));
  } catch (error) {
    throw new PibakeError(`cannot read ${configPath}: ${(error as Error).message.split('\n')[0]}`, {
      hint: 'pass --config with the cluster inventory, or name an image file instead of a node',
      cause: error,
    });
  }
  const name = (doc as { cluster?: { name?: unknown } } | undefined)?.cluster?.name;
  if (typeof name !== 'string' || name === '') {
    throw new PibakeError(`${configPath} has no cluster.name`, { hint: 'add cluster: { name: ... } to the inventory' });
  }
  return name;
}
