/**
 * The build id, bound after rendering. A node renders once, without it; its build id is then a
 * digest of that rendering (plan/digest.ts buildIdOf), and the few files that carry it — the
 * card's /etc/pibake/node.json and, on trixie, the NoCloud meta-data and the `ds=nocloud;i=` token
 * on cmdline.txt — are added here, the way the disk id is set at bake time. So `pibake render`
 * and `pibake build` give a node the same id whenever they render the same files.
 */
import type { Generation } from '../inventory/types.ts';
import { instanceId, instanceSeeds } from './seeds.ts';
import type { RenderedNode, RootEntry } from './types.ts';

/** Where the build id goes in the root filesystem (overlays may not provide it). */
export const NODE_FILE = '/etc/pibake/node.json';

/** A node's rendering before its build id is known: every file but those that carry the id. */
export interface UnboundNode extends Omit<RenderedNode, 'buildId'> {
  /** What the id-bearing files are made of, besides the id. */
  identity: { generation: Generation; nodeFile: Record<string, unknown> };
}

export function bindBuildId(unbound: UnboundNode, buildId: string): RenderedNode {
  const { identity, ...rest } = unbound;
  const id = instanceId(unbound.node, buildId);
  const nodeFile: RootEntry = {
    kind: 'file', path: NODE_FILE, mode: 0o644, uid: 0, gid: 0,
    data: Buffer.from(`${JSON.stringify({ ...identity.nodeFile, buildId, instanceId: id }, null, 2)}\n`),
  };
  const seeds = identity.generation === 'trixie' ? instanceSeeds(unbound.node, id) : { bootFiles: [], bootEdits: [] };
  return {
    ...rest,
    buildId,
    rootEntries: [...rest.rootEntries, nodeFile].sort((a, b) => compare(a.path, b.path)),
    bootFiles: [...rest.bootFiles, ...seeds.bootFiles].sort((a, b) => compare(a.path, b.path)),
    // The id's token first on cmdline.txt, as Raspberry Pi Imager writes it.
    bootEdits: [...seeds.bootEdits, ...rest.bootEdits],
  };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
