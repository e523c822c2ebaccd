import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PibakeError } from '../../builder/common/errors.ts';
import { cloneImage } from '../../builder/image/copy.ts';
import { allocatedBytes, makeDiskImage, MiB, scratchDir } from './intake-fixture.ts';

let dir: string;
let cleanup: () => Promise<void>;
let image: string;

/** Whether `dir`'s filesystem can reflink (btrfs, xfs…); decides which method we must see. */
async function canReflink(where: string): Promise<boolean> {
  await execa('bash', ['-c', 'echo probe > "$1/probe-a"', '_', where]);
  const probe = await execa('cp', ['--reflink=always', join(where, 'probe-a'), join(where, 'probe-b')], { reject: false });
  await execa('rm', ['-f', join(where, 'probe-a'), join(where, 'probe-b')]);
  return probe.exitCode === 0;
}

beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir('copy'));
  image = join(dir, 'base.img');
  await makeDiskImage(image, 128);
  // A dense run of zeros: a sparse copy turns it into a hole too.
  await execa('dd', ['if=/dev/zero', `of=${image}`, 'bs=1M', 'seek=80', 'count=8', 'conv=notrunc', 'status=none']);
});
afterAll(() => cleanup());

describe('cloneImage', () => {
  it('copies identically and keeps holes as holes (never a dense copy)', async () => {
    const copy = join(dir, 'node.img');
    const method = await cloneImage(image, copy);
    expect(method).toBe((await canReflink(dir)) ? 'reflink' : 'sparse');
    await execa('cmp', [image, copy]);
    const allocated = await allocatedBytes(copy);
    // 128 MiB apparent, ~2.3 MiB of data (+ 8 MiB of written zeros in the source).
    expect(allocated).toBeLessThan(4 * MiB);
    if (method === 'sparse') expect(allocated).toBeLessThan(await allocatedBytes(image));
    expect((await readdir(dir)).filter((n) => n.endsWith('.partial'))).toEqual([]);
  });

  it('replaces an existing destination', async () => {
    const copy = join(dir, 'again.img');
    await makeDiskImage(copy, 8);
    await cloneImage(image, copy);
    await execa('cmp', [image, copy]);
  });

  it('fails with a PibakeError and leaves nothing when the source is missing or the target folder does not exist', async () => {
    await expect(cloneImage(join(dir, 'nope.img'), join(dir, 'x.img'))).rejects.toBeInstanceOf(PibakeError);
    await expect(cloneImage(image, join(dir, 'no-such-dir', 'x.img'))).rejects.toBeInstanceOf(PibakeError);
    expect((await readdir(dir)).filter((n) => n === 'x.img' || n.endsWith('.partial'))).toEqual([]);
  });
});
