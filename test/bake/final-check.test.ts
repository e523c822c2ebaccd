/**
 * The last gate before a card gets its name (issue 16): both filesystems of every baked image are
 * checked again. To see the gate close, the baker is wrapped so that it damages the image it just
 * made, as a pibake bug would: the build must say it is pibake's bug, publish nothing under the
 * node's name, keep the unfinished image for the report, and fail.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type * as BakeNode from '../../builder/bake/bake-node.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { buildErrorLines, buildOptions, smallProject } from '../helpers/build-project.ts';
import { fsckExt4 } from '../helpers/oracles.ts';
import { geometryOf, writeAt } from '../helpers/mutants.ts';

type BakeNodeModule = typeof BakeNode;
const sabotage = vi.hoisted(() => ({ node: undefined as string | undefined }));

vi.mock('../../builder/bake/bake-node.ts', async (importOriginal) => {
  const original = await importOriginal<BakeNodeModule>();
  return {
    ...original,
    bakeNodeImage: async (input: Parameters<BakeNodeModule['bakeNodeImage']>[0]) => {
      await original.bakeNodeImage(input);
      if (input.label === `${sabotage.node}.img`) {
        const geometry = await geometryOf(input.target);
        await writeAt(input.target, geometry.gdt, Buffer.alloc(geometry.blockSize)); // zero the group descriptors
      }
    },
  };
});

let work: string;
let base: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pibake-final-check-'));
  base = path.join(work, 'base.img');
  await synthesizeRaspiosImage({ path: base, generation: 'trixie', sizeMiB: 160, bootMiB: 64 });
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe('the final check of every baked image', () => {
  it('a broken image is reported as a pibake bug, not published, and kept as .partial', async () => {
    sabotage.node = 'web1';
    const config = await smallProject(path.join(work, 'project'));
    const out = path.join(work, 'project', 'output');
    const lines = await buildErrorLines(buildOptions(config, base, path.join(work, 'cache'), { out, jobs: 1 }));
    expect(lines).toEqual([expect.stringMatching(new RegExp(
      '^error: web1\\.img: partition 2 \\(ext4 root\\): the ext4 group descriptors are damaged \\(e2fsck: .+\\): ' +
      'the baked image failed its final filesystem check, which is a bug in pibake ' +
      `\\(hint: nothing was published under web1\\.img; the unfinished image is kept at ${out}/small/\\.web1\\.img\\.\\d+-[0-9a-f]+\\.partial for the bug report \\(the next build removes it\\), please report this line with it\\)$`))]);
    const names = await readdir(path.join(out, 'small'));
    expect(names).not.toContain('web1.img');
    const kept = names.filter((n) => /^\.web1\.img\..*\.partial$/.test(n));
    expect(kept).toHaveLength(1);
    // The kept file is the broken image (the independent checker agrees), not some other leftover.
    await expect(fsckExt4(path.join(out, 'small', kept[0] as string))).rejects.toThrow(/e2fsck -fn failed/);
    // The other node, baked first, was fine and is published.
    expect(names).toContain('lb1.img');

    sabotage.node = undefined;
    const { buildCluster } = await import('../../builder/build/build-cluster.ts');
    const again = await buildCluster(buildOptions(config, base, path.join(work, 'cache'), { out }));
    expect(again.baked).toEqual(['web1']);
    expect((await readdir(path.join(out, 'small'))).filter((n) => n.endsWith('.partial'))).toEqual([]);
  });
});
