/**
 * Independent checks of an image, by programs that share no code with pibake: sfdisk, fsck.vfat,
 * e2fsck, mtools, debugfs. Tests use these to judge what pibake wrote.
 */
import { execa } from 'execa';
import { copyFile, mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface SfdiskPartition { node: string; start: number; size: number; type: string }

export async function sfdiskJson(image: string): Promise<{ id: string; partitions: SfdiskPartition[] }> {
  const { stdout } = await execa('sfdisk', ['--json', image]);
  return (JSON.parse(stdout) as { partitiontable: { id: string; partitions: SfdiskPartition[] } }).partitiontable;
}

export async function partitionOffsets(image: string): Promise<{ boot: number; bootSize: number; root: number }> {
  const { partitions } = await sfdiskJson(image);
  const [p1, p2] = partitions;
  if (!p1 || !p2) throw new Error(`${image}: expected two partitions`);
  return { boot: p1.start * 512, bootSize: p1.size * 512, root: p2.start * 512 };
}

/** fsck.vfat has no offset option: check a copy of the partition's bytes. */
export async function fsckFat(image: string): Promise<void> {
  const { boot, bootSize } = await partitionOffsets(image);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pibake-fsck-'));
  const copy = path.join(dir, 'boot.vfat');
  try {
    const source = await open(image, 'r');
    const target = await open(copy, 'w');
    const chunk = Buffer.alloc(1 << 22);
    for (let done = 0; done < bootSize; ) {
      const { bytesRead } = await source.read(chunk, 0, Math.min(chunk.length, bootSize - done), boot + done);
      await target.write(chunk, 0, bytesRead, done);
      done += bytesRead;
    }
    await source.close();
    await target.close();
    await execa('fsck.vfat', ['-n', copy]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function fsckExt4(image: string): Promise<void> {
  const { root } = await partitionOffsets(image);
  await execa('e2fsck', ['-fn', `${image}?offset=${root}`]);
}

export async function mtype(image: string, file: string): Promise<string> {
  const { boot } = await partitionOffsets(image);
  const { stdout } = await execa('mtype', ['-i', `${image}@@${boot}`, `::${file}`], {
    env: { MTOOLS_SKIP_CHECK: '1' }, stripFinalNewline: false,
  });
  return stdout;
}

export async function debugfs(image: string, request: string): Promise<string> {
  const { root } = await partitionOffsets(image);
  const { stdout } = await execa('debugfs', ['-R', request, `${image}?offset=${root}`], { stripFinalNewline: false });
  return stdout;
}

/** Mode (octal string), uid, gid of a path in the root filesystem, as debugfs reports it. */
export async function ext4Stat(image: string, file: string): Promise<{ mode: string; uid: number; gid: number; type: string }> {
  const text = await debugfs(image, `stat "${file}"`);
  const mode = /Mode:\s+(\d+)/.exec(text)?.[1];
  const uid = /User:\s+(\d+)/.exec(text)?.[1];
  const gid = /Group:\s+(\d+)/.exec(text)?.[1];
  const type = /Type:\s+(\w+)/.exec(text)?.[1];
  if (!mode || !uid || !gid || !type) throw new Error(`debugfs stat ${file}: ${text}`);
  return { mode, uid: Number(uid), gid: Number(gid), type };
}

export async function copyForTest(src: string, dst: string): Promise<void> {
  await copyFile(src, dst);
}
