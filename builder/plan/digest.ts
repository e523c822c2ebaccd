/**
 * What a node's image is made of, reduced to digests: one per baked file and one for the whole
 * node. Two builds with equal node digests produce the same image, so the build can skip it.
 */
import { createHash } from 'node:crypto';
import type { RenderedNode, RootEntry } from '../render/types.ts';

export interface NodeInputs {
  /** pibake's version: a new pibake may bake differently. */
  toolVersion: string;
  /** SHA-256 of the raw base image. */
  baseSha256: string;
  /** The MBR disk identifier the node's card gets. */
  diskId: string;
  rendered: RenderedNode;
  /** Further inputs by name -> digest, e.g. the .debs carried on the card (`carry:<file>` -> SHA-256). */
  extra?: Record<string, string>;
}

export interface NodeDigest {
  digest: string;
  /** `root:/etc/haproxy/haproxy.cfg` or `boot:user-data` -> digest of content and metadata. */
  files: Record<string, string>;
}

function sha256(...parts: (string | Buffer)[]): string {
  const hash = createHash('sha256');
  for (const part of parts) {
    hash.update(part);
    hash.update('\0');
  }
  return hash.digest('hex');
}

function entryDigest(entry: RootEntry): string {
  const meta = `${entry.kind} ${entry.mode.toString(8)} ${entry.uid}:${entry.gid}`;
  if (entry.kind === 'file') return sha256(meta, entry.data);
  if (entry.kind === 'symlink') return sha256(meta, entry.target);
  return sha256(meta);
}

export function digestNode(inputs: NodeInputs): NodeDigest {
  const files: Record<string, string> = {};
  for (const entry of inputs.rendered.rootEntries) files[`root:${entry.path}`] = entryDigest(entry);
  for (const file of inputs.rendered.bootFiles) files[`boot:${file.path}`] = sha256(file.data);
  for (const edit of inputs.rendered.bootEdits) files[`boot-edit:${edit.path}`] = sha256(edit.describe);
  Object.assign(files, inputs.extra);
  const keys = Object.keys(files).sort();
  const digest = sha256(
    `pibake ${inputs.toolVersion}`,
    `base ${inputs.baseSha256}`,
    `disk-id ${inputs.diskId}`,
    `node ${inputs.rendered.node} ${inputs.rendered.role}`,
    ...keys.map((key) => `${key} ${files[key]}`),
  );
  const sorted: Record<string, string> = {};
  for (const key of keys) sorted[key] = files[key] as string;
  return { digest, files: sorted };
}

/**
 * A card's disk identifier, derived from the cluster and node name so rebuilds keep it and no two
 * cards of a cluster share one. Trixie's first boot replaces it with a random one anyway.
 */
export function diskIdFor(cluster: string, node: string): string {
  let id = sha256('disk-id', cluster, node).slice(0, 8);
  if (id === '00000000') id = '00000001';
  return id;
}
