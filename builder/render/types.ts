/**
 * What rendering produces for one node: the files to bake into its root filesystem and the files
 * to write onto its boot partition. Pure data; the bake stage writes it with the image adapters.
 */
export interface RootEntryBase {
  /** Absolute path inside the root filesystem, normalised, never containing `..`. */
  path: string;
  mode: number; // permission bits only, e.g. 0o644
  uid: number;
  gid: number;
}

export type RootEntry =
  | (RootEntryBase & { kind: 'file'; data: Buffer })
  | (RootEntryBase & { kind: 'dir' })
  | (RootEntryBase & { kind: 'symlink'; target: string });

export interface BootFile {
  /** Path on the FAT boot partition, e.g. `user-data` or `cmdline.txt`. */
  path: string;
  data: Buffer;
}

export interface RenderedNode {
  node: string;
  role: string;
  rootEntries: RootEntry[];
  bootFiles: BootFile[];
  /**
   * Edits to files the base already has on the boot partition (e.g. append ` ds=nocloud;i=...`
   * to cmdline.txt): applied to the base's content at bake time.
   */
  bootEdits: BootEdit[];
}

export interface BootEdit {
  path: string;
  /** Pure function of the base file's text. */
  edit: (current: string) => string;
  /** Stable description of the edit, part of the node's input digest. */
  describe: string;
}
