/** Files that appear whole: an update that changes nothing writes nothing. */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { updateFileAtomic } from '../../builder/bytes/atomic.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pibake-atomic-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('updateFileAtomic', () => {
  it('writes a new or different file, and leaves one that holds the same bytes untouched', async () => {
    const file = path.join(dir, 'manifest.json');
    expect(await updateFileAtomic(file, 'one\n')).toBe(true);
    expect(await readFile(file, 'utf8')).toBe('one\n');
    const before = await stat(file);
    expect(await updateFileAtomic(file, Buffer.from('one\n'))).toBe(false);
    expect((await stat(file)).ino).toBe(before.ino);
    expect(await updateFileAtomic(file, 'two\n')).toBe(true);
    expect(await readFile(file, 'utf8')).toBe('two\n');
    expect((await stat(file)).ino).not.toBe(before.ino);
    // A longer file that starts with the same bytes is different.
    await writeFile(file, 'two\nthree\n');
    expect(await updateFileAtomic(file, 'two\n')).toBe(true);
    expect(await readFile(file, 'utf8')).toBe('two\n');
  });
});
