/**
 * What a node's image is made of, reduced to digests: one per baked file and one for the whole
 * node. Two builds with equal node digests produce the same image, so the build can skip it.
 */
import { createHash } from 'node:crypto';
import { PibakeError } from '../common/errors.ts';
import { isSecretBearing, type RenderedNode, type RootEntry } from '../common/node-files.ts';

/** A node's files, bound to a build id or not: what the digests are taken over. */
export type NodeFiles = Pick<RenderedNode, 'node' | 'role' | 'rootEntries' | 'bootFiles' | 'bootEdits'>;

export interface NodeInputs {
  /** pibake's version: a new pibake may bake differently. */
  toolVersion: string;
  /** SHA-256 of the raw base image. */
  baseSha256: string;
  /** The MBR disk identifier the node's card gets. */
  diskId: string;
  rendered: NodeFiles;
  /**
   * The same node rendered from stand-in secrets (standInSecrets; `rendered` itself in a sealed
   * build): the bytes of its secret-bearing files stand for theirs in `files` and the public digest,
   * so those follow what the files are made of (a template, the inventory) and hold no hash of a secret.
   */
  standIn: NodeFiles;
  /** A sealed image leaves the secret-bearing files out: another image, so another digest. */
  sealed?: boolean;
  /** Further inputs by name -> digest, e.g. the .debs carried on the card (`carry:<file>` -> SHA-256). */
  extra?: Record<string, string>;
}

export interface NodeDigest {
  /** Everything the image is made of, secrets included: equal digests, equal images. */
  digest: string;
  /**
   * The same with secret-bearing files counted as rendered from stand-ins, and without whether they
   * are left out: equal for a sealed image and the unsealed one of the same node, whatever the secrets. It is the digest
   * the card's own manifest records, so a card sealed later gets the manifest an unsealed build
   * gives, and publishes no hash of a secret.
   */
  publicDigest: string;
  /**
   * `root:/etc/haproxy/haproxy.cfg` or `boot:user-data` -> digest of content and metadata: every
   * file rendered for the node, but those its build id is bound into (build-id.ts), which follow
   * from these.
   */
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

function entryDigest(entry: RootEntry, standIn: Map<string, RootEntry>): string {
  const meta = `${entry.kind} ${entry.mode.toString(8)} ${entry.uid}:${entry.gid}`;
  if (entry.kind === 'file' && isSecretBearing(entry)) {
    const twin = standIn.get(entry.path);
    if (twin?.kind !== 'file' || !isSecretBearing(twin)) {
      throw new PibakeError(`${entry.path} exists only with some secret values: a template decides from a secret's value whether it writes a file`, {
        hint: 'decide from the inventory instead; secrets are only ever inserted into files',
      });
    }
    return sha256(meta, 'made from secrets', entry.secrets?.join(' ') ?? '', twin.data);
  }
  if (entry.kind === 'file') return sha256(meta, entry.data);
  if (entry.kind === 'symlink') return sha256(meta, entry.target);
  return sha256(meta);
}

/** Per-file digests, secret-bearing files counted by their stand-in twins (entryDigest). */
function fileDigests(rendered: NodeFiles, standInNode: NodeFiles): Record<string, string> {
  const files: Record<string, string> = {};
  const standIn = new Map(standInNode.rootEntries.map((e) => [e.path, e]));
  for (const entry of rendered.rootEntries) files[`root:${entry.path}`] = entryDigest(entry, standIn);
  for (const file of rendered.bootFiles) files[`boot:${file.path}`] = sha256(file.data);
  for (const edit of rendered.bootEdits) files[`boot-edit:${edit.path}`] = sha256(edit.describe);
  return files;
}

/**
 * A node's build id (the cloud-init instance-id's digits): a digest of what it renders to before
 * the id is bound, counted as for the public digest, so it is the same for a sealed image, the
 * unsealed one and `pibake render`'s preview of either, and holds no hash of a secret. The base,
 * the disk id and the carried .debs are in the node's digest, not here: a card is flashed fresh,
 * so the id only has to change when the node's own files do.
 */
export function buildIdOf(unbound: NodeFiles, standIn: NodeFiles): string {
  const files = fileDigests(unbound, standIn);
  return sha256('pibake build-id', `node ${unbound.node} ${unbound.role}`, ...Object.keys(files).sort().map((key) => `${key} ${files[key]}`));
}

export function digestNode(inputs: NodeInputs): NodeDigest {
  const files = fileDigests(inputs.rendered, inputs.standIn);
  Object.assign(files, inputs.extra);
  const keys = Object.keys(files).sort();
  const publicDigest = sha256(
    `pibake ${inputs.toolVersion}`,
    `base ${inputs.baseSha256}`,
    `disk-id ${inputs.diskId}`,
    `node ${inputs.rendered.node} ${inputs.rendered.role}`,
    ...keys.map((key) => `${key} ${files[key]}`),
  );
  const secretBytes = inputs.rendered.rootEntries
    .flatMap((e) => (e.kind === 'file' && isSecretBearing(e) ? [`${e.path} ${sha256(e.data)}`] : []))
    .sort();
  const digest = sha256(publicDigest, inputs.sealed ? 'sealed' : 'with secrets', ...secretBytes);
  const sorted: Record<string, string> = {};
  for (const key of keys) sorted[key] = files[key] as string;
  return { digest, publicDigest, files: sorted };
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
