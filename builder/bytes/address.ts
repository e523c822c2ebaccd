/**
 * What an image's address and digest must be, wherever one is given: cluster.yaml's base, the
 * build's --base/--base-sha256, and flash's and inspect's IMAGE/--sha256. A card runs what it is
 * given, so an address is https only, and a download is pinned by the SHA-256 the operator trusts.
 * The rules return what is wrong (the caller names the value: a key at its line, or an option).
 */

export interface AddressIssue {
  message: string;
  hint: string;
}

/** 64 hex digits, as sha256sum prints them (either case; pibake keeps them lower case). */
export const SHA256_PATTERN = /^[0-9a-fA-F]{64}$/;

/** Anything with a scheme (`name://`) is meant as an address, not as a file name. */
export function isAddress(text: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(text);
}

/** Why `text`, named `where`, is not an address an image may be downloaded from; undefined when it is. */
export function imageAddressIssue(text: string, where: string): AddressIssue | undefined {
  if (!/^https:\/\//i.test(text)) {
    return {
      message: `${where} "${text}" is not an https URL`,
      hint: 'use the https:// address (downloads.raspberrypi.com and release hosts serve https); the SHA-256 pins the content, https keeps the download private and tamper-evident',
    };
  }
  if (/\s/.test(text)) return { message: `${where} "${text}" contains spaces`, hint: 'percent-encode spaces as %20' };
  if (!URL.canParse(text)) return { message: `${where} "${text}" is not a URL`, hint: 'write a full address, https://host/path/image.img.xz' };
  return undefined;
}

/** Why `text`, named `where`, is not a SHA-256; undefined when it is. */
export function sha256Issue(text: string, where: string): AddressIssue | undefined {
  if (SHA256_PATTERN.test(text.trim())) return undefined;
  return { message: `${where} "${text}" is not a SHA-256`, hint: 'write the 64 hex digits that sha256sum (or the release\'s SHA256SUMS) prints for the file' };
}

/** The hint for an address given without its digest; `add` says where the digest goes. */
export function missingDigestHint(add: string): string {
  return `add ${add} the digest published next to the image (the .sha256 file, the release's SHA256SUMS), so the download is verified`;
}
