/**
 * Bakes one node's card image: a reflink/sparse copy of the prepared base, the node's disk id,
 * room for the packages it carries (the image, its root partition and ext4 grown when they do not
 * fit), its root-filesystem files through debugfs and its boot seeds through mtools. Nothing here
 * is privileged and the base is never modified.
 */
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import { roomNeeded, resizesAtFirstBoot } from '../carry/room.ts';
import { PibakeError } from '../common/errors.ts';
import { cloneImage } from '../image/copy.ts';
import type { Ext4Change } from '../image/ext4.ts';
import { growRootFilesystem } from '../image/grow.ts';
import { changeDiskId, openRaspiosImage } from '../image/raspios.ts';
import type { BootFile, RootEntry } from '../common/node-files.ts';
import type { RenderedNode } from '../render/types.ts';

/**
 * The role packages: carried on the card (the local repository's files, their sizes and what they
 * take installed), or left to first boot (`online`: nothing carried, sizes unknown).
 */
export interface CarryInput {
  entries: Ext4Change[];
  /** Sizes of the carried files. */
  sizes: number[];
  /** What the packages take once installed; undefined when first boot fetches them (online). */
  installedBytes?: number;
  /** cluster.yaml packages.max_image_size, in bytes. */
  maxImageBytes?: number;
}

/** The root filesystem before and after: what `pibake inspect` shows and the manifest records. */
export interface RoomReport {
  /** Size and free space of the base's root partition. */
  baseRootBytes: number;
  baseFreeBytes: number;
  /** Bytes the root partition grew by (0: the carried files fitted). */
  grownBytes: number;
}

export interface BakeNodeInput {
  basePath: string;
  target: string;
  /** How errors name the image (`<node>.img`), rather than its temp name. */
  label?: string;
  diskId: string;
  rendered: RenderedNode;
  /**
   * Sizes of the node's root files the room is reckoned from, when not those of `rendered`: a
   * sealed build counts the secret files it leaves out (written later by `pibake seal`/`flash`).
   */
  roomSizes?: number[];
  carry?: CarryInput;
  /** Extra root entries added by the build itself (the in-image manifest), given the room report. */
  extraRootEntries: (room: RoomReport) => RootEntry[];
  onStage: (stage: string) => void;
}

export async function bakeNodeImage(input: BakeNodeInput): Promise<RoomReport> {
  input.onStage('copy');
  await cloneImage(input.basePath, input.target);
  const image = await openRaspiosImage(input.target, { label: input.label });
  if (image.diskId !== input.diskId) {
    input.onStage('disk id');
    await changeDiskId(image, input.diskId);
  }
  const sb = await image.root.superblock();
  const room: RoomReport = { baseRootBytes: image.rootPartition.sizeBytes, baseFreeBytes: sb.freeBlocks * sb.blockSize, grownBytes: 0 };
  if (input.carry) {
    const cmdline = (await image.boot.readFile('cmdline.txt')).toString('utf8');
    const rootSizes = input.roomSizes ?? input.rendered.rootEntries.map((e) => (e.kind === 'file' ? e.data.length : 0));
    const sizes = [...input.carry.sizes, ...rootSizes];
    const need = roomNeeded({ files: sizes, installedBytes: input.carry.installedBytes, resizesAtFirstBoot: resizesAtFirstBoot(cmdline), blockSize: sb.blockSize });
    if (need > room.baseFreeBytes) {
      input.onStage('grow root filesystem');
      const add = need - room.baseFreeBytes;
      await checkRoomToGrow(input.target, image.layout.sizeBytes, add, input.carry.maxImageBytes);
      room.grownBytes = await growRootFilesystem(image, add);
    }
  }
  input.onStage('root filesystem');
  await image.root.apply([...input.rendered.rootEntries, ...(input.carry?.entries ?? []), ...input.extraRootEntries(room)]);
  input.onStage('boot partition');
  await image.boot.writeFiles([...input.rendered.bootFiles, ...(await editedBootFiles(image.boot, input.rendered))]);
  return room;
}

/** Growing must keep the image within the configured card size and the output disk's free space. */
async function checkRoomToGrow(target: string, imageBytes: number, addBytes: number, maxImageBytes: number | undefined): Promise<void> {
  const mb = (n: number) => `${Math.ceil(n / 1e6)} MB`;
  if (maxImageBytes !== undefined && imageBytes + addBytes > maxImageBytes) {
    throw new PibakeError(`no room for the carried packages: the image would grow to ${mb(imageBytes + addBytes)}, more than packages.max_image_size (${mb(maxImageBytes)})`, {
      hint: 'raise packages.max_image_size in cluster.yaml, give the role fewer packages, or build with --packages online',
    });
  }
  const fs = await statfs(path.dirname(target));
  const available = fs.bavail * fs.bsize;
  if (available < addBytes) {
    throw new PibakeError(`no room for the carried packages: growing the image takes ${mb(addBytes)} and ${path.dirname(target)} has ${mb(available)} free`, {
      hint: 'free space on the output disk (or use --out elsewhere), or build with --packages online',
    });
  }
}

/** Applies the node's edits to boot files the base already has (cmdline.txt), in order per file. */
async function editedBootFiles(
  boot: { readFile(path: string): Promise<Buffer> },
  rendered: RenderedNode,
): Promise<BootFile[]> {
  const texts = new Map<string, string>();
  for (const edit of rendered.bootEdits) {
    const current = texts.get(edit.path) ?? (await boot.readFile(edit.path)).toString('utf8');
    texts.set(edit.path, edit.edit(current));
  }
  return [...texts].map(([path, text]) => ({ path, data: Buffer.from(text, 'utf8') }));
}
