/** The base image as the build reads it: taken in, opened, checked against the inventory, its packages known. */
import path from 'node:path';
import { readStatus } from '../carry/facts.ts';
import { parseDpkgStatus } from '../image/ext4.ts';
import { obtainBase, type BaseImage, type UnpackProgress } from '../image/intake.ts';
import { openRaspiosImage, type RaspiosImage } from '../image/raspios.ts';
import type { BaseImageSpec, Inventory } from '../inventory/types.ts';
import type { BaseFacts } from '../render/project.ts';
import { checkInventoryAgainstBase } from './base-checks.ts';

/** Where the base is cached, and who hears how its unpacking goes (the build's reporter). */
export interface BaseOptions {
  cacheDir?: string;
  onUnpack?: (progress: UnpackProgress) => void;
}

export interface PreparedBase {
  spec: BaseImageSpec;
  /** The raw image in the cache, and its SHA-256. */
  base: BaseImage;
  image: RaspiosImage;
  facts: BaseFacts;
}

/**
 * The inventory's base image (the command line's --base already in its place, see loadProject)
 * as a build uses it (and `pibake render --base`): taken in through the cache
 * (checked whole before it is cached), opened, checked against the inventory, and its installed
 * packages read.
 */
export async function prepareBase(inventory: Inventory, options: BaseOptions): Promise<PreparedBase> {
  const spec = inventory.base;
  const base = await obtainBase(spec, {
    cacheDir: options.cacheDir,
    onProgress: options.onUnpack,
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
