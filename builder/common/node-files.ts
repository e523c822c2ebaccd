/**
 * The files of a node as data: entries of its root filesystem, files and edits of its boot
 * partition. Rendering makes them, the plan digests them, the image adapters write them; they live
 * here so that none of those stages imports another for the words alone.
 */
export interface RootEntryBase {
  /** Absolute path inside the root filesystem, normalised, never containing `..`. */
  path: string;
  mode: number; // permission bits only, e.g. 0o644
  uid: number;
  gid: number;
}

export type RootEntry =
  | (RootEntryBase & {
    kind: 'file';
    data: Buffer;
    /**
     * Names of the secrets its content was made from (role secrets as templates read them, and
     * `ssh_host_key`, `admin_password`, `admin_ssh_key`, `wifi_passphrase` for the files pibake
     * generates from cluster.secrets.yaml or the Wi-Fi passphrase). Non-empty: the file is
     * secret-bearing, left out of sealed images and written onto the card by `pibake flash`/`seal`.
     */
    secrets?: readonly string[];
  })
  | (RootEntryBase & { kind: 'dir' })
  | (RootEntryBase & { kind: 'symlink'; target: string });

/** A file made from a secret: left out of sealed images, written onto the card when it is sealed. */
export function isSecretBearing(entry: RootEntry): boolean {
  return entry.kind === 'file' && (entry.secrets?.length ?? 0) > 0;
}

export interface BootFile {
  /** Path on the FAT boot partition, e.g. `user-data` or `cmdline.txt`. */
  path: string;
  data: Buffer;
}

export interface BootEdit {
  path: string;
  /** Pure function of the base file's text. */
  edit: (current: string) => string;
  /** Stable description of the edit, part of the node's input digest. */
  describe: string;
}

/** What rendering produces for one node: its root-filesystem files, boot files and boot edits. */
export interface RenderedNode {
  node: string;
  role: string;
  /** The build id its files carry (node.json, the cloud-init instance-id): bound after rendering (render/build-id.ts). */
  buildId: string;
  rootEntries: RootEntry[];
  bootFiles: BootFile[];
  /**
   * Edits to files the base already has on the boot partition (e.g. append ` ds=nocloud;i=...`
   * to cmdline.txt): applied to the base's content at bake time.
   */
  bootEdits: BootEdit[];
}
