/**
 * Bench sections for the filesystem checks (issue 16): what checking both filesystems costs at
 * intake (once per base) and before each node image gets its name, against the sparse copy every
 * node costs anyway, and against the bare checkers on the same bytes (pibake's overhead).
 * Needs a Raspberry Pi OS layout: `--image synth`, or `--image FILE.img` for a real release.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readDiskLayout } from '../builder/image/disk.ts';
import { openRaspiosImage, verifyBakedImage } from '../builder/image/raspios.ts';
import type { BenchContext, BenchSection } from './bench.ts';

type Fixture = (ctx: BenchContext, name: 'raw' | 'xz') => Promise<string>;

export function checkSections(fixture: Fixture): BenchSection[] {
  const copy = (ctx: BenchContext) => join(ctx.work, 'check-copy.img');
  const sparseCopy = async (ctx: BenchContext) => `cp --sparse=always ${await fixture(ctx, 'raw')} ${copy(ctx)}`;
  const cleanup = async (ctx: BenchContext) => {
    await rm(copy(ctx), { force: true });
    await rm(join(ctx.work, 'check-boot.fat'), { force: true });
  };
  const sections: BenchSection[] = [
    {
      name: 'check-intake',
      bare: sparseCopy,
      // What intake's validation does before a base is cached: the partition table, both
      // filesystems checked whole, then /etc/os-release and the first-boot contract read.
      ours: async (ctx) => {
        await openRaspiosImage(await fixture(ctx, 'raw'), { label: 'bench.img', checkFilesystems: true });
      },
      report: async () => 'ratio = the intake checks against one sparse copy of the same image',
      cleanup,
    },
    {
      name: 'check-node',
      bare: sparseCopy,
      // What every node image goes through before its final name.
      ours: async (ctx) => {
        await verifyBakedImage(await fixture(ctx, 'raw'), 'node.img');
      },
      report: async () => 'ratio = the final check of a node image against the sparse copy each node costs anyway',
      cleanup,
    },
    {
      name: 'check-tools',
      // The same two checks by the bare programs: e2fsck at its offset; fsck.vfat on a sparse copy of the boot partition.
      bare: async (ctx) => {
        const image = await fixture(ctx, 'raw');
        const { partitions } = await readDiskLayout(image);
        const [boot, root] = [partitions[0]!, partitions[partitions.length - 1]!];
        const fat = join(ctx.work, 'check-boot.fat');
        return `e2fsck -fn '${image}?offset=${root.startBytes}' >/dev/null && ` +
          `dd if=${image} of=${fat} bs=1M iflag=skip_bytes,count_bytes skip=${boot.startBytes} count=${boot.sizeBytes} conv=sparse status=none && ` +
          `fsck.vfat -n ${fat} >/dev/null && rm -f ${fat}`;
      },
      ours: async (ctx) => {
        await verifyBakedImage(await fixture(ctx, 'raw'), 'node.img');
      },
      report: async () => 'ratio = pibake\'s checks against the bare checkers on the same bytes',
      cleanup,
    },
  ];
  return sections.map((s) => ({ ...s, needsSynth: true }));
}
