/**
 * What rendering produces for one node: the files to bake into its root filesystem and the files
 * to write onto its boot partition. Pure data, declared in common/node-files.ts, where the plan,
 * bake and image code can use it without importing the render stage.
 */
export { isSecretBearing } from '../common/node-files.ts';
export type { BootEdit, BootFile, RenderedNode, RootEntry, RootEntryBase } from '../common/node-files.ts';
