import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkFormat, extensionOf, formatByName, FORMATS, readHeader, sniffFormat, toolOf } from '../../builder/bytes/formats.ts';
import { makeDiskImage, scratchDir } from '../image/intake-fixture.ts';

let dir: string;
let cleanup: () => Promise<void>;
const made: Record<string, string> = {};

beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir('formats'));
  made.raw = join(dir, 'disk.img');
  await makeDiskImage(made.raw, 4);
  // The real programs make the samples: the table's magic must be theirs.
  await execa('xz', ['-0', '-k', made.raw]);
  await execa('zstd', ['-q', '-k', made.raw]);
  await execa('zip', ['-q', '-j', join(dir, 'disk.zip'), made.raw]);
  made.xz = `${made.raw}.xz`;
  made.zstd = `${made.raw}.zst`;
  made.zip = join(dir, 'disk.zip');
  made.text = join(dir, 'notes.txt');
  await writeFile(made.text, 'plain text, 512 bytes or more. '.repeat(20));
});
afterAll(() => cleanup());

describe('the format table', () => {
  it('recognises what xz, zstd, zip and sfdisk write by their first bytes, and nothing in text', async () => {
    for (const format of ['raw', 'xz', 'zstd', 'zip'] as const) expect(sniffFormat(await readHeader(made[format] as string))).toBe(format);
    expect(sniffFormat(await readHeader(made.text as string))).toBeUndefined();
    // Too short to tell a raw disk (its signature is at bytes 510-511).
    expect(sniffFormat((await readHeader(made.raw as string)).subarray(0, 100))).toBeUndefined();
  });

  it('declares each format once, with the programs that really read them', async () => {
    expect(new Set(FORMATS.map((f) => f.format)).size).toBe(FORMATS.length);
    for (const compression of ['xz', 'zstd'] as const) {
      expect(extensionOf(compression)).toBe(compression === 'xz' ? '.xz' : '.zst');
      // `tool unpackArgs` really unpacks the sample.
      const entry = FORMATS.find((f) => f.format === compression);
      const out = await execa(toolOf(compression), [...(entry?.unpackArgs ?? [])], { inputFile: made[compression], encoding: 'buffer' });
      expect(out.stdout.length).toBe(4 << 20);
    }
  });

  it('reads what a name promises from its last extension', () => {
    expect(['a.img', 'a.IMG', 'a.img.xz', 'a.xz', 'a.img.zst', 'a.zstd', 'a.zip', 'a.raw', 'download', 'a.bin'].map(formatByName))
      .toEqual(['raw', 'raw', 'xz', 'xz', 'zstd', 'zstd', 'zip', 'raw', undefined, undefined]);
  });
});

describe('checkFormat', () => {
  it('goes by content when the name agrees or promises nothing', async () => {
    expect(checkFormat('node.img.xz', await readHeader(made.xz as string))).toBe('xz');
    expect(checkFormat('download', await readHeader(made.zip as string))).toBe('zip');
    expect(checkFormat('node.bin', await readHeader(made.zstd as string))).toBe('zstd');
  });

  it('refuses content its name contradicts, naming both and the right name', async () => {
    expect(() => checkFormat('node.img.xz', Buffer.alloc(0))).toThrow('node.img.xz is not a disk image, .xz, .zst or .zip file');
    expect(() => checkFormat('node.img', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))).toThrow('node.img is not a raw image: it is xz');
    try {
      checkFormat('base.zip', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]));
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).toBe('base.zip is not a zip archive: it is zstd');
      expect((error as { hint?: string }).hint).toBe('if that is what you meant, rename it to base.img.zst; otherwise download it again');
    }
  });
});
