/**
 * A damaged base never becomes a card (issue 16): each mutated base is refused at intake with one
 * line naming the partition and the damage, nothing enters the cache, and no <node>.img appears.
 */
import { execa } from 'execa';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { buildErrorLines, buildOptions, smallProject } from '../helpers/build-project.ts';
import { entriesOf } from '../helpers/image.ts';
import { copyBase, debugfsWrite, geometryOf, setPartition, truncateTo, writeAt, type BaseGeometry } from '../helpers/mutants.ts';

let work: string;
let good: string;
let config: string;
let geo: BaseGeometry;
const DAMAGED = '\\(hint: the image is damaged: download it again and compare its SHA-256 with the published one\\)';

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pibake-bad-base-'));
  good = path.join(work, 'good.img');
  await synthesizeRaspiosImage({ path: good, generation: 'trixie', sizeMiB: 160, bootMiB: 64, diskId: '5e3da7a1' });
  geo = await geometryOf(good);
  config = await smallProject(path.join(work, 'project'));
});
afterAll(() => rm(work, { recursive: true, force: true }));

/** A copy of the good base named `name`, damaged by `damage`. */
async function mutant(name: string, damage: (file: string) => Promise<void>): Promise<string> {
  const file = path.join(work, name);
  await copyBase(good, file);
  await damage(file);
  return file;
}

/** [what, make the mutant, the expected error text after "error: " (a regex, made once the geometry is known)]. */
const cases: [string, () => Promise<string>, () => string][] = [
  ['an ext4 journal superblock of random bytes', () => mutant('journal.img', (f) => writeAt(f, geo.journal, randomBytes(1024))),
    () => `journal.img: partition 2 \\(ext4 root\\): the ext4 journal is damaged \\(e2fsck: Superblock has an invalid journal \\(inode 8\\)\\.\\) ${DAMAGED}`],
  ['an unreplayed journal (needs_recovery)', () => mutant('recover.img', (f) => debugfsWrite(f, geo.root.start, 'feature needs_recovery')),
    () => 'recover.img: partition 2 \\(ext4 root\\): its journal needs recovery \\(the filesystem was not cleanly unmounted\\), and pibake never writes into an unreplayed journal\'s filesystem ' +
    `\\(hint: replay the journal on a copy of the raw image, then give pibake the copy: e2fsck -fy 'copy\\.img\\?offset=${geo.root.start}'\\)`],
  ['a filesystem whose state says "errors"', () => mutant('errors.img', (f) => debugfsWrite(f, geo.root.start, 'ssv state 3')),
    () => 'errors.img: partition 2 \\(ext4 root\\): it is marked as having errors \\(the kernel found some while it was mounted\\) \\(hint: check and repair a copy .*\\)'],
  ['a filesystem larger than its partition', () => mutant('shrunk.img', (f) => setPartition(f, 2, geo.root.start / 512, geo.root.size / 512 - 2048)),
    () => `shrunk.img: partition 2 \\(ext4 root\\): the filesystem \\(${geo.root.size} bytes\\) is larger than its partition \\(${geo.root.size - 2048 * 512} bytes\\) ${DAMAGED}`],
  ['partition 1 overlapping partition 2', () => mutant('overlap.img', (f) => setPartition(f, 1, geo.boot.start / 512, geo.boot.size / 512 + 4096)),
    () => `overlap.img: partitions 1 \\(sectors ${sectors(geo.boot.start, geo.boot.size + 4096 * 512)}\\) and 2 \\(sectors ${sectors(geo.root.start, geo.root.size)}\\) overlap \\(hint: the partition table is damaged: .*\\)`],
  ['a zeroed group descriptor table', () => mutant('gdt.img', (f) => writeAt(f, geo.gdt, Buffer.alloc(geo.blockSize))),
    () => `gdt.img: partition 2 \\(ext4 root\\): the ext4 group descriptors are damaged \\(e2fsck: Corrupt group descriptor: .*\\) ${DAMAGED}`],
  ['an ext4 superblock with a wrong checksum', () => mutant('sbcsum.img', (f) => writeAt(f, geo.root.start + 1024 + 0x78, Buffer.from('evil'))),
    () => `sbcsum.img: partition 2 \\(ext4 root\\): the ext4 superblock is damaged: its checksum is wrong \\(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\\) ${DAMAGED}`],
  ['a FAT boot sector with 0 bytes per sector', () => mutant('bps.img', (f) => writeAt(f, geo.boot.start + 11, Buffer.alloc(2))),
    () => `bps.img: partition 1 \\(FAT boot\\): the boot sector is damaged: bytes per sector is 0 ${DAMAGED}`],
  ['a FAT boot sector with 0 sectors per cluster', () => mutant('spc.img', (f) => writeAt(f, geo.boot.start + 13, Buffer.alloc(1))),
    () => `spc.img: partition 1 \\(FAT boot\\): the boot sector is damaged: sectors per cluster is 0 ${DAMAGED}`],
  ['random FAT tables', () => mutant('fats.img', async (f) => {
    for (let i = 0; i < geo.fat.count; i++) await writeAt(f, geo.fat.start + i * geo.fat.bytes, randomBytes(geo.fat.bytes));
  }), () => `fats.img: partition 1 \\(FAT boot\\): fsck\\.vfat -n found errors \\(.+\\) ${DAMAGED}`],
  ['both filesystems damaged: every problem reported', () => mutant('both.img', async (f) => {
    await writeAt(f, geo.boot.start + 13, Buffer.alloc(1));
    await writeAt(f, geo.gdt, Buffer.alloc(geo.blockSize));
  }), () => 'both.img: partition 1 \\(FAT boot\\): the boot sector is damaged: sectors per cluster is 0 .*\n' +
    'error: both.img: partition 2 \\(ext4 root\\): the ext4 group descriptors are damaged .*'],
  ['an image truncated inside its root partition', () => mutant('cut.img', (f) => truncateTo(f, geo.root.start + 8 * 1048576)),
    () => `cut.img: partition 2 ends at byte ${geo.sizeBytes}, beyond the end of the image \\(${geo.root.start + 8 * 1048576} bytes\\) \\(hint: the image is truncated: download or decompress it again\\)`],
  ['an .img.xz that is really a raw image', () => mutant('m.img.xz', async () => {}),
    () => 'm.img.xz is not xz: it is a raw image \\(hint: if that is what you meant, rename it to m\\.img; otherwise download it again\\)'],
  ['an .img that is really zstd', async () => {
    await execa('zstd', ['-q', '-1', '-f', good, '-o', path.join(work, 'z.img')]);
    return path.join(work, 'z.img');
  }, () => 'z.img is not a raw image: it is zstd \\(hint: if that is what you meant, rename it to z\\.img\\.zst; otherwise download it again\\)'],
  ['a .zip holding two images', async () => {
    const dir = path.join(work, 'two');
    await mkdir(dir, { recursive: true });
    await copyBase(good, path.join(dir, 'a.img'));
    await copyBase(good, path.join(dir, 'b.img'));
    await execa('zip', ['-q', '-1', '-j', path.join(work, 'two.zip'), path.join(dir, 'a.img'), path.join(dir, 'b.img')]);
    return path.join(work, 'two.zip');
  }, () => 'two.zip holds 2 images \\(a\\.img, b\\.img\\); pibake will not guess which is the base \\(hint: unzip the one you mean and give that \\.img as the base\\)'],
];

/** "first-last" sector numbers of a byte range. */
function sectors(start: number, size: number): string {
  return `${start / 512}-${(start + size) / 512 - 1}`;
}

describe('a damaged base is refused at intake: one line, an empty cache, no node image', () => {
  it.each(cases)('%s', async (_name, make, expected) => {
    const base = await make();
    const cache = path.join(work, `cache-${path.basename(base)}`);
    const out = path.join(work, `out-${path.basename(base)}`);
    const lines = await buildErrorLines(buildOptions(config, base, cache, { out }));
    if (process.env.SHOW_ERRORS) console.log(lines.join('\n'));
    expect(lines.join('\n')).toMatch(new RegExp(`^error: ${expected()}$`));
    expect(await entriesOf(cache)).toEqual([]);
    expect(await entriesOf(path.join(out, 'small'))).toEqual([]);
  });

  it('the good base itself builds (the control)', async () => {
    const cache = path.join(work, 'cache-good');
    const { buildCluster } = await import('../../builder/build/build-cluster.ts');
    const result = await buildCluster(buildOptions(config, good, cache, { out: path.join(work, 'out-good'), nodes: ['web1'] }));
    expect(result.baked).toEqual(['web1']);
    expect(await readFile(path.join(result.dir, 'SHA256SUMS'), 'utf8')).toContain('web1.img');
  });
});
