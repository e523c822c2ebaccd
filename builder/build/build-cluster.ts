/**
 * `pibake build`: every card of the cluster in one run. Loads the inventory, prepares the base once,
 * renders each node, decides from digests which images are out of date, bakes those (in parallel),
 * packages them, and records the result in output/<cluster>/manifest.json.
 */
import { createHash } from 'node:crypto';
import { chmod, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { CarriedPackages } from '../carry/carry.ts';
import { PibakeError, formatProblem } from '../common/errors.ts';
import { describeHolder, lockHolder, tryLockFolder, type FolderLock } from '../common/lock.ts';
import { isNoSpace, noSpaceError } from '../common/no-space.ts';
import { inParallel, serialised, throttled } from '../common/parallel.ts';
import { toolVersion } from '../common/paths.ts';
import { formatBytes } from '../common/bytes.ts';
import { resolveCacheDir } from '../image/intake/cache.ts';
import { sweepLegacyStaging } from '../image/staging.ts';
import type { BaseOverride } from '../inventory/base.ts';
import type { Inventory, NodeSpec } from '../inventory/types.ts';
import { updateFileAtomic } from '../bytes/atomic.ts';
import { type Compression, extensionOf } from '../bytes/formats.ts';
import { siblingTempPath } from '../bytes/temp-name.ts';
import { diskIdFor, digestNode, type NodeDigest } from '../plan/digest.ts';
import { clusterChanges, decideNode } from '../plan/plan.ts';
import type { PackageSource } from '../render/firstboot.ts';
import {
  loadProject, projectSecrets, renderProjectNode, selectNodes, type NodeRendering, type Project,
} from '../render/project.ts';
import type { RoleCatalog } from '../render/roles.ts';
import { missingPackages } from '../render/render.ts';
import { knownHosts } from '../render/secrets.ts';
import { isSecretBearing, type RenderedNode, type RootEntry } from '../render/types.ts';
import type { RoomReport } from '../bake/bake-node.ts';
import { prepareBase, type BaseOptions } from '../bake/base.ts';
import {
  MANIFEST_FORMAT, clusterOutputDir, ensureOutputDir, fileState, readManifest, sha256SumsText, sweepPartials,
  type Artifact, type ManifestNode, type OutputManifest,
} from '../package/output.ts';
import { unpackEvents, type Reporter } from './report.ts';

/** What `pibake build` is given. The base's unpacking is told to `reporter`, as 'unpack' events. */
export interface BuildOptions extends Omit<BaseOptions, 'onUnpack'>, BaseOverride {
  config: string;
  /** Build only these nodes; the others keep what they had. */
  nodes?: string[];
  /** Output root; images go to <out>/<cluster>/. */
  out: string;
  jobs: number;
  compress?: Compression;
  bmap: boolean;
  force: boolean;
  /**
   * Release images: the secret-bearing files are left out (the card's guard stops its first boot
   * until `pibake seal`/`flash` adds them) and cluster.secrets.yaml is never read.
   */
  sealed?: boolean;
  /**
   * Role packages: 'card' resolves and fetches them here and carries them on the card (first boot
   * needs no network); 'online' leaves them to the card's first boot and its apt sources.
   */
  packages: PackageSource;
  reporter: Reporter;
}

export interface BuildResult {
  dir: string;
  manifest: OutputManifest;
  baked: string[];
  kept: string[];
}


export async function buildCluster(options: BuildOptions): Promise<BuildResult> {
  const started = Date.now();
  const project = await loadProject(options.config, {
    base: options, onWarning: (warning) => options.reporter.event({ type: 'warning', message: formatProblem(warning) }),
  });
  const selected = selectNodes(project.inventory, options.nodes);

  const dir = clusterOutputDir(options.out, project.inventory);
  await ensureOutputDir(dir);
  const lock = await lockOutput(dir);
  try {
    return await buildLocked({ options, started, project, selected, dir });
  } catch (error) {
    if (!isNoSpace(error)) throw error;
    throw await noSpaceError('the output folder', dir, 'the build needs room for its images and records',
      'free space there, or build into another folder with --out');
  } finally {
    await lock.release();
  }
}

/**
 * One build at a time per output folder: two would mix their images, manifest.json and SHA256SUMS.
 * The second fails at once (rather than waiting and then redoing the same work); the lock ends
 * with its process, so a killed build never blocks the next.
 */
async function lockOutput(dir: string): Promise<FolderLock> {
  const lock = await tryLockFolder(dir);
  if (lock) return lock;
  throw new PibakeError(`the output folder ${dir} is in use by another pibake build: ${describeHolder(await lockHolder(dir))}`, {
    hint: 'wait for that build to finish, or build into another folder with --out',
  });
}

async function buildLocked(input: {
  options: BuildOptions; started: number; project: Project; selected: NodeSpec[]; dir: string;
}): Promise<BuildResult> {
  const { options, started, project, selected, dir } = input;
  const { inventory, roles } = project;
  await sweepPartials(dir);
  await sweepLegacyStaging();

  const { spec, base, facts: baseFacts, openRoot } = await prepareBase(inventory, {
    cacheDir: options.cacheDir, onUnpack: unpackEvents(options.reporter, inventory.base.url ?? inventory.base.path),
  });
  options.reporter.event({ type: 'base', source: spec.url ?? spec.path ?? '', sha256: base.sha256, generation: baseFacts.generation });
  const carried = options.packages === 'card'
    ? await (await import('../carry/carry.ts')).carryRolePackages({
      root: openRoot,
      imagePath: base.path,
      wanted: wantedPackages(selected, roles, baseFacts.installedPackages),
      cacheDir: resolveCacheDir(options.cacheDir),
      settings: inventory.packages,
      onWarning: (message) => options.reporter.event({ type: 'warning', message }),
      onCarried: (role, c, seconds) => options.reporter.event({
        type: 'packages', role, packages: c.requested, debs: c.debs.length, bytes: c.debBytes, installedBytes: c.installedBytes, fetched: c.fetched, seconds,
      }),
    })
    : new Map<string, CarriedPackages>();

  const sealed = options.sealed === true;
  const { secrets, standIns } = await projectSecrets(project, { sealed, base: baseFacts });

  const previous = await readManifest(dir, inventory.cluster.name);
  const manifest: OutputManifest = {
    format: MANIFEST_FORMAT,
    cluster: inventory.cluster.name,
    pibake: toolVersion,
    base: { source: spec.url ?? path.basename(spec.path ?? ''), sha256: base.sha256, generation: baseFacts.generation },
    nodes: {},
  };
  // Nodes not selected with --node keep their record untouched.
  for (const node of inventory.nodes) {
    const record = previous?.nodes[node.name];
    if (record && !selected.includes(node)) manifest.nodes[node.name] = record;
  }

  const changedNodes = clusterChanges(previous?.nodes, inventory.nodes);

  const work: {
    node: NodeSpec; rendered: RenderedNode; digest: NodeDigest; diskId: string; secretFiles: string[]; roomSizes: number[]; bake: boolean; carried?: CarriedPackages;
  }[] = [];
  for (const node of selected) {
    const diskId = diskIdFor(inventory.cluster.name, node.name);
    const nodeCarried = carried.get(node.role);
    const rendering = await renderProjectNode(project, node, { secrets, standIns, base: baseFacts, packages: options.packages });
    const digest = nodeDigest(rendering, { baseSha256: base.sha256, diskId, sealed, extra: carriedDigests(nodeCarried) });
    const { secretFiles, roomSizes } = rendering;
    const whole = rendering.rendered;
    const rendered = sealed ? { ...whole, rootEntries: whole.rootEntries.filter((e) => !isSecretBearing(e)) } : whole;
    const imageFile = path.join(dir, `${node.name}.img`);
    const decision = decideNode(node.name, digest, previous?.nodes[node.name], await fileState(imageFile), options.force, changedNodes);
    options.reporter.event({ type: 'plan', node: node.name, action: decision.action, reasons: decision.reasons });
    work.push({ node, rendered, digest, diskId, secretFiles, roomSizes, bake: decision.action === 'bake', carried: nodeCarried });
  }

  const nodeBytes = (await stat(base.path)).blocks * 512;
  // Rewritten (and synced) only when a node changed what they say.
  const persist = serialised(async () => {
    manifest.sealed = Object.values(manifest.nodes).every((n) => n.sealed === true);
    await updateFileAtomic(path.join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    await updateFileAtomic(path.join(dir, 'SHA256SUMS'), sha256SumsText(manifest));
  });

  await inParallel(work, options.jobs, (item) => bakeAndPackage(item).catch(async (error: unknown) => {
    if (!isNoSpace(error)) throw error;
    const need = `each node image needs about ${formatBytes(nodeBytes)} (the base's data)${options.compress ? ', and its archive up to as much again' : ''}`;
    throw await noSpaceError('the output folder', dir, need, 'free space there, or build into another folder with --out');
  }));

  async function bakeAndPackage(item: (typeof work)[number]): Promise<void> {
    const name = item.node.name;
    const nodeStarted = Date.now();
    const imageFile = path.join(dir, `${name}.img`);
    const stage = (s: string) => options.reporter.event({ type: 'stage', node: name, stage: s });
    let record = previous?.nodes[name];
    if (item.bake || !record) {
      const [{ bakeNodeImage }, { carriedEntries }, { verifyBakedImage }, { sha256File }] = await bakeModules();
      const partial = siblingTempPath(imageFile);
      let keepPartial = false;
      try {
        await bakeNodeImage({
          basePath: base.path,
          target: partial,
          label: `${name}.img`,
          diskId: item.diskId,
          rendered: item.rendered,
          roomSizes: item.roomSizes,
          carry: item.carried ? {
            entries: carriedEntries(item.carried),
            sizes: [...item.carried.debs.map((d) => d.size), item.carried.index.length],
            installedBytes: item.carried.installedBytes,
            maxImageBytes: inventory.packages.maxImageBytes,
          } : { entries: [], sizes: [], maxImageBytes: inventory.packages.maxImageBytes },
          extraRootEntries: (room) => [inImageManifest(inventory, item, base.sha256, options.packages, room)],
          onStage: stage,
        });
        // The image holds the node's secrets (host key, database passwords): its owner's only.
        await chmod(partial, 0o600);
        stage('check');
        await verifyBakedImage(partial, `${name}.img`).catch((error: unknown) => {
          keepPartial = error instanceof PibakeError;
          throw error;
        });
        const { size } = await stat(partial);
        const progress = throttled((bytes: number) =>
          options.reporter.event({ type: 'stage', node: name, stage: 'checksum', bytes, total: size }));
        const sha256 = await sha256File(partial, progress);
        await rename(partial, imageFile);
        const state = await fileState(imageFile);
        if (!state) throw new PibakeError(`${imageFile} vanished right after it was written`);
        record = {
          role: item.node.role,
          ip: item.node.ip,
          diskId: item.diskId,
          digest: item.digest.digest,
          publicDigest: item.digest.publicDigest,
          files: item.digest.files,
          image: { file: `${name}.img`, ...state, sha256 },
          extras: {},
          sealed,
          secretFiles: item.secretFiles,
        };
      } finally {
        if (!keepPartial) await rm(partial, { force: true });
      }
    }
    record = { ...record, extras: await packageExtras(dir, record, options, stage) };
    manifest.nodes[name] = record;
    await persist();
    if (item.bake) options.reporter.event({ type: 'done', node: name, seconds: (Date.now() - nodeStarted) / 1000, file: path.join(dir, record.image.file) });
  }

  await removeDroppedNodes(dir, inventory, previous, manifest, options.reporter);
  // The host keys' public halves are in the secrets file, which a sealed build does not read.
  if (!sealed) await updateFileAtomic(path.join(dir, 'known_hosts'), knownHosts(inventory, secrets));
  await persist();
  const baked = work.filter((w) => w.bake).map((w) => w.node.name);
  const kept = work.filter((w) => !w.bake).map((w) => w.node.name);
  options.reporter.event({ type: 'summary', baked: baked.length, kept: kept.length, seconds: (Date.now() - started) / 1000, out: dir });
  return { dir, manifest, baked, kept };
}

/**
 * What baking a card takes, loaded only when one is baked: a rebuild that changes nothing loads
 * none of it (about twenty modules, tens of milliseconds at every start).
 */
function bakeModules() {
  return Promise.all([
    import('../bake/bake-node.ts'), import('../carry/carry.ts'), import('../image/raspios.ts'), import('../bytes/checksums.ts'),
  ]);
}

/**
 * A node's digests, as the build and `pibake seal` both take them: from its rendering before the
 * build id was bound (so a change to one file names that file, not also the id-bearing ones) and,
 * for the public digest, its stand-in rendering; with the base, the disk id and `extra`
 * (carriedDigests).
 */
export function nodeDigest(rendering: NodeRendering, inputs: { baseSha256: string; diskId: string; sealed: boolean; extra?: Record<string, string> }): NodeDigest {
  return digestNode({ toolVersion, rendered: rendering.unbound.rendered, standIn: rendering.unbound.standIn, ...inputs });
}

/** What each selected node's role lacks in the base, by role (roles with nothing to add left out). */
function wantedPackages(nodes: NodeSpec[], roles: RoleCatalog, installed: ReadonlySet<string>): Map<string, string[]> {
  const wanted = new Map<string, string[]>();
  for (const node of nodes) {
    const packages = missingPackages(roles.get(node.role)?.packages ?? [], installed);
    if (packages.length > 0) wanted.set(node.role, packages);
  }
  return wanted;
}

/** The carried files as digest inputs: a new package version rebakes the cards that carry it. */
function carriedDigests(carried: CarriedPackages | undefined): Record<string, string> {
  if (!carried) return {};
  const digests: Record<string, string> = { 'carry:Packages': createHash('sha256').update(carried.index).digest('hex') };
  for (const deb of carried.debs) digests[`carry:${deb.file}`] = deb.sha256;
  return digests;
}

/**
 * /etc/pibake/manifest.json: what was baked into this card and from which inputs (no secrets), the
 * same whether sealed or not: its digest is the public one, and `secretFiles` lists what the node
 * needs from cluster.secrets.yaml (what `pibake seal` adds to a sealed card).
 */
export function inImageManifest(
  inventory: Inventory, item: { node: NodeSpec; digest: NodeDigest; diskId: string; secretFiles: string[]; carried?: CarriedPackages }, baseSha256: string,
  packages: PackageSource, room: RoomReport,
): RootEntry {
  const body = {
    pibake: toolVersion,
    cluster: inventory.cluster.name,
    node: item.node.name,
    role: item.node.role,
    ip: item.node.ip,
    diskId: item.diskId,
    digest: item.digest.publicDigest,
    base: { sha256: baseSha256 },
    files: item.digest.files,
    secretFiles: item.secretFiles,
    packages: {
      from: packages,
      ...(item.carried ? {
        requested: item.carried.requested, debs: item.carried.debs.length, debBytes: item.carried.debBytes, installedBytes: item.carried.installedBytes,
      } : {}),
    },
    room,
  };
  return {
    kind: 'file',
    path: '/etc/pibake/manifest.json',
    mode: 0o644,
    uid: 0,
    gid: 0,
    data: Buffer.from(`${JSON.stringify(body, null, 2)}\n`),
  };
}

/** Compressed images and .bmap files, made (again) only when missing or older than the image. */
async function packageExtras(
  dir: string,
  record: ManifestNode,
  options: BuildOptions,
  stage: (s: string) => void,
): Promise<ManifestNode['extras']> {
  const wanted: { kind: string; file: string; make: (src: string, dst: string) => Promise<void> }[] = [];
  const image = path.join(dir, record.image.file);
  if (options.bmap) {
    wanted.push({
      kind: 'bmap',
      file: `${record.image.file}.bmap`,
      make: async (src, dst) => {
        await (await import('../package/bmap.ts')).writeBmapFile(src, dst);
      },
    });
  }
  if (options.compress) {
    const compression = options.compress;
    const extension = extensionOf(compression);
    wanted.push({
      kind: extension.slice(1),
      file: `${record.image.file}${extension}`,
      make: async (src, dst) => (await import('../package/compress.ts')).compressImage(src, dst, compression),
    });
  }
  const extras: ManifestNode['extras'] = {};
  for (const want of wanted) {
    const existing = record.extras[want.kind];
    const target = path.join(dir, want.file);
    const state = await fileState(target);
    if (existing && existing.fromDigest === record.digest && state && state.size === existing.size && state.mtimeMs === existing.mtimeMs) {
      extras[want.kind] = existing;
      continue;
    }
    stage(want.kind === 'bmap' ? 'bmap' : `compress ${want.kind}`);
    await want.make(image, target);
    const made = (await fileState(target)) as { size: number; mtimeMs: number };
    const artifact: Artifact = { file: want.file, ...made, sha256: await (await import('../bytes/checksums.ts')).sha256File(target) };
    extras[want.kind] = { ...artifact, fromDigest: record.digest };
  }
  return extras;
}

/** A node taken out of the inventory loses its outputs, so SHA256SUMS and the folder agree. */
async function removeDroppedNodes(
  dir: string,
  inventory: Inventory,
  previous: OutputManifest | undefined,
  manifest: OutputManifest,
  reporter: Reporter,
): Promise<void> {
  if (!previous) return;
  const current = new Set(inventory.nodes.map((n) => n.name));
  for (const [name, record] of Object.entries(previous.nodes)) {
    if (current.has(name)) continue;
    const files = [record.image.file, ...Object.values(record.extras).map((e) => e.file)];
    await Promise.all(files.map((f) => rm(path.join(dir, f), { force: true })));
    delete manifest.nodes[name];
    reporter.event({ type: 'removed', node: name, files });
  }
}
