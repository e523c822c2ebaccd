/**
 * The words the inventory and the image code share about a base image: where it comes from and
 * which Raspberry Pi OS generation it is. Declared here, outside both stages, so reading an image
 * does not depend on how an inventory is loaded.
 */

/** Raspberry Pi OS generations pibake knows; the base image's generation decides the first-boot mechanism. */
export type Generation = 'bookworm' | 'trixie';

/**
 * Where the base image comes from, as checked by the inventory's rules (inventory/base.ts, for
 * cluster.yaml and --base alike): a local file, or an https URL with the SHA-256 that pins it.
 * The SHA-256 is lowercase hex of the file as given (of the compressed file when compressed).
 */
export type BaseImageSpec =
  /** A local .img/.img.xz/.img.zst/.zip, resolved to an absolute path; a sha256 given is checked. */
  | { path: string; sha256?: string; url?: undefined }
  /** An https URL, downloaded once into the cache and verified against sha256. */
  | { url: string; sha256: string; path?: undefined };
