/**
 * From the nodes' records to the cluster's verdict: healthy, degraded (each thing wrong, and
 * where), or down (the cluster cannot do its job: no load balancer serving, a backend with no
 * server, no PostgreSQL primary). An etcd without quorum is degraded, not down: Patroni cannot
 * change the primary then, but the primary keeps serving (failsafe_mode), and if it stops, "no
 * PostgreSQL primary" says so. Pure; every rule reads what the roles declared (tags,
 * services), never a role's name.
 */
import { formatBytes } from '../common/bytes.ts';
import { serverUp } from './parse.ts';
import type { ProbeTarget } from './probe.ts';
import type { Finding, HaproxyBackend, HaproxyServer, NodeStatus, Replication, UnitStatus, Verdict } from './types.ts';

/**
 * A standby further behind than this is reported. A healthy standby on the same switch replays
 * within a second; 16 MiB is one WAL segment, 30 s covers a burst of writes on an SD card.
 */
export const LAG_BYTES_LIMIT = 16 * 1024 * 1024;
export const LAG_SECONDS_LIMIT = 30;

export interface JudgeContext {
  cluster: string;
  targets: ProbeTarget[];
  /** --node left some nodes out: rules about the whole cluster are not applied. */
  partial: boolean;
  vip?: string;
  /** Where the build's records are (named in "run pibake build" findings). */
  manifestFile: string;
  deadline: number;
  /** Every node checked (set by judge). */
  nodes: NodeStatus[];
}

/** pibake names a standby's slot and application_name after the node (render/context.ts nodeView). */
export function slotName(node: string): string {
  return node.toLowerCase().replace(/[^a-z0-9_]/g, '_');
}

const nodeForSlot = (nodes: { name: string }[], name: string) => nodes.find((n) => n.name === name || slotName(n.name) === name)?.name;

/**
 * Names the standbys in each primary's view, and gives every standby one replication line: the
 * primary's numbers when the primary answered (they are what a failover would lose), else its own.
 * `peers`: every node of the inventory (with --node, the primary may not have been checked).
 */
export function linkReplication(nodes: NodeStatus[], peers: { name: string; ip: string }[] = nodes): void {
  const primaries = nodes.filter((n) => n.postgresql?.answering && n.postgresql.role === 'primary');
  for (const primary of primaries) {
    for (const link of primary.postgresql?.replicas ?? []) link.node = nodeForSlot(peers, link.name);
    for (const slot of primary.postgresql?.slots ?? []) slot.node = nodeForSlot(peers, slot.name);
  }
  const primary = primaries.length === 1 ? primaries[0] : undefined;
  for (const node of nodes) {
    const pg = node.postgresql;
    if (!pg?.answering || pg.role !== 'replica') continue;
    const link = primary?.postgresql?.replicas.find((l) => l.node === node.name);
    let replication: Replication;
    if (primary && link) {
      replication = {
        from: primary.name,
        state: link.state,
        lagBytes: link.lagBytes,
        // replay_lag is NULL once a standby has caught up and nothing is written.
        lagSeconds: link.lagSeconds ?? (link.lagBytes === 0 ? 0 : null),
        source: 'primary',
      };
    } else {
      const upstream = peers.find((n) => n.ip === pg.receiver?.host)?.name;
      replication = {
        from: upstream,
        state: pg.receiver?.status ?? 'not streaming',
        lagBytes: pg.receiveLagBytes ?? null,
        lagSeconds: pg.replayDelaySeconds ?? null,
        source: 'standby',
      };
    }
    node.replication = replication;
  }
}


export function formatSeconds(seconds: number): string {
  return seconds < 10 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds)} s`;
}

function unitTrouble(unit: UnitStatus): string | undefined {
  if (unit.load === 'not-found') return 'not installed';
  if (unit.kind === 'service') {
    if (unit.active === 'active') return undefined;
    return unit.active === 'activating' ? 'starting' : unit.active;
  }
  // First-boot units are one-shots: only a failure or a run still going counts.
  if (unit.active === 'failed') return 'failed';
  if (unit.active === 'activating') return 'still running';
  return undefined;
}

/** The PostgreSQL role a node answered with, if it answered. */
function pgRole(nodes: NodeStatus[], name: string): string | undefined {
  const pg = nodes.find((n) => n.name === name)?.postgresql;
  return pg?.answering ? pg.role : undefined;
}

/**
 * A server HAProxy keeps out because of its PostgreSQL role, not because it is broken: in a
 * backend that picks servers by role (Patroni's /primary or /replica checks: the write port takes
 * the primary, the read port the standbys), a server that answers its check with a refusal
 * (L7STS) while its role differs from the role of every server in use is standing by. So is one
 * whose node serves the same backend in its other role, through a server that tracks it (with no
 * standby, the read port's backup is the primary, tracked from the write port).
 */
export function downByDesign(backend: HaproxyBackend, server: HaproxyServer, nodes: NodeStatus[]): boolean {
  if (serverUp(server.status) || server.check !== 'L7STS') return false;
  if (backend.servers.some((s) => s !== server && serverUp(s.status) && s.tracks?.split('/')[1] === server.name)) return true;
  const own = pgRole(nodes, server.name);
  const serving = backend.servers.filter((s) => !s.backup && serverUp(s.status)).map((s) => pgRole(nodes, s.name));
  if (own === undefined || serving.length === 0 || serving.some((r) => r === undefined)) return false;
  return new Set(serving).size === 1 && serving[0] !== own;
}

function nodeFindings(node: NodeStatus, target: ProbeTarget | undefined, context: JudgeContext): Finding[] {
  const out: Finding[] = [];
  const add = (message: string, level: Finding['level'] = 'degraded') => out.push({ level, node: node.name, message });
  const n = node.name;
  if (!node.reachable) {
    if (node.errorKind === 'unreachable' || node.errorKind === 'refused') add(`${n} is unreachable: ${node.error}`);
    else add(`cannot check ${n}: ${node.error}`);
    return out;
  }
  if (node.errorKind === 'timeout') add(`${n} did not finish the check within ${context.deadline} s`);

  const card = node.card;
  if (card.state === 'stale') add(`stale card: reflash ${n}`);
  else if (card.state === 'foreign') {
    add(card.cluster !== context.cluster
      ? `${n} runs a card of cluster ${card.cluster ?? '?'}: reflash ${n}`
      : `${n} runs ${card.node ?? 'another node'}'s card: reflash ${n}`);
  } else if (card.state === 'not-built') add(`${n} has no image in ${context.manifestFile}: run pibake build`);
  else if (card.state === 'unknown') add(`${n}: cannot tell which image its card runs (${card.error})`);

  const ci = node.cloudInit;
  if (ci && ci.status !== 'done' && ci.status !== 'disabled') {
    if (ci.status === 'running') add(`${n}: first boot is still running (cloud-init: running)`);
    else if (ci.status === 'error') add(`${n}: cloud-init failed${ci.errors[0] ? `: ${ci.errors[0]}` : ''}`);
    else if (ci.status === 'degraded') add(`${n}: cloud-init finished with errors${ci.errors[0] ? `: ${ci.errors[0]}` : ''}`);
    else add(`${n}: cloud-init has not finished (${ci.status})`);
  }
  const fb = node.firstboot;
  if (fb && fb.state !== 'done') add(`${n}: first boot ${fb.state}${fb.detail ? `: ${fb.detail}` : ''}`);

  if (node.unitsError) add(`${n}: cannot read the state of its services (${node.unitsError})`);
  const troubled = node.unitsError ? [] : node.units.flatMap((u) => {
    const trouble = unitTrouble(u);
    return trouble ? [`${u.unit} ${trouble}`] : [];
  });
  if (troubled.length > 0) add(`${n}: ${troubled.join(', ')}`);
  const roleUnits = new Set(node.units.map((u) => u.unit));
  const others = node.failedUnits.filter((u) => !roleUnits.has(u));
  if (others.length > 0) add(`${n}: failed units ${others.join(', ')}`);

  const pg = node.postgresql;
  if (pg && !pg.answering) add(`${n}: PostgreSQL does not answer (${pg.error})`);
  if (pg?.answering) {
    const tags = target?.tags ?? [];
    if (pg.role === 'replica' && tags.includes('postgresql-primary')) add(`${n} is a standby, but its role ${node.role} makes it the primary`);
    if (pg.role === 'primary' && tags.includes('postgresql-replica')) add(`${n} is a primary, but its role ${node.role} makes it a standby`);
    const rep = node.replication;
    if (pg.role === 'replica' && rep) {
      if (rep.state !== 'streaming') add(`${n} does not stream from the primary (${rep.source === 'primary' ? 'state' : 'WAL receiver'}: ${rep.state})`);
      const tooFar = (rep.lagBytes ?? 0) > LAG_BYTES_LIMIT || (rep.lagSeconds ?? 0) > LAG_SECONDS_LIMIT;
      if (tooFar) {
        const parts = [rep.lagBytes !== null ? formatBytes(rep.lagBytes) : undefined, rep.lagSeconds !== null ? formatSeconds(rep.lagSeconds) : undefined];
        add(`${n} lags ${parts.filter(Boolean).join(' / ')} behind the primary`);
      }
    }
    if (pg.role === 'primary') {
      for (const slot of pg.slots) {
        const whose = slot.node && slot.node !== slot.name ? ` (${slot.node})` : '';
        if (slot.walStatus === 'lost') add(`${n}: replication slot ${slot.name}${whose} has lost WAL its standby needs: clone it again`);
        else if (!slot.active && slot.retainedBytes === null) add(`${n}: replication slot ${slot.name}${whose} is inactive and was never used`);
        else if (!slot.active) add(`${n} keeps ${formatBytes(slot.retainedBytes ?? 0)} of WAL for the inactive replication slot ${slot.name}${whose}`);
      }
    }
  }

  const patroni = node.patroni;
  if (patroni && !patroni.answering) add(`${n}: Patroni does not answer (${patroni.error})`);
  else if (patroni?.state && patroni.state !== 'running') add(`${n}: Patroni is ${patroni.state}`);

  const etcd = node.etcd;
  if (etcd && !etcd.answering) add(`${n}: etcd does not answer (${etcd.error})`);
  else if (etcd?.healthy === false) add(`${n}: etcd member not healthy${etcd.reason ? ` (${etcd.reason})` : ''}`);

  const haproxy = node.haproxy;
  if (haproxy && !haproxy.answering) add(`${n}: HAProxy does not answer on its stats socket (${haproxy.error})`);
  if (haproxy?.answering) {
    // Active: it gets the clients (it holds the floating address, or there is none).
    const active = context.vip === undefined || node.holdsVip === true;
    const marked = new Map<string, string[]>();
    for (const backend of haproxy.backends) {
      for (const server of backend.servers) {
        // A server that tracks another mirrors it; that one is judged on its own row.
        if (serverUp(server.status) || server.tracks || downByDesign(backend, server, context.nodes)) continue;
        const key = `${server.name} ${server.status.split(' ')[0]}`;
        marked.set(key, [...(marked.get(key) ?? []), backend.name]);
      }
    }
    for (const [key, backends] of marked) add(`${n}: HAProxy marks ${key} (${backends.join(', ')})`);
    for (const backend of haproxy.backends) {
      if (!serverUp(backend.status)) add(`${n}: HAProxy backend ${backend.name} has no server UP`, active ? 'down' : 'degraded');
    }
  }
  return out;
}

function clusterFindings(nodes: NodeStatus[], context: JudgeContext): Finding[] {
  const out: Finding[] = [];
  const down = (message: string) => out.push({ level: 'down', message });
  const target = (n: NodeStatus) => context.targets.find((t) => t.name === n.name);
  if (nodes.length > 0 && nodes.every((n) => !n.reachable)) down('no node answers');

  const lbs = nodes.filter((n) => target(n)?.haproxy);
  const serving = lbs.filter((n) => n.reachable && n.haproxy?.answering);
  if (context.vip !== undefined && lbs.length > 0) {
    const holders = nodes.filter((n) => n.holdsVip);
    const unknown = nodes.some((n) => !n.reachable);
    if (holders.length === 0) down(`${unknown ? 'no node that answers holds' : 'no node holds'} the floating address ${context.vip}`);
    if (holders.length > 1) out.push({ level: 'degraded', message: `the floating address ${context.vip} is on ${names(holders)} at once` });
    for (const holder of holders) {
      if (!serving.includes(holder)) down(`${holder.name} holds the floating address ${context.vip}, but no HAProxy answers there`);
    }
  } else if (lbs.length > 0 && serving.length === 0) {
    down(`no load balancer answers (${names(lbs)})`);
  }

  // etcd needs a majority of its members (the inventory's roles.etcd.members) to elect a leader.
  const members = nodes.filter((n) => target(n)?.etcdUrl !== undefined);
  const healthy = members.filter((n) => n.etcd?.healthy === true);
  if (members.length > 0 && healthy.length <= members.length / 2) {
    out.push({ level: 'degraded', message: `etcd has no quorum (${healthy.length} of ${members.length} members healthy): Patroni cannot change the primary` });
  }

  const databases = nodes.filter((n) => target(n)?.postgresqlPort !== undefined);
  const primaries = databases.filter((n) => n.postgresql?.answering && n.postgresql.role === 'primary');
  if (databases.length > 0 && primaries.length === 0) down('no PostgreSQL primary answers: writes fail');
  if (primaries.length > 1) down(`${names(primaries)} are all PostgreSQL primaries (split brain)`);
  const primary = primaries.length === 1 ? primaries[0] : undefined;
  if (primary?.postgresql?.timeline !== undefined) {
    for (const standby of databases) {
      const pg = standby.postgresql;
      if (pg?.answering && pg.role === 'replica' && pg.timeline !== undefined && pg.timeline !== primary.postgresql.timeline) {
        out.push({
          level: 'degraded',
          node: standby.name,
          message: `${standby.name} is on timeline ${pg.timeline}, the primary ${primary.name} on ${primary.postgresql.timeline}`,
        });
      }
    }
  }
  return out;
}

function names(nodes: NodeStatus[]): string {
  const list = nodes.map((n) => n.name);
  return list.length <= 1 ? (list[0] ?? '') : `${list.slice(0, -1).join(', ')} and ${list[list.length - 1]}`;
}

export function judge(nodes: NodeStatus[], given: Omit<JudgeContext, 'nodes'>): Verdict {
  const context: JudgeContext = { ...given, nodes };
  const all = [
    ...(context.partial ? [] : clusterFindings(nodes, context).filter((f) => f.level === 'down')),
    ...nodes.flatMap((n) => nodeFindings(n, context.targets.find((t) => t.name === n.name), context)),
    ...(context.partial ? [] : clusterFindings(nodes, context).filter((f) => f.level !== 'down')),
  ];
  // What stops the cluster first, then the rest in inventory order.
  const findings = [...all.filter((f) => f.level === 'down'), ...all.filter((f) => f.level !== 'down')];
  if (findings.some((f) => f.level === 'down')) return { state: 'down', exitCode: 2, findings };
  if (findings.length > 0) return { state: 'degraded', exitCode: 1, findings };
  return { state: 'healthy', exitCode: 0, findings };
}
