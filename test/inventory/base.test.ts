/**
 * The base image's rules are the inventory's, for cluster.yaml's `base` and for the command line's
 * --base/--base-sha256 alike: each mistake gets the same one-line message and hint either way,
 * naming the key at its line in the file, or the option.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatError } from '../../builder/common/errors.ts';
import { chooseBase, type BaseOverride } from '../../builder/inventory/base.ts';
import type { BaseImageSpec } from '../../builder/inventory/types.ts';
import { SHA, VALID, edit, locate, workspace, type Workspace } from './helpers.ts';

let ws: Workspace;
beforeAll(async () => {
  ws = await workspace();
});
afterAll(() => ws.cleanup());

const URL_LINE = /^ {2}url: .*$/m;
const INVENTORY_BASE: BaseImageSpec = { url: 'https://downloads.raspberrypi.com/x.img.xz', sha256: SHA };

/** The lines the CLI prints when the options are refused (fails the test if they are accepted). */
function optionErrors(override: BaseOverride): string[] {
  try {
    chooseBase(INVENTORY_BASE, override);
  } catch (error) {
    return formatError(error);
  }
  throw new Error(`accepted ${JSON.stringify(override)}`);
}

/** The one problem of cluster.yaml with `base` written as `lines`, without its file:line:column. */
async function fileError(lines: string, marker: string): Promise<string> {
  const yaml = VALID.replace(/^base:\n(?: {2}.*\n)+/m, `base:\n${lines}`);
  const problems = await ws.problems(yaml);
  expect(problems, problems.join('\n')).toHaveLength(1);
  const where = `${locate(yaml, marker)}: `;
  expect(problems[0]?.startsWith(where), problems[0]).toBe(true);
  return `error: ${problems[0]?.slice(where.length)}`;
}

describe('the base rules, in cluster.yaml and as --base/--base-sha256', () => {
  // [what, base in the file, where its problem is, the same as options, the file's message -> the option's]
  const cases: [string, string, string, BaseOverride, (text: string) => string][] = [
    ['a URL that is not https', `  url: http://x/y.img\n  sha256: ${SHA}\n`, '^http://x', { base: 'http://x/y.img', baseSha256: SHA },
      (text) => text.replace('base.url', '--base')],
    ['an ftp URL', `  url: ftp://x/y.img\n  sha256: ${SHA}\n`, '^ftp://x', { base: 'ftp://x/y.img', baseSha256: SHA },
      (text) => text.replace('base.url', '--base')],
    ['a URL with a space', `  url: "https://x/a b.img"\n  sha256: ${SHA}\n`, '^"https', { base: 'https://x/a b.img', baseSha256: SHA },
      (text) => text.replace('base.url', '--base')],
    ['a URL that does not parse', `  url: https://[x/y.img\n  sha256: ${SHA}\n`, '^https', { base: 'https://[x/y.img', baseSha256: SHA },
      (text) => text.replace('base.url', '--base')],
    ['a SHA-256 that is not one', '  path: ./x.img\n  sha256: xyz\n', '^xyz', { base: './x.img', baseSha256: 'xyz' },
      (text) => text.replace('base.sha256', '--base-sha256')],
    ['a URL without its SHA-256', '  url: https://x/y.img.xz\n', '^https', { base: 'https://x/y.img.xz' },
      (text) => text.replace('base.url has no sha256', '--base https://x/y.img.xz has no --base-sha256').replace('add sha256:', 'add --base-sha256 with')],
  ];

  it.each(cases)('%s: one line with a hint, the same in both', async (_what, lines, marker, override, asOption) => {
    const inFile = await fileError(lines, marker);
    expect(inFile).toMatch(/ \(hint: .+\)$/);
    const options = optionErrors(override);
    if (process.env.SHOW_ERRORS) console.log(`${inFile}\n${options.join('\n')}`);
    expect(options).toEqual([asOption(inFile)]);
    expect(options[0]).toMatch(/^error: --base/);
  });

  it('reports every problem of the options at once, one line each', () => {
    const lines = optionErrors({ base: 'http://x/y.img' });
    expect(lines).toEqual([
      expect.stringMatching(/^error: --base "http:\/\/x\/y\.img" is not an https URL \(hint: use the https:\/\/ address/),
      expect.stringMatching(/^error: --base http:\/\/x\/y\.img has no --base-sha256 \(hint: add --base-sha256 with the digest/),
    ]);
  });

  it('refuses an empty --base, and --base-sha256 without --base', () => {
    expect(optionErrors({ base: '' })).toEqual(['error: --base must not be empty']);
    expect(optionErrors({ baseSha256: SHA })).toEqual([
      expect.stringMatching(/^error: --base-sha256 is given without --base \(hint: give --base with the image/),
    ]);
  });

  it('the file alone: url and path together, or neither', async () => {
    expect(await fileError(`  url: https://x/y.img\n  sha256: ${SHA}\n  path: ./x.img\n`, '^./x.img')).toMatch(/^error: base has both url and path \(hint: /);
    expect(await fileError(`  sha256: ${SHA}\n`, '^base:')).toMatch(/^error: base names no image \(hint: add url:/);
  });
});

describe('chooseBase', () => {
  it('keeps the inventory\'s base when no option is given', () => {
    expect(chooseBase(INVENTORY_BASE, {})).toBe(INVENTORY_BASE);
  });

  it('takes an https URL with its SHA-256 (lowercased, as from the file)', () => {
    expect(chooseBase(INVENTORY_BASE, { base: 'https://x/y.img.xz', baseSha256: SHA.toUpperCase() })).toEqual({ url: 'https://x/y.img.xz', sha256: SHA });
  });

  it('takes a file, relative to the current folder, its SHA-256 optional', () => {
    expect(chooseBase(INVENTORY_BASE, { base: 'bases/raspios.img.xz' })).toEqual({ path: path.resolve('bases/raspios.img.xz') });
    expect(chooseBase(INVENTORY_BASE, { base: '/srv/r.img', baseSha256: SHA })).toEqual({ path: '/srv/r.img', sha256: SHA });
  });

  it('loads the same base from cluster.yaml as from the options', async () => {
    const url = 'https://x/y.img.xz';
    const inventory = await ws.load(edit(VALID, VALID.match(URL_LINE)?.[0] ?? '', `  url: ${url}`).replace(SHA, SHA.toUpperCase()));
    expect(inventory.base).toEqual(chooseBase(INVENTORY_BASE, { base: url, baseSha256: SHA.toUpperCase() }));
  });
});
