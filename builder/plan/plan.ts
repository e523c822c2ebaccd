/**
 * Decides, per node, whether its image must be baked again and says why. Pure: it compares what
 * the previous build recorded (output manifest) with this build's digests and the files on disk.
 */
import type { NodeDigest } from './digest.ts';

/** What the previous build recorded for one node (a slice of the output manifest). */
export interface PreviousNode {
  digest: string;
  files: Record<string, string>;
  image: { size: number; mtimeMs: number };
}

export interface ImageOnDisk {
  size: number;
  mtimeMs: number;
}

export interface NodeDecision {
  node: string;
  action: 'bake' | 'keep';
  /** Why it is baked; empty when kept. */
  reasons: string[];
}

/**
 * @param clusterChanged what changed in the node list since the previous build (clusterChanges):
 *   named as the cause when this node's files changed, e.g. a load balancer listing a new backend.
 */
export function decideNode(
  node: string,
  current: NodeDigest,
  previous: PreviousNode | undefined,
  onDisk: ImageOnDisk | undefined,
  force = false,
  clusterChanged: readonly string[] = [],
): NodeDecision {
  const reasons: string[] = [];
  if (force) reasons.push('rebuild forced');
  if (!previous) reasons.push('new node (no previous build)');
  else if (!onDisk) reasons.push('image missing from the output folder');
  else if (onDisk.size !== previous.image.size || onDisk.mtimeMs !== previous.image.mtimeMs)
    reasons.push('image changed on disk since it was built');
  const changedFiles = previous && previous.digest !== current.digest ? describeChanges(previous.files, current.files) : [];
  reasons.push(...changedFiles);
  if (changedFiles.length > 0 && clusterChanged.length > 0) reasons.push(`because the cluster changed: ${clusterChanged.join(', ')}`);
  if (previous && previous.digest !== current.digest && reasons.length === 0) reasons.push('base image, pibake version, disk id, a secret or --sealed changed');
  return { node, action: reasons.length > 0 ? 'bake' : 'keep', reasons };
}

const MAX_LISTED_CHANGES = 5;

/** "changed root:/etc/haproxy/haproxy.cfg", "added boot:user-data", ... (at most a few, then a count). */
export function describeChanges(before: Record<string, string>, after: Record<string, string>): string[] {
  const changes: string[] = [];
  for (const [key, digest] of Object.entries(after)) {
    if (!(key in before)) changes.push(`added ${key}`);
    else if (before[key] !== digest) changes.push(`changed ${key}`);
  }
  for (const key of Object.keys(before)) if (!(key in after)) changes.push(`removed ${key}`);
  if (changes.length <= MAX_LISTED_CHANGES) return changes;
  return [...changes.slice(0, MAX_LISTED_CHANGES), `and ${changes.length - MAX_LISTED_CHANGES} more files`];
}

/** "added web4 (db)", "removed web2", "web3 is now lb (was db)", "web3 moved to 10.0.0.23": the node list against the previous build's. */
export function clusterChanges(
  previous: Readonly<Record<string, { role: string; ip: string }>> | undefined,
  current: readonly { name: string; role: string; ip: string }[],
): string[] {
  if (!previous) return [];
  const changes: string[] = [];
  for (const node of current) {
    const before = previous[node.name];
    if (!before) changes.push(`added ${node.name} (${node.role})`);
    else if (before.role !== node.role) changes.push(`${node.name} is now ${node.role} (was ${before.role})`);
    else if (before.ip !== node.ip) changes.push(`${node.name} moved to ${node.ip}`);
  }
  for (const name of Object.keys(previous)) if (!current.some((n) => n.name === name)) changes.push(`removed ${name}`);
  return changes;
}
