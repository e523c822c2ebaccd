/**
 * The words the inventory and the image code share about a base image: where it comes from and
 * which Raspberry Pi OS generation it is. Declared here, outside both stages, so reading an image
 * does not depend on how an inventory is loaded.
 */

/** Raspberry Pi OS generations pibake knows; the base image's generation decides the first-boot mechanism. */
export type Generation = 'bookworm' | 'trixie';

export interface BaseImageSpec {
  /** A local .img/.img.xz/.img.zst/.zip, resolved to an absolute path. */
  path?: string;
  /** An https URL; then sha256 is required. */
  url?: string;
  /** Lowercase hex SHA-256 of the file at url/path (of the compressed file when compressed). */
  sha256?: string;
}
