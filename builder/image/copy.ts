/**
 * Copies of a raw image that cost (almost) nothing: a reflink where the filesystem can share
 * blocks (btrfs, xfs, bcachefs…: instant, no extra space until written), otherwise a sparse copy
 * that keeps holes as holes (and turns zero blocks into holes). Never a dense copy: a 3 GB image
 * with 1 GB of data must not cost 3 GB per node.
 *
 * Measured with GNU cp 9.1 on ext4: `cp --reflink=always` fails ("failed to clone … Operation not
 * supported") and leaves an empty destination; `--reflink=auto` would fall back silently, so we
 * could not report which happened. Hence: try `--reflink=always`, and on a clone failure run
 * `cp --sparse=always`.
 */
import { rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PibakeError } from '../common/errors.ts';
import { runTool } from '../common/exec.ts';
import { replaceAtomically } from '../bytes/atomic.ts';

export type CloneMethod = 'reflink' | 'sparse';

/** Source/destination device pairs where reflink failed: later clones (one per node) skip the attempt. */
const noReflink = new Set<string>();

/** Copy `src` to `dst` (replaced atomically) by reflink if possible, else sparse. Returns which. */
export async function cloneImage(src: string, dst: string): Promise<CloneMethod> {
  let info;
  try {
    info = await stat(src);
  } catch (error) {
    throw new PibakeError(`cannot copy ${src}: it does not exist`, { hint: 'check the image path', cause: error });
  }
  if (!info.isFile()) throw new PibakeError(`cannot copy ${src}: not a regular file`, { hint: 'give an image file' });

  const devices = `${info.dev}:${await stat(dirname(dst)).then((d) => d.dev, () => 'missing')}`;
  return replaceAtomically(dst, async (temp) => {
    let method: CloneMethod = 'sparse';
    if (!noReflink.has(devices)) {
      const reflink = await runTool('cp', ['--reflink=always', '--', src, temp], { reject: false });
      if (reflink.exitCode === 0) method = 'reflink';
      else if (/clone|not supported|cross-device/i.test(String(reflink.stderr))) noReflink.add(devices);
      else {
        throw new PibakeError(`cannot copy ${src} to ${dst}: ${String(reflink.stderr).trim().split('\n').pop()}`, {
          hint: 'check that the output folder exists, is writable and has free space',
        });
      }
    }
    if (method === 'sparse') {
      await rm(temp, { force: true });
      await runTool('cp', ['--sparse=always', '--', src, temp]);
    }
    return method;
  });
}
