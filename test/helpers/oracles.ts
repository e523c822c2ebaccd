/**
 * Whole-image forms of the independent oracles in ./image.ts: each finds the partitions with
 * sfdisk itself, so a test can judge a card image by its path alone. Throws when a check fails.
 */
import { debugfs as debugfsAt, debugfsStat, e2fsck, fsckFat as fsckFatAt, mtype as mtypeAt, partitionOffsets } from './image.ts';

export { partitionOffsets, sfdiskJson } from './image.ts';

export async function fsckFat(image: string): Promise<void> {
  const { boot, bootSize } = await partitionOffsets(image);
  const result = await fsckFatAt(image, boot, bootSize);
  if (result.exitCode !== 0) throw new Error(`fsck.vfat -n failed (${result.exitCode}):\n${result.output}`);
}

export async function fsckExt4(image: string): Promise<void> {
  const result = await e2fsck(image, (await partitionOffsets(image)).root);
  if (result.exitCode !== 0) throw new Error(`e2fsck -fn failed (${result.exitCode}):\n${result.output}`);
}

export async function mtype(image: string, file: string): Promise<string> {
  return (await mtypeAt(image, (await partitionOffsets(image)).boot, file)).toString('utf8');
}

export async function debugfs(image: string, request: string): Promise<string> {
  return debugfsAt(image, (await partitionOffsets(image)).root, request);
}

/** Mode (octal string), uid, gid and type of a path in the root filesystem, as debugfs reports it. */
export async function ext4Stat(image: string, file: string): Promise<{ mode: string; uid: number; gid: number; type: string }> {
  const stat = await debugfsStat(image, (await partitionOffsets(image)).root, file);
  if (!stat) throw new Error(`debugfs stat ${file}: no such file in ${image}`);
  return { mode: stat.mode, uid: stat.user, gid: stat.group, type: stat.type };
}
