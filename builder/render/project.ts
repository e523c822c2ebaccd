/**
 * The rendering step `pibake build`, `render`, `seal` and `status` share: the project (roles,
 * overlays and inventory, loaded once from the same folders), the nodes selected once, and each
 * node rendered once with its build id bound after rendering. So `pibake render` shows exactly the
 * files `pibake build` bakes, and a sealed build's public digest is the unsealed one's.
 */
import { PibakeError, type Problem } from '../common/errors.ts';
import { roleFolders, type RoleFolders } from '../common/paths.ts';
import { chooseBase, type BaseOverride } from '../inventory/base.ts';
import { loadInventory } from '../inventory/load.ts';
import type { Generation, Inventory, NodeSpec } from '../inventory/types.ts';
import { buildIdOf } from '../plan/digest.ts';
import { bindBuildId, type UnboundNode } from './build-id.ts';
import { baseSupportsYescrypt } from './crypt.ts';
import type { PackageSource } from './firstboot.ts';
import { OverlayReader } from './overlay.ts';
import { renderNode } from './render.ts';
import { loadRoles, type RoleCatalog } from './roles.ts';
import { loadOrCreateSecrets, standInSecrets, type ClusterSecrets } from './secrets.ts';
import { isSecretBearing, type RenderedNode, type RootEntry } from './types.ts';

export interface Project {
  inventory: Inventory;
  roles: RoleCatalog;
  folders: RoleFolders;
  /** The overlays, read once for every node this project renders. */
  overlays: OverlayReader;
}

export type InventoryLoader = (file: string, roles: RoleCatalog) => Promise<Inventory>;

/** What of the base image a rendering depends on. */
export interface BaseFacts {
  generation: Generation;
  installedPackages: ReadonlySet<string>;
}

/**
 * Packages of a typical Raspberry Pi OS Lite image (what `render` assumes when no base image is
 * read; `pibake build` and `render --base` read the real base's dpkg status instead).
 */
export const TYPICAL_LITE_PACKAGES: ReadonlySet<string> = new Set(
  // One string, split: these are package names, not commands pibake runs.
  ('openssh-server openssh-client cloud-init rpi-cloud-init-mods python3 sudo network-manager systemd ' +
    'systemd-timesyncd raspberrypi-sys-mods raspi-config curl ca-certificates less nano rsync avahi-daemon ' +
    'locales keyboard-configuration console-setup dosfstools parted iptables libcrypt1').split(' '),
);

/**
 * Roles and overlays from roleFolders (beside the inventory, else pibake's own; named folders
 * win), then the inventory checked against those roles. Its warnings go to `onWarning`. A base
 * given on the command line (`base`) replaces the inventory's, checked by the same rules, before
 * any work starts.
 */
export async function loadProject(config: string, options: {
  folders?: Partial<RoleFolders>; onWarning?: (warning: Problem) => void; load?: InventoryLoader; base?: BaseOverride;
} = {}): Promise<Project> {
  const folders = roleFolders(config, options.folders);
  const roles = await loadRoles(folders.roles, folders.overlays);
  const loaded = await (options.load ?? loadInventory)(config, roles);
  const inventory = options.base ? { ...loaded, base: chooseBase(loaded.base, options.base) } : loaded;
  for (const warning of inventory.warnings) options.onWarning?.(warning);
  return { inventory, roles, folders, overlays: new OverlayReader(folders.overlays) };
}

/** The nodes named (all when none), in inventory order; every unknown name is reported at once. */
export function selectNodes(inventory: Inventory, names: readonly string[] | undefined): NodeSpec[] {
  if (!names || names.length === 0) return inventory.nodes;
  const known = new Map(inventory.nodes.map((n) => [n.name, n]));
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0) {
    throw new PibakeError(`no node named ${unknown.join(', ')} in ${inventory.file}`, {
      hint: `known nodes: ${[...known.keys()].join(', ')}`,
    });
  }
  return inventory.nodes.filter((n) => names.includes(n.name));
}

/**
 * The secrets a rendering uses and the stand-ins its public digest and build id are made from. A
 * sealed build renders from the stand-ins alone and never reads cluster.secrets.yaml.
 */
export async function projectSecrets(project: Project, options: { sealed: boolean; base: BaseFacts }): Promise<{ secrets: ClusterSecrets; standIns: ClusterSecrets }> {
  const standIns = standInSecrets(project.inventory, project.roles);
  if (options.sealed) return { secrets: standIns, standIns };
  const secrets = await loadOrCreateSecrets(project.inventory, project.roles, { yescrypt: baseSupportsYescrypt(options.base.installedPackages) });
  return { secrets, standIns };
}

export interface NodeRendering {
  /** Everything the node's image holds, secret-bearing files included, build id bound. */
  rendered: RenderedNode;
  /**
   * What the digests are taken over: the rendering before the build id was bound (the id-bearing
   * files are a function of it) and the same from stand-in secrets (`rendered` itself when it was
   * made from them), whose secret-bearing files stand for the real ones in the public digest.
   */
  unbound: { rendered: UnboundNode; standIn: UnboundNode };
  /** The secret-bearing root files: what a sealed image leaves out and `pibake seal` adds. */
  secretFiles: string[];
  /**
   * The sizes the card's room is reckoned from: every root file, a secret-bearing one at its
   * stand-in's size, so a sealed image (which leaves those out) and an unsealed one grow alike
   * whatever the secrets are (a few bytes either way are within the room's margin).
   */
  roomSizes: number[];
}

/**
 * One node rendered once, then (unless its secrets are the stand-ins) once from the stand-ins,
 * which the build id and the public digest are made of; the build id, a digest of those files, is
 * then bound.
 */
export async function renderProjectNode(project: Project, node: NodeSpec, options: {
  secrets: ClusterSecrets; standIns: ClusterSecrets; base: BaseFacts; packages?: PackageSource;
}): Promise<NodeRendering> {
  const render = (secrets: ClusterSecrets) => renderNode({
    inventory: project.inventory, node, roles: project.roles, secrets, base: options.base, overlaysDir: project.folders.overlays, overlays: project.overlays,
    packages: options.packages,
  });
  const unbound = await render(options.secrets);
  const unboundStandIn = options.secrets === options.standIns ? unbound : await render(options.standIns);
  const buildId = buildIdOf(unbound, unboundStandIn);
  const rendered = bindBuildId(unbound, buildId);
  // buildIdOf has checked that every secret-bearing file has its stand-in twin.
  const twins = new Map(unboundStandIn.rootEntries.map((e) => [e.path, e]));
  const size = (e: RootEntry | undefined): number => (e?.kind === 'file' ? e.data.length : 0);
  return {
    rendered,
    unbound: { rendered: unbound, standIn: unboundStandIn },
    secretFiles: rendered.rootEntries.filter(isSecretBearing).map((e) => e.path),
    roomSizes: rendered.rootEntries.map((e) => size(isSecretBearing(e) ? twins.get(e.path) : e)),
  };
}
