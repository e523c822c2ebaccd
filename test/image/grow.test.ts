/**
 * Growing an image's root filesystem without root, judged by sfdisk, e2fsck, fsck.vfat and
 * debugfs read-back: the partition stays last and ends at the end of the file (so the card's own
 * first-boot resize still works), the files in it are untouched, the new room is really free.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { growRootFilesystem } from '../../builder/image/grow.ts';
import { openRaspiosImage } from '../../builder/image/raspios.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { debugfsCat, dumpe2fsHeader, expectCleanImage, sfdiskJson } from '../helpers/image.ts';

let dir: string;
const MiB = 1024 * 1024;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pibake-grow-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('growRootFilesystem', () => {
  it('grows the file, the last partition and its ext4, keeping every file', async () => {
    const file = path.join(dir, 'base.img');
    await synthesizeRaspiosImage({ path: file, generation: 'trixie', sizeMiB: 300, bootMiB: 64, fillMiB: 64, diskId: '0a0b0c0d' });
    const image = await openRaspiosImage(file);
    const before = { size: (await stat(file)).size, root: image.rootPartition.sizeBytes, free: await image.root.freeBytes() };
    const fill = await debugfsCat(file, image.rootPartition.startBytes, '/var/cache/pibake-fill/fill-000.bin');

    const added = await growRootFilesystem(image, 150 * MiB);

    expect(added).toBeGreaterThanOrEqual(150 * MiB);
    expect(added % (4 * MiB)).toBe(0);
    const after = { size: (await stat(file)).size, root: image.rootPartition.sizeBytes, free: await image.root.freeBytes() };
    expect(after.size).toBe(before.size + added);
    expect(after.root).toBe(before.root + added);
    expect(after.free - before.free).toBeGreaterThan(added - 8 * MiB); // new groups carry a little metadata
    const table = await sfdiskJson(file);
    const root = table.partitions[1]!;
    expect((root.start + root.size) * 512).toBe(after.size);
    expect(table.id).toBe('0x0a0b0c0d');
    expect(Number((await dumpe2fsHeader(file, root.start * 512))['Block count']) * 4096).toBe(after.root);
    await expectCleanImage(file);
    // The backup superblocks agree with the primary (a card's boot-time fsck compares them).
    const backup = (await execa('dumpe2fs', ['-o', 'superblock=32768', '-o', 'blocksize=4096', '-h', `${file}?offset=${root.start * 512}`])).stdout;
    expect(/^Block count:\s+(\d+)$/m.exec(backup)?.[1]).toBe(String(after.root / 4096));
    expect((await execa('e2fsck', ['-fp', `${file}?offset=${root.start * 512}`], { reject: false })).exitCode).toBe(0);
    expect((await debugfsCat(file, root.start * 512, '/var/cache/pibake-fill/fill-000.bin')).equals(fill)).toBe(true);
    expect((await debugfsCat(file, root.start * 512, '/usr/lib/os-release')).toString()).toMatch(/VERSION_CODENAME=trixie/);
    // Nothing left beside it.
    expect(await readdir(dir)).toEqual(['base.img']);
  });
});
