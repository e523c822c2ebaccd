/**
 * `pibake render`: each node's files written into a folder for review, touching no image. It is a
 * build that stops before baking: the same project, secrets and rendering step, so with the
 * build's base (--base) the folder holds exactly the files the build bakes, build id included.
 * Without a base, a typical Raspberry Pi OS Lite of the generation asked for stands in for it.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PibakeError, formatProblem } from '../common/errors.ts';
import type { RoleFolders } from '../common/paths.ts';
import type { BaseOverride } from '../inventory/base.ts';
import type { Generation } from '../inventory/types.ts';
import type { PackageSource } from '../render/firstboot.ts';
import {
  TYPICAL_LITE_PACKAGES, loadProject, projectSecrets, renderProjectNode, selectNodes, type BaseFacts, type InventoryLoader, type Project,
} from '../render/project.ts';
import { knownHosts } from '../render/secrets.ts';
import { writeRenderedNode } from '../render/write-tree.ts';
import { prepareBase, type BaseOptions } from '../bake/base.ts';
import { ttyReporter, unpackEvents } from './report.ts';

export interface RenderFolderOptions extends Omit<BaseOptions, 'onUnpack'>, BaseOverride {
  /** Show the base's unpacking (its first use) on stderr, a terminal. */
  progress?: boolean;
  config: string;
  /** Render only these nodes (all when none). */
  nodes?: string[];
  out: string;
  /** Without a base: the generation to render for (default trixie). With one, it must agree. */
  generation?: Generation;
  /** Folders of role files and overlays; default: the ones `pibake build` uses for this inventory. */
  folders?: Partial<RoleFolders>;
  /** A base cmdline.txt to apply the boot edits to. */
  cmdline?: string;
  /** As `pibake build --packages`: where first boot takes the role packages from (default: card). */
  packages?: PackageSource;
  /** Reads the inventory (tests hand one in). */
  load?: InventoryLoader;
}

/** Renders the selected nodes into <out>/<node>/ and writes <out>/known_hosts; returns the node folders. */
export async function renderFolder(options: RenderFolderOptions): Promise<string[]> {
  const project = await loadProject(options.config, {
    folders: options.folders, load: options.load, base: options,
    onWarning: (warning) => process.stderr.write(`warning: ${formatProblem(warning)}\n`),
  });
  const selected = selectNodes(project.inventory, options.nodes);
  const base = await baseFacts(project, options);
  const { secrets, standIns } = await projectSecrets(project, { sealed: false, base });
  const cmdline = options.cmdline === undefined ? undefined : await readFile(options.cmdline, 'utf8');
  const written: string[] = [];
  for (const node of selected) {
    const { rendered } = await renderProjectNode(project, node, { secrets, standIns, base, packages: options.packages });
    written.push(await writeRenderedNode(options.out, rendered, cmdline));
  }
  await writeFile(path.join(options.out, 'known_hosts'), knownHosts(project.inventory, secrets));
  return written;
}

async function baseFacts(project: Project, options: RenderFolderOptions): Promise<BaseFacts> {
  if (!options.base) return { generation: options.generation ?? 'trixie', installedPackages: TYPICAL_LITE_PACKAGES };
  // The build's reporter draws the unpacking, as it does in `pibake build`.
  const reporter = options.progress ? ttyReporter() : undefined;
  const { base } = project.inventory;
  const { facts } = await prepareBase(project.inventory, {
    cacheDir: options.cacheDir, onUnpack: reporter && unpackEvents(reporter, base.url ?? base.path),
  }).finally(() => reporter?.close());
  if (options.generation && options.generation !== facts.generation) {
    throw new PibakeError(`--generation ${options.generation} does not match the base ${options.base}, which is ${facts.generation}`, {
      hint: 'leave --generation out when giving --base: the base decides it',
    });
  }
  return facts;
}
