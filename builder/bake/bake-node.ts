/**
 * Bakes one node's card image: a reflink/sparse copy of the prepared base, the node's disk id,
 * its root-filesystem files through debugfs and its boot seeds through mtools. Nothing here is
 * privileged and the base is never modified.
 */
import { cloneImage } from '../image/copy.ts';
import { changeDiskId, openRaspiosImage } from '../image/raspios.ts';
import type { BootFile, RenderedNode, RootEntry } from '../render/types.ts';

export interface BakeNodeInput {
  basePath: string;
  target: string;
  /** How errors name the image (`<node>.img`), rather than its temp name. */
  label?: string;
  diskId: string;
  rendered: RenderedNode;
  /** Extra root entries added by the build itself (the in-image manifest). */
  extraRootEntries: RootEntry[];
  onStage: (stage: string) => void;
}

export async function bakeNodeImage(input: BakeNodeInput): Promise<void> {
  input.onStage('copy');
  await cloneImage(input.basePath, input.target);
  const image = await openRaspiosImage(input.target, { label: input.label });
  if (image.diskId !== input.diskId) {
    input.onStage('disk id');
    await changeDiskId(image, input.diskId);
  }
  input.onStage('root filesystem');
  await image.root.apply([...input.rendered.rootEntries, ...input.extraRootEntries]);
  input.onStage('boot partition');
  await image.boot.writeFiles([...input.rendered.bootFiles, ...(await editedBootFiles(image.boot, input.rendered))]);
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
