/**
 * `--base`/`--base-sha256` go through the inventory's base rules (test/inventory/base.test.ts):
 * through the compiled CLI, a bad one is one line naming the option, a non-zero exit, and no work
 * started (no output folder, nothing in the cache, no download tried).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smallProject } from '../helpers/build-project.ts';
import { entriesOf } from '../helpers/image.ts';

const bin = path.resolve(import.meta.dirname, '../../bin/pibake.js');
const SHA = 'ab'.repeat(32);

let work: string;
let config: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pibake-base-options-'));
  config = await smallProject(path.join(work, 'project'));
});
afterAll(() => rm(work, { recursive: true, force: true }));

// Unresolvable hosts: had pibake tried to download, the error would be a network one.
const cases: [string, string[], RegExp][] = [
  ['an http URL', ['--base', 'http://x.invalid/y.img', '--base-sha256', SHA],
    /^error: --base "http:\/\/x\.invalid\/y\.img" is not an https URL \(hint: use the https:\/\/ address .*\)$/],
  ['an https URL without --base-sha256', ['--base', 'https://x.invalid/y.img.xz'],
    /^error: --base https:\/\/x\.invalid\/y\.img\.xz has no --base-sha256 \(hint: add --base-sha256 with the digest published next to the image .*\)$/],
  ['a --base-sha256 that is not one', ['--base', 'https://x.invalid/y.img.xz', '--base-sha256', 'xyz'],
    /^error: --base-sha256: "xyz" is not a valid SHA-256 \(hint: 64 hexadecimal digits, as printed by sha256sum\)$/],
  ['--base-sha256 without --base', ['--base-sha256', SHA],
    /^error: --base-sha256 is given without --base \(hint: .*\)$/],
];

describe('bad --base options: one line, a non-zero exit, nothing built', () => {
  it.each(cases)('pibake build with %s', async (_what, options, expected) => {
    const out = path.join(work, 'out');
    const cache = path.join(work, 'cache');
    const run = await execa(process.execPath, [bin, 'build', '-c', config, '-o', out, '--cache-dir', cache, ...options], { reject: false });
    if (process.env.SHOW_ERRORS) console.log(run.stderr);
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr.split('\n')).toEqual([expect.stringMatching(expected)]);
    expect(run.stdout).toBe('');
    expect(await entriesOf(out)).toEqual([]);
    expect(await entriesOf(cache)).toEqual([]);
  });

  it.each(cases)('pibake render with %s', async (_what, options, expected) => {
    const out = path.join(work, 'rendered');
    const run = await execa(process.execPath, [bin, 'render', '-c', config, '-o', out, ...options], { reject: false });
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr.split('\n')).toEqual([expect.stringMatching(expected)]);
    expect(await entriesOf(out)).toEqual([]);
  });
});
