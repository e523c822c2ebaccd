/** The base image as the build reads it: taken in, opened, checked against the inventory, its packages known. */
import path from 'node:path';
import { readStatus } from '../carry/facts.ts';
import { parseDpkgStatus } from '../image/ext4.ts';
import { obtainBase, type BaseImage } from '../image/intake.ts';
import { openRaspiosImage, type RaspiosImage } from '../image/raspios.ts';
import type { BaseImageSpec, Inventory } from '../inventory/types.ts';
import type { BaseFacts } from '../render/project.ts';
import { checkInventoryAgainstBase } from './base-checks.ts';

/** Overrides of the inventory's base (--base, --base-sha256) and where it is cached. */
export interface BaseOptions {
  /** A local image file or an https URL (then baseSha256 too). */
  base?: string;
  baseSha256?: string;
  cacheDir?: string;
  progress: boolean;
}

export interface PreparedBase {
  spec: BaseImageSpec;
  /** The raw image in the cache, and its SHA-256. */
  base: BaseImage;
  image: RaspiosImage;
  facts: BaseFacts;
}

/**
 * The base image as a build uses it (and `pibake render --base`): taken in through the cache
 * (checked whole before it is cached), opened, checked against the inventory, and its installed
 * packages read.
 */
export async function prepareBase(inventory: Inventory, options: BaseOptions): Promise<PreparedBase> {
  const spec = baseSpec(inventory, options);
  const base = await obtainBase(spec, {
    cacheDir: options.cacheDir,
    progress: options.progress,
    // Intake refuses a damaged base before it is cached: both filesystems checked whole.
    validate: async (raw, label) => {
      await openRaspiosImage(raw, { label, checkFilesystems: true });
    },
  });
  const label = spec.url ? path.basename(new URL(spec.url).pathname) : path.basename(spec.path ?? '');
  const image = await openRaspiosImage(base.path, { label });
  await checkInventoryAgainstBase(inventory, image);
  const installedPackages = parseDpkgStatus((await readStatus(image.root, spec.path ?? spec.url ?? base.path)).toString('utf8'));
  return { spec, base, image, facts: { generation: image.generation, installedPackages: new Set(installedPackages.keys()) } };
}

function baseSpec(inventory: Inventory, options: BaseOptions): BaseImageSpec {
  if (!options.base) return inventory.base;
  if (/^https?:\/\//.test(options.base)) return { url: options.base, sha256: options.baseSha256 };
  return { path: path.resolve(options.base), sha256: options.baseSha256 };
}

