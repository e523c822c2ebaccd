/**
 * Flashing real block devices: loop devices stand in for cards (the test attaches them with
 * losetup; pibake itself never does). Needs root; skipped otherwise. Every loop device and mount
 * is released in a finally block.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { readBmap } from '../../builder/package/bmap-format.ts';
import { flash } from '../../builder/flash/flash.ts';
import { gatherFacts, openTargets } from '../../builder/flash/target.ts';
import { MiB, makeImageWithBmap, sameBytes, sha256Of, withTempDir } from './helpers.ts';

const isRoot = process.getuid?.() === 0;
const hasLosetup = existsSync('/sbin/losetup') || existsSync('/usr/sbin/losetup');
const base = { verify: true, yes: true, unmount: false, allowNonRemovable: true, allowLarge: false };
function kernelMounts(fs: string): boolean {
  return readFileSync('/proc/filesystems', 'utf8').split('\n').some((line) => line.trim() === fs);
}
const repo = new URL('../../', import.meta.url).pathname;

/** Attaches a backing file of sizeBytes (filled with `fill`) as a loop device, runs fn, detaches. */
async function withLoop<T>(dir: string, name: string, sizeBytes: number, fn: (dev: string, backing: string) => Promise<T>, partitions = false): Promise<T> {
  const backing = join(dir, name);
  await writeFile(backing, Buffer.alloc(sizeBytes, 0xa5));
  if (partitions) await execa('sfdisk', ['-q', backing], { input: 'start=2048, type=c\n' });
  const { stdout } = await execa('losetup', ['-f', '--show', ...(partitions ? ['-P'] : []), backing]);
  const dev = stdout.trim();
  try {
    return await fn(dev, backing);
  } finally {
    await execa('losetup', ['-d', dev], { reject: false });
  }
}

describe.runIf(isRoot && hasLosetup && process.platform === 'linux')('pibake flash to block devices (loop)', () => {
  it('writes two loop devices in one pass; each equals the image on every mapped range', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap } = await makeImageWithBmap(dir);
      await execa('zstd', ['-q', image, '-o', `${image}.zst`]);
      const map = await readBmap(bmap);
      await withLoop(dir, 'card1', 40 * MiB, (card1) =>
        withLoop(dir, 'card2', 48 * MiB, async (card2) => {
          const result = await flash({ ...base, image: `${image}.zst`, bmap, targets: [card1, card2] });
          expect(result.verified).toBe(true);
          expect(await sameBytes(image, card1, map.ranges)).toBe(true);
          expect(await sameBytes(image, card2, map.ranges)).toBe(true);
          // Unmapped areas keep the card's old content.
          const h = await open(card1, 'r');
          const b = Buffer.alloc(1);
          await h.read(b, 0, 1, 30 * MiB);
          await h.close();
          expect(b[0]).toBe(0xa5);
        }),
      );
    });
  });

  it('refuses a non-removable disk unless allowed, and a too-small device before writing anything', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap } = await makeImageWithBmap(dir);
      await withLoop(dir, 'small', 16 * MiB, async (small) => {
        const before = await sha256Of(small);
        const error = await flash({ ...base, allowNonRemovable: false, image, bmap, targets: [small] }).catch((e: unknown) => e);
        expect((error as { problems: { message: string }[] }).problems.map((p) => p.message)).toEqual([
          `${small}: holds 16 MiB, less than the image's 32 MiB`,
          `${small}: is not a removable disk (transport unknown)`,
        ]);
        expect(await sha256Of(small)).toBe(before);
      });
    });
  });

  it('refuses a device with a mounted partition; O_EXCL refuses it too; --unmount unmounts and writes', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap } = await makeImageWithBmap(dir);
      const map = await readBmap(bmap);
      const mnt = join(dir, 'mnt');
      await mkdir(mnt);
      await withLoop(dir, 'fat', 64 * MiB, async (dev, backing) => {
        const part = `${dev}p1`;
        // Without udev the partition node may need a nudge to appear.
        if (!existsSync(part)) await execa('partx', ['-u', dev], { reject: false });
        if (!existsSync(part)) await execa('partx', ['-a', dev], { reject: false });
        // FAT like a Pi boot partition where the kernel can mount it; this machine's kernel may lack vfat.
        if (kernelMounts('vfat')) await execa('mkfs.vfat', [part]);
        else await execa('mke2fs', ['-q', '-t', 'ext4', part]);
        await execa('mount', ['-o', 'ro', part, mnt]);
        try {
          const before = await sha256Of(backing);
          const error = await flash({ ...base, image, bmap, targets: [dev] }).catch((e: unknown) => e);
          expect((error as { problems: { message: string }[] }).problems.map((p) => p.message)).toEqual([
            `${dev}: has mounted filesystems (${part} on ${mnt})`,
          ]);
          // The kernel's own guard, independent of lsblk: an exclusive open of the busy disk fails.
          const facts = await gatherFacts([dev], image);
          await expect(openTargets(facts, map.imageSize)).rejects.toMatchObject({
            problems: [{ message: `${dev}: is in use (mounted, or opened by another program)` }],
          });
          expect(await sha256Of(backing)).toBe(before);

          await flash({ ...base, unmount: true, image, bmap, targets: [dev] });
          const { stdout } = await execa('findmnt', ['-n', mnt], { reject: false });
          expect(stdout).toBe('');
          expect(await sameBytes(image, dev, map.ranges)).toBe(true);
        } finally {
          await execa('umount', [mnt], { reject: false });
        }
      }, true);
    });
  });

  it('verification reads the device, not cached pages: corruption of the backing store is found and named', async () => {
    await withTempDir(async (dir) => {
      const { image, bmap } = await makeImageWithBmap(dir);
      const map = await readBmap(bmap);
      const victim = map.ranges[1]!;
      await withLoop(dir, 'card', 40 * MiB, async (dev, backing) => {
        // Change the loop's backing file after the write is flushed: the device's page cache still
        // holds the good bytes, so only a read-back that dropped that cache can see the damage.
        const corrupt = async () => {
          const h = await open(backing, 'r+');
          await h.write(Buffer.from([0, 1, 2, 3]), 0, 4, victim.start + 4096);
          await h.datasync();
          await h.close();
        };
        const error = await flash({ ...base, image, bmap, targets: [dev], beforeVerify: corrupt }).catch((e: unknown) => e);
        expect((error as { problems: { message: string }[] }).problems.map((p) => p.message)).toEqual([
          expect.stringContaining(`${dev}: blocks ${victim.firstBlock}-${victim.lastBlock} (bytes ${victim.start}-${victim.end - 1}) reads back differently`),
        ]);
      });
    });
  });

  it('CLI: without a terminal and without --yes it refuses; devices --json lists the loop device', async () => {
    await withTempDir(async (dir) => {
      const { image } = await makeImageWithBmap(dir);
      await withLoop(dir, 'card', 40 * MiB, async (dev) => {
        const before = await sha256Of(dev);
        const run = await execa('node', [join(repo, 'bin/pibake.js'), 'flash', image, '--device', dev, '--allow-non-removable'], { reject: false, stdin: 'ignore' });
        expect(run.exitCode).toBe(1);
        expect(run.stderr).toContain(`error: refusing to erase ${dev} without confirmation (hint: run it in a terminal to be asked, or pass --yes)`);
        expect(await sha256Of(dev)).toBe(before);
        const list = await execa('node', [join(repo, 'bin/pibake.js'), 'devices', '--json']);
        const entry = (JSON.parse(list.stdout) as { path: string; size: number; refusals: string[] }[]).find((d) => d.path === dev);
        expect(entry).toMatchObject({ size: 40 * MiB, refusals: ['not removable'] });
      });
    });
  });
});
