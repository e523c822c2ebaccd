/**
 * `pibake render`: render each node's files into a folder, without touching any image. Shows
 * exactly what `pibake build` would bake, for review and for testing roles and overlays.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PibakeError, formatProblem } from '../common/errors.ts';
import { roleFolders } from '../common/paths.ts';
import { packagesOption } from './build.ts';
import { defineCommand, printResult, withConfig, withJson, withNodes, withRequiredOut } from './options.ts';
import { loadInventory } from '../inventory/load.ts';
import type { Generation, Inventory } from '../inventory/types.ts';
import { renderNode } from '../render/render.ts';
import { loadRoles, type RoleCatalog } from '../render/roles.ts';
import { baseSupportsYescrypt } from '../render/crypt.ts';
import type { PackageSource } from '../render/firstboot.ts';
import { knownHosts, loadOrCreateSecrets } from '../render/secrets.ts';
import type { RenderedNode } from '../render/types.ts';
import { writeRenderedNode } from '../render/write-tree.ts';

/**
 * Packages of a typical Raspberry Pi OS Lite image (what `render` assumes when no base image is
 * read; `pibake build` passes the real base's dpkg status instead).
 */
export const TYPICAL_LITE_PACKAGES: ReadonlySet<string> = new Set(
  // One string, split: these are package names, not commands pibake runs.
  ('openssh-server openssh-client cloud-init rpi-cloud-init-mods python3 sudo network-manager systemd ' +
    'systemd-timesyncd raspberrypi-sys-mods raspi-config curl ca-certificates less nano rsync avahi-daemon ' +
    'locales keyboard-configuration console-setup dosfstools parted iptables libcrypt1').split(' '),
);

export interface RenderCommandOptions {
  config: string;
  /** Only these nodes (default: every node). */
  node?: string[] | undefined;
  out: string;
  generation: Generation;
  /** Folders of role files and overlays; default: the ones `pibake build` uses for this inventory. */
  roles?: string;
  overlays?: string;
  cmdline?: string;
  /** As `pibake build --packages`: where first boot takes the role packages from (default: card). */
  packages?: PackageSource;
}

/** A node's build id when no build supplies one: a digest of what the node renders to. */
export function contentBuildId(node: RenderedNode, generation: Generation): string {
  const hash = createHash('sha256').update(`pibake-render ${generation} ${node.node} ${node.role}\0`);
  for (const e of node.rootEntries) {
    hash.update(`${e.kind} ${e.path} ${e.mode} ${e.uid} ${e.gid}\0`);
    if (e.kind === 'file') hash.update(e.data);
    if (e.kind === 'symlink') hash.update(e.target);
    hash.update('\0');
  }
  for (const f of node.bootFiles) hash.update(`${f.path}\0`).update(f.data).update('\0');
  for (const edit of node.bootEdits) hash.update(`${edit.path} ${edit.describe}\0`);
  return hash.digest('hex');
}

type InventoryLoader = (file: string, roles: ReadonlyMap<string, { tags: string[] }>) => Promise<Inventory>;

export async function renderCommand(options: RenderCommandOptions, load: InventoryLoader = loadInventory): Promise<string[]> {
  const folders = roleFolders(options.config, options);
  const roles: RoleCatalog = await loadRoles(folders.roles, folders.overlays);
  const inventory = await load(options.config, roles);
  for (const warning of inventory.warnings) process.stderr.write(`warning: ${formatProblem(warning)}\n`);
  const names = options.node ?? inventory.nodes.map((n) => n.name);
  const unknown = names.filter((name) => !inventory.nodes.some((n) => n.name === name));
  if (unknown.length > 0) {
    throw new PibakeError(`no node named ${unknown.map((name) => `"${name}"`).join(', ')} in ${inventory.file}`, {
      hint: `nodes: ${inventory.nodes.map((n) => n.name).join(', ')}`,
    });
  }
  const secrets = await loadOrCreateSecrets(inventory, roles, { yescrypt: baseSupportsYescrypt(TYPICAL_LITE_PACKAGES) });
  const cmdline = options.cmdline === undefined ? undefined : await readFile(options.cmdline, 'utf8');
  const written: string[] = [];
  for (const nodeName of names) {
    const input = {
      inventory, nodeName, roles, secrets, overlaysDir: folders.overlays,
      base: { generation: options.generation, installedPackages: TYPICAL_LITE_PACKAGES }, packages: options.packages,
    };
    // Render once with a neutral id to learn the content, then with the content's digest as id.
    const draft = await renderNode({ ...input, buildId: '0'.repeat(64) });
    const rendered = await renderNode({ ...input, buildId: contentBuildId(draft, options.generation) });
    written.push(await writeRenderedNode(options.out, rendered, cmdline));
  }
  await writeFile(path.join(options.out, 'known_hosts'), knownHosts(inventory, secrets));
  return written;
}

export const command = defineCommand({
  builder: (y) =>
    withJson(withRequiredOut(withNodes(withConfig(y), 'render only these nodes'), 'output folder (DIR/<node>/rootfs, bootfs, modes.txt)'))
      .option('generation', { choices: ['trixie', 'bookworm'] as const satisfies readonly Generation[], default: 'trixie' as const, describe: 'Raspberry Pi OS generation of the base' })
      .option('roles', { type: 'string', describe: 'folder of role files (default: as build, roles/ beside the inventory, else pibake\'s own)' })
      .option('overlays', { type: 'string', describe: 'folder of overlays (default: as build, overlays/ beside the inventory, else pibake\'s own)' })
      .option('packages', packagesOption)
      .option('cmdline', { type: 'string', describe: 'a base cmdline.txt to apply the boot edits to (writes bootfs/cmdline.txt)' }),
  handler: async (args) => {
    const written = await renderCommand(args);
    printResult(args.json, { rendered: written }, () => written.map((dir) => `rendered ${dir}`));
  },
});
