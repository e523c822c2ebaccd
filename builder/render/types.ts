/**
 * What rendering produces for one node: the files to bake into its root filesystem and the files
 * to write onto its boot partition. Pure data; the bake stage writes it with the image adapters.
 */
import type { BootEdit, BootFile, RootEntry } from '../common/node-files.ts';

// What a rendered node is made of, declared where the bake and image code can use it without rendering.
export { isSecretBearing } from '../common/node-files.ts';
export type { BootEdit, BootFile, RootEntry, RootEntryBase } from '../common/node-files.ts';

export interface RenderedNode {
  node: string;
  role: string;
  /** The build id its files carry (node.json, the cloud-init instance-id): bound after rendering (build-id.ts). */
  buildId: string;
  rootEntries: RootEntry[];
  bootFiles: BootFile[];
  /**
   * Edits to files the base already has on the boot partition (e.g. append ` ds=nocloud;i=...`
   * to cmdline.txt): applied to the base's content at bake time.
   */
  bootEdits: BootEdit[];
}
