/** Flashing to regular files (card images): the whole pipeline with real bmaptool as the other side. */
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { readBmap } from '../../builder/package/bmap-format.ts';
import { flash, verifyOnly } from '../../builder/flash/flash.ts';
import { expectedFromBmap, verifyTarget } from '../../builder/flash/verify.ts';
import { runPibake } from '../helpers/image.ts';
import { MiB, flipByte, makeImageWithBmap, sameBytes, sha256Of, withTempDir } from './helpers.ts';

const base = { verify: true, yes: false, unmount: false, allowNonRemovable: false, allowLarge: false };

describe('pibake flash to files', () => {
  it('writes exactly the mapped ranges to two targets in one pass, verified', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap } = await makeImageWithBmap(dir);
      const a = join(dir, 'a.img');
      const b = join(dir, 'b.img');
      // b is a used "card": its unmapped parts keep their old content, as bmaptool copy would leave them.
      await writeFile(b, Buffer.alloc(33 * MiB, 0xee));
      const result = await flash({ ...base, image, bmap, targets: [a, b], chunkBytes: 1 * MiB });
      const map = await readBmap(bmap);
      expect(result).toMatchObject({ imageSize: map.imageSize, writtenBytes: map.mappedBytes, bmapUsed: true, verified: true });
      expect(await sameBytes(image, a, map.ranges)).toBe(true);
      expect(await sameBytes(image, b, map.ranges)).toBe(true);
      expect((await stat(a)).size).toBe(map.imageSize);
      // Outside the mapped ranges nothing was written.
      const old = await readFile(b);
      const gap = map.ranges.findIndex((r, i) => (map.ranges[i + 1]?.start ?? 0) > r.end);
      expect(old[(map.ranges[gap]?.end ?? 0) + 1]).toBe(0xee);
    });
  });

  it('writes a compressed image without bmap whole, equal to the raw image', async () => {
    await withTempDir(async (dir) => {
      const { image } = await makeImageWithBmap(dir);
      await execa('zstd', ['-q', image, '-o', `${image}.zst`]);
      const target = join(dir, 'card.img');
      const result = await flash({ ...base, image: `${image}.zst`, targets: [target] });
      expect(result.bmapUsed).toBe(false);
      expect(await sha256Of(target)).toBe(await sha256Of(image));
    });
  });

  it('pibake flash writes what build reads: a .zip, and an .xz under a name that says nothing, byte for byte', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap } = await makeImageWithBmap(dir);
      await execa('zip', ['-q', '-j', join(dir, 'node.zip'), image]);
      await execa('sh', ['-c', 'xz -0 -c "$1" > "$2"', '_', image, join(dir, 'node-download')]);
      for (const [source, extra] of [['node.zip', []], ['node.zip', ['--bmap', bmap]], ['node-download', []]] as const) {
        const target = join(dir, `card-${source}-${extra.length}.img`);
        const run = await runPibake(['flash', join(dir, source), '--device', target, ...extra]);
        expect(run.stderr.split('\n').filter((l) => l.startsWith('error'))).toEqual([]);
        expect(run.exitCode).toBe(0);
        expect(run.stdout).toMatch(new RegExp(`flashed .*${source} to .*, verified`));
        // Oracle: the raw image itself (cmp over every mapped range; whole file without a bmap).
        if (extra.length === 0) expect(await sha256Of(target)).toBe(await sha256Of(image));
        else expect(await sameBytes(image, target, (await readBmap(bmap)).ranges)).toBe(true);
      }
    });
  });

  it('pibake flash refuses what build refuses, in the same words: content its name contradicts, and no image at all', async () => {
    await withTempDir(async (dir) => {
      const { image } = await makeImageWithBmap(dir);
      await execa('sh', ['-c', 'xz -0 -c "$1" > "$2"', '_', image, join(dir, 'wrong.img')]);
      await writeFile(join(dir, 'notes.img'), 'not a disk image\n'.repeat(100));
      const cases = [
        ['wrong.img', /^error: .*wrong\.img is not a raw image: it is xz \(hint: if that is what you meant, rename it to .*wrong\.img\.xz; otherwise download it again\)$/],
        ['notes.img', /^error: .*notes\.img is not a disk image, \.xz, \.zst or \.zip file \(hint: give a Raspberry Pi OS \.img, \.img\.xz, \.img\.zst or \.zip\)$/],
      ] as const;
      for (const [name, message] of cases) {
        const target = join(dir, `card-${name}`);
        const run = await runPibake(['flash', join(dir, name), '--device', target]);
        expect(run.exitCode).toBe(1);
        expect(run.stderr.trim()).toMatch(message);
        await expect(stat(target)).rejects.toThrow(/ENOENT/);
      }
    });
  });

  it('matches what bmaptool copy writes, from the same bmaptool-made bmap', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap } = await makeImageWithBmap(dir);
      await execa('xz', ['-k', '-0', image]);
      const ours = join(dir, 'ours.img');
      const theirs = join(dir, 'theirs.img');
      await flash({ ...base, image: `${image}.xz`, bmap, targets: [ours] });
      await execa('bmaptool', ['copy', '--bmap', bmap, image, theirs]);
      expect(await sha256Of(ours)).toBe(await sha256Of(theirs));
      // And bmaptool accepts our result as matching its bmap (it verifies while copying from it).
      await execa('bmaptool', ['copy', '--bmap', bmap, ours, join(dir, 'again.img')]);
    });
  });

  it('refuses a target smaller than the image before writing anything', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap } = await makeImageWithBmap(dir);
      const small = join(dir, 'small.img');
      const fine = join(dir, 'fine.img');
      await writeFile(small, Buffer.alloc(16 * MiB, 0x5a));
      const before = await sha256Of(small);
      await expect(flash({ ...base, image, bmap, targets: [fine, small] })).rejects.toThrow(/refusing to flash/);
      await expect(flash({ ...base, image, bmap, targets: [fine, small] })).rejects.toMatchObject({
        problems: [{ message: expect.stringMatching(/small\.img: holds 16 MiB, less than the image's 32 MiB/) }],
      });
      expect(await sha256Of(small)).toBe(before);
      await expect(stat(fine)).rejects.toThrow(); // the good target was not touched either
    });
  });

  it('names the range and target whose read-back differs (corrupted between write and verify)', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap } = await makeImageWithBmap(dir);
      const good = join(dir, 'good.img');
      const bad = join(dir, 'bad.img');
      const map = await readBmap(bmap);
      const victim = map.ranges[2]!;
      const corrupt = async () => {
        const h = await open(bad, 'r+');
        const byte = Buffer.alloc(1);
        await h.read(byte, 0, 1, victim.start + 7);
        byte[0] = (byte[0] ?? 0) ^ 0xff;
        await h.write(byte, 0, 1, victim.start + 7);
        await h.close();
      };
      const error = await flash({ ...base, image, bmap, targets: [good, bad], beforeVerify: corrupt }).catch((e: unknown) => e);
      expect(error).toMatchObject({ message: 'verification failed' });
      const messages = (error as { problems: { message: string }[] }).problems.map((p) => p.message);
      expect(messages).toHaveLength(1);
      expect(messages[0]).toContain(`${bad}: blocks ${victim.firstBlock}-${victim.lastBlock} (bytes ${victim.start}-${victim.end - 1})`);

      // The verify-only entry point finds the same on the card later; the good card passes.
      const expected = expectedFromBmap(map)!;
      expect(await verifyTarget(good, expected, 'sha256')).toEqual([]);
      const failures = await verifyTarget(bad, expected, 'sha256');
      expect(failures.map((f) => f.range.start)).toEqual([victim.start]);
    });
  });

  it('without a bmap, verifies against checksums taken while writing and names the 64 MiB range', async () => {
    await withTempDir(async (dir) => {
      const { image } = await makeImageWithBmap(dir, 'big.img', 100 * MiB);
      const target = join(dir, 't.img');
      const corrupt = async () => {
        const h = await open(target, 'r+');
        await h.write(Buffer.from([1, 2, 3]), 0, 3, 70 * MiB);
        await h.close();
      };
      await expect(flash({ ...base, image, targets: [target], beforeVerify: corrupt })).rejects.toMatchObject({
        problems: [{ message: expect.stringContaining(`t.img: bytes ${64 * MiB}-${100 * MiB - 1} reads back differently`) }],
      });
    });
  });

  it('verify-only checks cards written earlier, with or without a bmap, and writes nothing', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap } = await makeImageWithBmap(dir, 'node.img', 70 * MiB);
      await execa('zstd', ['-q', image, '-o', `${image}.zst`]);
      const good = join(dir, 'good.img');
      const bad = join(dir, 'bad.img');
      await flash({ ...base, image, bmap, targets: [good, bad], verify: false });
      await flipByte(bad, 20 * MiB + 3); // inside the data at 20 MiB
      const before = await sha256Of(bad);
      await expect(verifyOnly({ image, bmap, targets: [good] })).resolves.toMatchObject({ verified: true });
      const map = await readBmap(bmap);
      const hit = map.ranges.find((r) => r.start <= 20 * MiB + 3 && 20 * MiB + 3 < r.end)!;
      await expect(verifyOnly({ image, bmap, targets: [good, bad] })).rejects.toMatchObject({
        problems: [{ message: expect.stringContaining(`${bad}: blocks ${hit.firstBlock}-${hit.lastBlock} `) }],
      });
      // No bmap: the expected checksums come from a pass over the (compressed) image, in 64 MiB ranges.
      await expect(verifyOnly({ image: `${image}.zst`, targets: [good] })).resolves.toMatchObject({ bmapUsed: false });
      await expect(verifyOnly({ image: `${image}.zst`, targets: [bad] })).rejects.toMatchObject({
        problems: [{ message: expect.stringContaining(`${bad}: bytes 0-${64 * MiB - 1} reads back differently`) }],
      });
      expect(await sha256Of(bad)).toBe(before);
    });
  });

  it('refuses an image that does not match its bmap', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap } = await makeImageWithBmap(dir);
      const map = await readBmap(bmap);
      const h = await open(image, 'r+');
      await h.write(Buffer.from('changed'), 0, 7, map.ranges[1]!.start + 100);
      await h.close();
      await expect(flash({ ...base, image, bmap, targets: [join(dir, 't.img')] })).rejects.toMatchObject({
        problems: [{ message: expect.stringContaining(`does not match its bmap at blocks ${map.ranges[1]!.firstBlock}-`) }],
      });
    });
  });
});
