/**
 * Rules of the high-availability layer that relate several values of cluster.yaml: the floating
 * address against the node addresses, the load balancers that share it, the etcd members among the
 * database nodes, Patroni's timer rule; and one warning per single point of failure the layout
 * still has. Pure, on the partial data shape.ts produced (anything may be missing).
 */
import type { Location, Problem } from '../common/errors.ts';
import { CIDR_PATTERN, hostProblem, IPV4_PATTERN, ipToNumber, parseCidr } from './net.ts';
import type { RawInventory, RoleTags } from './raw.ts';

/** Role tags the layer works with (the shipped roles carry them; a user's role may too). */
export const TAGS = { loadBalancer: 'load-balancer', database: 'postgresql', web: 'web' } as const;

/** Patroni's default ttl where the base does not decide it (bookworm: Patroni 3.0 accepts 10). */
export const SMALLEST_DEFAULT_TTL = 10;
/** etcd member counts pibake accepts: odd (an even count tolerates no more failures than one fewer), at most 7. */
const MAX_ETCD_MEMBERS = 7;

type Report = (path: string, message: string, hint?: string, onKey?: boolean) => void;

export interface HaCheckTools {
  report: Report;
  /** Collects a warning (allowed, but worth saying). */
  warn: (problem: Problem) => void;
  /** Where a YAML key path's value (or else its key, or its parent) was written. */
  at: (path: string) => Location;
  /** Whether cluster.yaml writes this key at all (valid or not). */
  written: (path: string) => boolean;
}

interface NamedNode {
  index: number;
  name: string;
  tags: string[];
}

/** Nodes with a known role, in inventory order, with that role's tags. */
function knownNodes(raw: RawInventory, roles: RoleTags): NamedNode[] {
  const out: NamedNode[] = [];
  (raw.nodes ?? []).forEach((node, index) => {
    const tags = node?.role === undefined ? undefined : roles.get(node.role)?.tags;
    if (node?.name !== undefined && tags) out.push({ index, name: node.name, tags });
  });
  return out;
}

/** The etcd members when cluster.yaml names none: the first three database nodes, or the first one. */
export function defaultEtcdMembers(databaseNodes: readonly string[]): string[] {
  return databaseNodes.slice(0, databaseNodes.length >= 3 ? 3 : 1);
}

/** Database node names (role tagged postgresql) in inventory order. */
export function databaseNodeNames(nodes: readonly { name: string; role: string }[], roles: RoleTags): string[] {
  return nodes.filter((n) => roles.get(n.role)?.tags.includes(TAGS.database)).map((n) => n.name);
}

export function checkHa(raw: RawInventory, roles: RoleTags, tools: HaCheckTools): void {
  const { report, warn, at, written } = tools;
  const nodes = knownNodes(raw, roles);
  // Without a usable node list the missing list is already reported; counting would only add noise.
  if (nodes.length === 0) return;
  const withTag = (tag: string) => nodes.filter((n) => n.tags.includes(tag));
  const lbs = withTag(TAGS.loadBalancer);
  const databases = withTag(TAGS.database);
  const webs = withTag(TAGS.web);
  const names = (list: NamedNode[]) => list.map((n) => n.name).join(', ');
  const cidr = raw.network?.cidr;

  // The floating address.
  const vip = raw.network?.vip;
  if (vip !== undefined && IPV4_PATTERN.test(vip) && cidr && CIDR_PATTERN.test(cidr)) {
    const problem = hostProblem(ipToNumber(vip), parseCidr(cidr), cidr);
    if (problem) report('network.vip', `network.vip ${vip} ${problem}`, `pick a free address inside ${cidr}`);
    else if (vip === raw.network?.gateway) report('network.vip', `network.vip ${vip} is the gateway`, 'the gateway is your router; pick a free address for the cluster');
    (raw.nodes ?? []).forEach((node, index) => {
      if (node?.ip === vip) {
        report('network.vip', `network.vip ${vip} is the address of node ${node.name ?? index} (line ${at(`nodes.${index}.ip`).line})`,
          'the floating address must be one no node has: keepalived adds it to whichever load balancer holds it');
      }
    });
  }
  if (lbs.length >= 2 && !written('network.vip')) {
    report(raw.network ? 'network' : 'nodes', `${lbs.length} load balancers (${names(lbs)}) but no network.vip`,
      `add network.vip: a free address inside ${cidr ?? 'the network'} that clients use; keepalived keeps it on one load balancer and moves it when that one fails`, true);
  }

  const members = checkEtcdMembers(raw, nodes, databases, report);
  checkPatroniTimers(raw, report);
  checkSharedWebPort(raw, nodes, report);

  // Replaced role names still build; say what to write instead.
  for (const node of nodes) {
    const role = raw.nodes?.[node.index]?.role;
    const replacedBy = role === undefined ? undefined : roles.get(role)?.replacedBy;
    if (replacedBy) {
      warn({
        message: `node ${node.name}: role "${role}" is now the same as "${replacedBy}" (Patroni decides at run time which database node is the primary)`,
        hint: `write role: ${replacedBy}; a cluster built before Patroni needs its data moved once (docs/operator-guide.md, "Moving to Patroni")`,
        location: at(`nodes.${node.index}.role`),
      });
    }
  }

  // Single points of failure the layout still has.
  const spof = (node: NamedNode | undefined, message: string, hint: string) => {
    warn({ message: `single point of failure: ${message}`, hint, location: node ? at(`nodes.${node.index}.name`) : at('nodes') });
  };
  if (lbs.length === 1) {
    spof(lbs[0], `${names(lbs)} is the only load balancer; when it fails, clients lose the web site and the database ports`,
      'add a second node with a load-balancer role and set network.vip');
  }
  if (databases.length === 1) {
    spof(databases[0], `${names(databases)} is the only database node; when it fails, the database is down until it is back`,
      'add two more database nodes: Patroni fails over between them and etcd needs three members');
  } else if (databases.length > 1 && members !== undefined && members.length < 3) {
    const first = nodes.find((n) => n.name === members[0]);
    spof(first, `etcd runs on ${members.join(', ')} only; when it fails, Patroni cannot elect a primary and writes stop`,
      'give etcd three members (roles.etcd.members, three database nodes)');
  }
  if (webs.length === 1) {
    spof(webs[0], `${names(webs)} is the only web node; when it fails, the web site is down`, 'add a second node with a web role');
  }
}

/** Checks roles.etcd.members (or the default) and returns the member names, when they can be known. */
function checkEtcdMembers(raw: RawInventory, nodes: NamedNode[], databases: NamedNode[], report: Report): string[] | undefined {
  const listed = (raw.roles?.etcd as { members?: (string | undefined)[] } | undefined)?.members;
  if (listed === undefined) return defaultEtcdMembers(databases.map((n) => n.name));
  const seen = new Set<string>();
  let valid = true;
  listed.forEach((name, i) => {
    if (name === undefined) return void (valid = false);
    const path = `roles.etcd.members.${i}`;
    const node = nodes.find((n) => n.name === name);
    if (seen.has(name)) report(path, `roles.etcd.members lists ${name} twice`, 'name each member once');
    else if (!node) report(path, `roles.etcd.members: ${name} is not a node with a known role`, `members are database nodes: ${databases.map((n) => n.name).join(', ') || '(none yet)'}`);
    else if (!node.tags.includes(TAGS.database)) {
      report(path, `roles.etcd.members: ${name} is not a database node`, `etcd runs beside Patroni on database nodes: ${databases.map((n) => n.name).join(', ') || '(none yet)'}`);
    }
    seen.add(name);
  });
  if (!valid) return undefined;
  if (listed.length % 2 === 0) {
    report('roles.etcd.members', `roles.etcd.members has ${listed.length} members, an even number`,
      `${listed.length} members tolerate ${listed.length / 2 - 1} failure${listed.length / 2 - 1 === 1 ? '' : 's'}, no more than ${listed.length - 1} would; list ${listed.length - 1} or ${listed.length + 1}`, true);
  } else if (listed.length > MAX_ETCD_MEMBERS) {
    report('roles.etcd.members', `roles.etcd.members has ${listed.length} members`, `every write waits for a majority of them; use 3 or 5 (at most ${MAX_ETCD_MEMBERS})`, true);
  }
  return listed as string[];
}

/** Patroni's own rule: loop_wait + 2 × retry_timeout ≤ ttl (it silently lowers loop_wait otherwise). */
function checkPatroniTimers(raw: RawInventory, report: Report): void {
  const patroni = raw.roles?.patroni as { ttl?: number; loopWait?: number; retryTimeout?: number } | undefined;
  if (!patroni || typeof patroni.loopWait !== 'number' || typeof patroni.retryTimeout !== 'number') return;
  const ttl = patroni.ttl ?? SMALLEST_DEFAULT_TTL;
  const needed = patroni.loopWait + 2 * patroni.retryTimeout;
  if (needed > ttl) {
    report(patroni.ttl === undefined ? 'roles.patroni.retry_timeout' : 'roles.patroni.ttl',
      `Patroni needs loop_wait + 2 × retry_timeout ≤ ttl, but ${patroni.loopWait} + 2 × ${patroni.retryTimeout} = ${needed} > ${ttl}${patroni.ttl === undefined ? ' (the default ttl on bookworm)' : ''}`,
      `raise roles.patroni.ttl to ${needed} or lower loop_wait / retry_timeout`);
  }
}

/** A node that is load balancer and web node at once: HAProxy's web front end has port 80. */
function checkSharedWebPort(raw: RawInventory, nodes: NamedNode[], report: Report): void {
  const webPort = (raw.roles?.web as { port?: number } | undefined)?.port;
  const both = nodes.find((n) => n.tags.includes(TAGS.loadBalancer) && n.tags.includes(TAGS.web));
  if (both && webPort === 80) {
    report(`nodes.${both.index}.role`, `node ${both.name} runs HAProxy and nginx, which would both listen on port 80`,
      'set roles.web.port to another port, e.g. 8080 (HAProxy keeps port 80 for the web site)');
  }
}
