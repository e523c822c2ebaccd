/**
 * The base image's rules, declared once: the `base` section of cluster.yaml and the command line's
 * `--base`/`--base-sha256` (which replace it for one build or render) go through the same field
 * specs and the same rule relating them, so the two cannot drift apart. Only the problems' names
 * differ: a key of the file at its line, or the option. Intake then trusts the spec it is given
 * and checks only what the file system can tell.
 */
import path from 'node:path';
import { imageAddressIssue, isAddress, missingDigestHint, SHA256_PATTERN } from '../bytes/address.ts';
import type { BaseImageSpec } from '../common/base-image.ts';
import { PibakeError, type Problem } from '../common/errors.ts';
import { checkText } from './shape.ts';
import type { Field, Issue, StringSpec } from './spec.ts';

const URL_SPEC: StringSpec = { type: 'string', pattern: /^https:\/\/\S+$/, label: 'https URL', format: 'https://host/path', check: imageAddressIssue };
const PATH_SPEC: StringSpec = { type: 'string', minLength: 1 };
const SHA256_SPEC: StringSpec = {
  type: 'string', pattern: SHA256_PATTERN, label: 'SHA-256', format: '64 hexadecimal digits, as printed by sha256sum', lowercase: true,
};

export const BASE_FIELD: Field = {
  key: 'base',
  description:
    'The Raspberry Pi OS image every node image starts from: a download `url` with its `sha256`, or a local `path` (sha256 optional, checked when given).',
  required: true,
  spec: {
    type: 'object',
    rules: 'Give either `url` and `sha256`, or `path` (with an optional `sha256`), not both.',
    jsonSchema: { oneOf: [{ required: ['url', 'sha256'], not: { required: ['path'] } }, { required: ['path'], not: { required: ['url'] } }] },
    fields: [
      {
        key: 'url',
        description: 'https address of a .img.xz/.img.zst/.zip/.img; downloaded once into the cache.',
        example: 'https://downloads.raspberrypi.com/raspios_lite_arm64/images/…/…-raspios-trixie-arm64-lite.img.xz',
        spec: URL_SPEC,
      },
      {
        key: 'path',
        description: 'A local image file; `~` is your home folder, relative paths start at the folder of cluster.yaml.',
        example: './raspios.img.xz',
        spec: PATH_SPEC,
      },
      {
        key: 'sha256',
        description: 'SHA-256 of the file as downloaded (of the compressed file when it is compressed), 64 hex digits.',
        spec: SHA256_SPEC,
      },
    ],
  },
};

/** A download is verified against its digest; https alone does not say it is the image meant. */
function missingSha256(url: string, sha256: string, add: string): Issue {
  return { message: `${url} has no ${sha256}`, hint: missingDigestHint(add) };
}

/**
 * The rules relating the keys of cluster.yaml's base (each value's own rules are in BASE_FIELD).
 * `written` tells whether a key is in the file at all (valid or not), so one mistake is reported once.
 */
export function checkBaseKeys(written: (key: string) => boolean, report: (key: string | undefined, issue: Issue) => void): void {
  if (written('url') && written('path')) {
    report('path', { message: 'base has both url and path', hint: 'keep one: url (downloaded and cached) or path (a local file)' });
  } else if (!written('url') && !written('path')) {
    report(undefined, { message: 'base names no image', hint: 'add url: (https address) with sha256:, or path: (a local image file)' });
  } else if (written('url') && !written('sha256')) {
    report('url', missingSha256('base.url', 'sha256', 'sha256:'));
  }
}

/** The command line's replacement for the inventory's base (`pibake build`/`render` --base, --base-sha256). */
export interface BaseOverride {
  /** A local image file (relative to the current folder) or an https URL (then baseSha256 too). */
  base?: string;
  baseSha256?: string;
}

/**
 * The base a build or render starts from: the inventory's, or the one the options name, checked
 * by the inventory's own rules. Every problem is reported at once, one line each, naming the option.
 */
export function chooseBase(inventoryBase: BaseImageSpec, override: BaseOverride): BaseImageSpec {
  const { base, baseSha256 } = override;
  if (base === undefined) {
    if (baseSha256 === undefined) return inventoryBase;
    throw new PibakeError('--base-sha256 is given without --base', {
      hint: 'give --base with the image it is the digest of; the base of cluster.yaml takes its digest from its own sha256:',
    });
  }
  const problems: Problem[] = [];
  const check = (text: string, spec: StringSpec, where: string): string | undefined => {
    const checked = checkText(text, spec, where);
    if (typeof checked === 'string') return checked;
    problems.push(checked);
    return undefined;
  };
  // Anything with a scheme is meant as an address (and so must be https), not as a file name.
  const isUrl = isAddress(base);
  const given = check(base, isUrl ? URL_SPEC : PATH_SPEC, '--base');
  const sha256 = baseSha256 === undefined ? undefined : check(baseSha256, SHA256_SPEC, '--base-sha256');
  if (isUrl && baseSha256 === undefined) problems.push(missingSha256(`--base ${base}`, '--base-sha256', '--base-sha256 with'));
  if (problems.length > 0 || given === undefined) {
    throw PibakeError.fromProblems(`--base ${base} is not a usable base`, problems);
  }
  if (isUrl) return { url: given, sha256: sha256 as string };
  return { path: path.resolve(given), ...(sha256 === undefined ? {} : { sha256 }) };
}
