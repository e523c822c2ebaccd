/**
 * `pibake status`: the live cluster at a glance. Reads the inventory and roles (what to ask each
 * node), the build's output folder (which image each card should run, the host keys), asks every
 * node at once over ssh (one session each), and judges the cluster from the answers.
 */
import { access, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { removeOnExit } from '../common/cleanup.ts';
import { PibakeError } from '../common/errors.ts';
import { inParallel } from '../common/parallel.ts';
import { clusterOutputDir, readManifest } from '../package/output.ts';
import type { Inventory } from '../inventory/types.ts';
import { loadProject, selectNodes } from '../render/project.ts';
import type { RoleCatalog } from '../render/roles.ts';
import { adminKeyPaths, knownHosts, readExistingSecrets } from '../render/secrets.ts';
import { CLOUD_INIT_SETTLED, readNode } from './parse.ts';
import { probeScript, probeTarget, type ProbeTarget } from './probe.ts';
import { reachFailure, runRemoteScript, type SshSettings } from './ssh.ts';
import { STATUS_FORMAT, type NodeStatus, type StatusReport } from './types.ts';
import { judge, linkReplication } from './verdict.ts';

export interface StatusOptions {
  config: string;
  /** Output root of `pibake build` (default output/); the cluster's folder is <out>/<cluster>/. */
  out: string;
  nodes?: string[];
  /** Seconds one node's check may take at most. */
  timeout: number;
  /** An ssh config file to use instead of ~/.ssh/config. */
  sshConfig?: string;
}

/** Everything a round of checks needs, prepared once (also for every round of --watch). */
export interface StatusPlan {
  cluster: string;
  targets: ProbeTarget[];
  /** Every node of the inventory, checked or not (names a standby's upstream). */
  peers: { name: string; ip: string }[];
  /** The digest output/<cluster>/manifest.json records per node. */
  digests: Map<string, string | undefined>;
  ssh: SshSettings;
  vip?: string;
  partial: boolean;
  manifestFile: string;
}

/** At most this long to connect: a node on the same switch answers in milliseconds. */
const CONNECT_SECONDS = 5;
/** Nodes checked at once (each is one ssh process). */
const PARALLEL = 32;

export async function planStatus(options: StatusOptions): Promise<StatusPlan> {
  // The same roles pibake build baked the cards from.
  const { inventory, roles } = await loadProject(options.config);
  const selected = selectNodes(inventory, options.nodes);
  const dir = clusterOutputDir(options.out, inventory);
  const manifestFile = path.join(dir, 'manifest.json');
  const manifest = await readManifest(dir, inventory.cluster.name);
  if (!manifest) {
    throw new PibakeError(`no build of cluster "${inventory.cluster.name}" in ${dir} (manifest.json missing or unreadable)`, {
      hint: 'status compares each card with the build\'s records: run pibake build first, or pass its folder with --out',
    });
  }
  const knownHostsFile = await knownHostsOf(dir, manifest.sealed === true, inventory, roles);
  const key = adminKeyPaths(inventory).privateKey;
  let identity: string | undefined;
  if (inventory.admin.generateSshKey) {
    if (await exists(key)) identity = key;
    else if (inventory.admin.sshKeys.length === 0) {
      throw new PibakeError(`the cluster's admin key ${key} is missing`, {
        hint: 'it is written beside the inventory by pibake build; copy it here, or list your own key under admin.ssh_keys',
      });
    }
  }
  const targets = selected.map((node) => probeTarget(inventory, roles, node));
  return {
    cluster: inventory.cluster.name,
    targets,
    peers: inventory.nodes.map((n) => ({ name: n.name, ip: n.ip })),
    // The card records the public digest; a build made before pibake recorded it has only `digest`, which its cards hold.
    digests: new Map(selected.map((n) => [n.name, manifest.nodes[n.name]?.publicDigest ?? manifest.nodes[n.name]?.digest])),
    ssh: {
      user: inventory.admin.user,
      identity,
      knownHosts: knownHostsFile,
      connectTimeout: Math.min(CONNECT_SECONDS, options.timeout),
      deadline: options.timeout,
      sshConfig: options.sshConfig ? path.resolve(options.sshConfig) : undefined,
    },
    vip: inventory.network.vip,
    partial: selected.length !== inventory.nodes.length,
    manifestFile,
  };
}

/**
 * The host keys to check every node against: the build's known_hosts. A sealed build has none (its
 * cards got their host keys when they were sealed), so they come from the secrets file that sealed
 * them, into a private temporary file removed when status exits.
 */
async function knownHostsOf(dir: string, sealed: boolean, inventory: Inventory, roles: RoleCatalog): Promise<string> {
  const file = path.join(dir, 'known_hosts');
  if (await exists(file)) return file;
  if (!sealed) throw new PibakeError(`${file} is missing`, { hint: 'pibake build writes it; status checks every node\'s host key against it' });
  const secrets = await readExistingSecrets(inventory, roles);
  const temp = await mkdtemp(path.join(tmpdir(), 'pibake-status-'));
  removeOnExit(temp);
  const derived = path.join(temp, 'known_hosts');
  await writeFile(derived, knownHosts(inventory, secrets), { mode: 0o600 });
  return derived;
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(() => true, () => false);
}

/**
 * One round: every selected node checked at once, then the verdict. `previous` (--watch): the
 * last round's report, whose settled answers are not asked again.
 */
export async function checkCluster(plan: StatusPlan, ssh: SshSettings = plan.ssh, previous?: StatusReport): Promise<StatusReport> {
  const started = new Date();
  const byName = new Map<string, NodeStatus>();
  await inParallel(plan.targets, PARALLEL, async (target) => {
    byName.set(target.name, await checkNode(plan, target, ssh, previous?.nodes.find((n) => n.name === target.name)));
  });
  const nodes = plan.targets.map((t) => byName.get(t.name) as NodeStatus);
  linkReplication(nodes, plan.peers);
  const verdict = judge(nodes, {
    cluster: plan.cluster, targets: plan.targets, partial: plan.partial, vip: plan.vip, manifestFile: plan.manifestFile, deadline: ssh.deadline,
  });
  return {
    format: STATUS_FORMAT,
    cluster: plan.cluster,
    checkedAt: started.toISOString(),
    seconds: (Date.now() - started.getTime()) / 1000,
    ...(plan.vip ? { vip: plan.vip } : {}),
    partial: plan.partial,
    nodes,
    verdict,
  };
}

async function checkNode(plan: StatusPlan, target: ProbeTarget, ssh: SshSettings, previous?: NodeStatus): Promise<NodeStatus> {
  // cloud-init's verdict does not change within a boot once it is done.
  const settled = previous?.cloudInit?.status === 'done' && previous.cloudInit.errors.length === 0 ? previous : undefined;
  const script = probeScript(target, { cloudInitDoneIn: settled?.bootId });
  const outcome = await runRemoteScript(target, script, ssh);
  const failed = reachFailure(outcome, { user: ssh.user, knownHosts: ssh.knownHosts, connectTimeout: ssh.connectTimeout, deadline: ssh.deadline });
  if (failed) {
    return {
      name: target.name, role: target.role, ip: target.ip, reachable: false, error: failed.message, errorKind: failed.kind,
      seconds: outcome.seconds, card: { state: 'unknown', error: 'not checked' }, units: [], failedUnits: [], addresses: [],
    };
  }
  const node: NodeStatus = {
    ...readNode(target, outcome.stdout, { cluster: plan.cluster, digest: plan.digests.get(target.name), vip: plan.vip }),
    seconds: outcome.seconds,
  };
  if (settled?.cloudInit && node.cloudInit?.detail === CLOUD_INIT_SETTLED) node.cloudInit = settled.cloudInit;
  if (outcome.timedOut) {
    node.errorKind = 'timeout';
    node.error = `the check was cut off after ${ssh.deadline} s`;
  }
  return node;
}
