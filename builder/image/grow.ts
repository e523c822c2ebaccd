/**
 * Grows an image's root filesystem without root: the image file gets longer (sparse), sfdisk on
 * the file moves the end of the last partition, and resize2fs grows the ext4.
 *
 * resize2fs parses e2fsprogs' `image?offset=N` form, but it cannot be used on an image file with
 * it: for a regular file it takes the file from byte 0 as the device, so after resizing it
 * truncates the file to the filesystem's new size (and, when growing past the end, writes a byte
 * at that size) — it would cut the last N bytes off the image. So the partition goes through a
 * file of its own: `e2image -ra -o N` copies out just the blocks in use (sparse), resize2fs grows
 * that file, `e2image -ra -O N` copies the blocks in use back in place. e2image leaves out the
 * backup superblocks and group descriptors (redundant copies), so `e2fsck -fp` then writes them
 * from the primary — a card's boot-time fsck would otherwise find "primary superblock features
 * different from backup" and stop in emergency mode. For a 520 MB root with 400 MB in use the
 * steps took about 0.5 + 0.3 + 0.3 + 0.3 s here (docs/testing.md has the figures).
 *
 * The root partition stays last and ends where the file ends, so the card's own first-boot resize
 * still grows it to the whole card.
 */
import { rm, truncate } from 'node:fs/promises';
import { PibakeError } from '../common/errors.ts';
import { runTool } from '../common/exec.ts';
import { siblingTempPath } from '../bytes/temp-name.ts';
import { readDiskLayout } from './disk.ts';
import { writeTimestamp } from './ext4.ts';
import type { RaspiosImage } from './raspios.ts';

const MiB = 1024 * 1024;
/** Partition ends stay 4 MiB aligned, as pi-gen aligns them. */
const ALIGN = 4 * MiB;

/** Grows the root partition and its filesystem by at least `addBytes`; returns the bytes added. */
export async function growRootFilesystem(image: RaspiosImage, addBytes: number): Promise<number> {
  const root = image.rootPartition;
  const where = `${image.path}: cannot grow the root filesystem`;
  if (image.layout.scheme !== 'mbr') {
    throw new PibakeError(`${where}: it has a GPT partition table`, { hint: 'pibake grows MBR images (Raspberry Pi OS); make room in the image yourself or build with --packages online' });
  }
  const later = image.layout.partitions.filter((p) => p.startBytes > root.startBytes);
  if (later.length > 0 || root.startBytes + root.sizeBytes > image.layout.sizeBytes) {
    throw new PibakeError(`${where}: partition ${root.index} is not the last one on the disk`, { hint: 'build with --packages online, or give an image whose root partition is last (as Raspberry Pi OS)' });
  }
  const newSize = Math.ceil((root.sizeBytes + addBytes) / ALIGN) * ALIGN;
  const env: Record<string, string> = {};
  if (process.env.SOURCE_DATE_EPOCH) env.E2FSPROGS_FAKE_TIME = String(writeTimestamp());
  // resize2fs only ever touches a filesystem e2fsck (read-only) found clean.
  const check = await runTool('e2fsck', ['-fn', image.root.device()], { reject: false, stdin: 'ignore', env });
  if (check.exitCode !== 0) {
    throw new PibakeError(`${where}: e2fsck -fn finds errors in it`, { hint: `check the base image (e2fsck -fn '${image.root.device()}'), or build with --packages online` });
  }
  const part = siblingTempPath(image.path);
  try {
    await runTool('e2image', ['-ra', '-o', String(root.startBytes), image.path, part], { stdin: 'ignore' });
    // -f: the read-only e2fsck above is the check resize2fs would insist on after a mount.
    await runTool('resize2fs', ['-f', part, `${newSize / 1024}K`], { env, stdin: 'ignore' });
    await truncate(image.path, Math.max(root.startBytes + newSize, image.layout.sizeBytes));
    await runTool('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', '-N', String(root.index), image.path], {
      input: `start=${root.startBytes / 512}, size=${newSize / 512}\n`,
    });
    await runTool('e2image', ['-ra', '-O', String(root.startBytes), part, image.path], { stdin: 'ignore' });
    // Exit 1 means it wrote something (the backups); anything higher is a real problem.
    const preen = await runTool('e2fsck', ['-fp', image.root.device()], { reject: false, stdin: 'ignore', env });
    if ((preen.exitCode ?? 8) > 1) {
      throw new PibakeError(`${where}: e2fsck -fp after growing it failed (exit ${preen.exitCode}): ${preen.stdout.trim().split('\n').pop()}`, { hint: 'this is a pibake bug; build with --packages online meanwhile' });
    }
  } finally {
    await rm(part, { force: true });
  }
  image.layout = await readDiskLayout(image.path);
  image.bootPartition = image.layout.partitions[0] as typeof image.bootPartition;
  image.rootPartition = image.layout.partitions[image.layout.partitions.length - 1] as typeof image.rootPartition;
  return newSize - root.sizeBytes;
}
