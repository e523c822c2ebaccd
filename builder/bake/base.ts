/** The base image as the build reads it: taken in, its facts known, checked against the inventory. */
import path from 'node:path';
import type { Ext4Fs } from '../image/ext4.ts';
import { obtainBase, resolveCacheDir, type BaseImage, type UnpackProgress } from '../image/intake.ts';
import type { BaseImageSpec, Inventory } from '../inventory/types.ts';
import type { BaseFacts } from '../render/project.ts';
import { checkInventoryAgainstBase } from './base-checks.ts';
import { readBaseFacts } from './base-facts.ts';

/** Where the base is cached, and who hears how its unpacking goes (the build's reporter). */
export interface BaseOptions {
  cacheDir?: string;
  onUnpack?: (progress: UnpackProgress) => void;
}

export interface PreparedBase {
  spec: BaseImageSpec;
  /** The raw image in the cache, and its SHA-256. */
  base: BaseImage;
  facts: BaseFacts;
  /** The base's root filesystem, opened on demand (carrying packages reads its apt configuration). */
  openRoot: () => Promise<Ext4Fs>;
}

/**
 * The inventory's base image (the command line's --base already in its place, see loadProject)
 * as a build uses it (and `pibake render --base`): taken in through the cache (checked whole
 * before it is cached), its facts (generation, installed packages, accounts, time zones) read once
 * per base and then taken from the cache (base-facts.ts), and the inventory checked against them.
 */
export async function prepareBase(inventory: Inventory, options: BaseOptions): Promise<PreparedBase> {
  const spec = inventory.base;
  const base = await obtainBase(spec, {
    cacheDir: options.cacheDir,
    onProgress: options.onUnpack,
    // Intake refuses a damaged base before it is cached: both filesystems checked whole.
    validate: async (raw, label) => {
      const { openRaspiosImage } = await import('../image/raspios.ts');
      await openRaspiosImage(raw, { label, checkFilesystems: true });
    },
  });
  const label = spec.url ? path.basename(new URL(spec.url).pathname) : path.basename(spec.path ?? '');
  const record = await readBaseFacts(base, {
    label, source: spec.path ?? spec.url, cacheDir: resolveCacheDir(options.cacheDir), zones: [inventory.locale.timezone],
  });
  checkInventoryAgainstBase(inventory, { label, facts: record });
  return {
    spec,
    base,
    facts: { generation: record.generation, installedPackages: new Set(record.installedPackages) },
    openRoot: async () => (await (await import('../image/raspios.ts')).openRaspiosImage(base.path, { label })).root,
  };
}
