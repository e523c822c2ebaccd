/**
 * Rules that relate several values of cluster.yaml and so cannot live in the per-field schema:
 * addresses inside the network, unique names, the role tags the cluster needs, the base image
 * source and the ports. Pure: works on the (possibly partial) data shape.ts produced.
 */
import type { Location, Problem } from '../common/errors.ts';
import { CIDR_PATTERN, hostProblem, IPV4_PATTERN, ipToNumber, parseCidr } from './net.ts';
import type { Subnet } from './net.ts';
import type { RawInventory, RoleTags } from './raw.ts';
import { checkBaseKeys } from './base.ts';
import { checkHa } from './checks-ha.ts';
import { suggest } from './shape.ts';

export interface CheckContext {
  file: string;
  /** Value locations by YAML key path ("nodes.2.ip"). */
  locations: ReadonlyMap<string, Location>;
  /** Key locations by YAML key path. */
  keyLocations: ReadonlyMap<string, Location>;
  /** Collects what is allowed but worth saying (single points of failure, old role names). */
  warnings?: Problem[];
}

export function crossCheck(raw: RawInventory, roles: RoleTags, context: CheckContext): Problem[] {
  const problems: Problem[] = [];
  const at = (path: string): Location =>
    context.locations.get(path) ?? context.keyLocations.get(path) ?? parentLocation(path, context) ?? { file: context.file, line: 1, column: 1 };
  const report: Report = (path, message, hint, onKey = false) => {
    const location = (onKey ? context.keyLocations.get(path) : undefined) ?? at(path);
    problems.push({ message, hint, location });
  };

  const subnet = checkNetwork(raw, report);
  checkNodes(raw, subnet, roles, report, at);
  checkBase(raw, report, (key) => context.keyLocations.has(`base.${key}`));
  checkSsh(raw, report);
  const written = (path: string) => context.keyLocations.has(path);
  checkPorts(raw, report, written);
  checkHa(raw, roles, { report, at, written, warn: (warning) => context.warnings?.push(warning) });
  return problems;
}

/** onKey: point at the key (`nodes:`) rather than its value. */
type Report = (path: string, message: string, hint?: string, onKey?: boolean) => void;

function checkNetwork(raw: RawInventory, report: Report): Subnet | undefined {
  const { cidr, gateway } = raw.network ?? {};
  if (!cidr || !CIDR_PATTERN.test(cidr)) return undefined;
  const subnet = parseCidr(cidr);
  if (gateway && IPV4_PATTERN.test(gateway)) {
    const problem = hostProblem(ipToNumber(gateway), subnet, cidr);
    if (problem) report('network.gateway', `gateway ${gateway} ${problem}`, `pick an address inside ${cidr}`);
  }
  return subnet;
}

function checkNodes(
  raw: RawInventory,
  subnet: Subnet | undefined,
  roles: RoleTags,
  report: Report,
  at: (path: string) => Location,
): void {
  const nodes = raw.nodes ?? [];
  const cidr = raw.network?.cidr ?? '';
  const gateway = raw.network?.gateway;
  const seen = { name: new Map<string, number>(), ip: new Map<string, number>(), mac: new Map<string, number>() };
  const tagged = new Map<string, number[]>();
  // Old role names still work but are not offered.
  const knownRoles = [...roles.keys()].filter((name) => !roles.get(name)?.replacedBy).sort();

  nodes.forEach((node, index) => {
    if (!node) return;
    const path = `nodes.${index}`;
    for (const key of ['name', 'ip', 'mac'] as const) {
      const value = node[key];
      if (value === undefined) continue;
      const first = seen[key].get(value);
      if (first === undefined) {
        seen[key].set(value, index);
        continue;
      }
      const firstLine = at(`nodes.${first}.${key}`).line;
      const label = key === 'name' ? 'node name' : key === 'ip' ? 'IP address' : 'MAC address';
      report(`${path}.${key}`, `duplicate ${label} "${value}" (nodes ${first} and ${index})`, `it is already used by the node on line ${firstLine}; every node needs its own`);
    }
    if (node.ip !== undefined && subnet) {
      const ip = ipToNumber(node.ip);
      const problem = hostProblem(ip, subnet, cidr);
      if (problem) report(`${path}.ip`, `node ${node.name ?? index} address ${node.ip} ${problem}`, `pick a free address inside ${cidr}`);
      else if (node.ip === gateway) report(`${path}.ip`, `node ${node.name ?? index} address ${node.ip} is the gateway`, 'the gateway is your router; give the node a free address');
    }
    if (node.role !== undefined) {
      const role = roles.get(node.role);
      if (!role) {
        const close = suggest(node.role, knownRoles);
        report(
          `${path}.role`,
          `unknown role "${node.role}"`,
          `known roles: ${knownRoles.join(', ') || '(none)'}${close.startsWith('did you mean') ? `; ${close}` : ''} (a role is a file in roles/)`,
        );
      } else {
        for (const tag of role.tags) tagged.set(tag, [...(tagged.get(tag) ?? []), index]);
      }
    }
  });

  // Without a usable node list the missing list is already reported; counting tags would only add noise.
  if (!nodes.some((node) => node?.role !== undefined)) return;
  const needRole = (tag: string, count: string): string => {
    const names = knownRoles.filter((name) => roles.get(name)?.tags.includes(tag));
    return names.length
      ? `give ${count} node the role ${names.join(' or ')}`
      : `no role in roles/ has the tag ${tag}; add one (a roles/<name>.yaml with tags: [${tag}])`;
  };
  if (!tagged.has('postgresql')) {
    report('nodes', 'no database node: no node has a role tagged postgresql', needRole('postgresql', 'at least one (three for failover)'), true);
  }
  if (!tagged.has('load-balancer')) {
    report('nodes', 'no load balancer: no node has a role tagged load-balancer', needRole('load-balancer', 'at least one'), true);
  }
  if (!tagged.has('web')) {
    report('nodes', 'no web node: no node has a role tagged web', needRole('web', 'at least one'), true);
  }
}

/** The base's keys against each other, by the rules --base/--base-sha256 also follow (base.ts). */
function checkBase(raw: RawInventory, report: Report, written: (key: string) => boolean): void {
  if (!raw.base) return;
  checkBaseKeys(written, (key, issue) => report(key ? `base.${key}` : 'base', issue.message, issue.hint, key === undefined));
}

function checkSsh(raw: RawInventory, report: Report): void {
  const admin = raw.admin;
  if (!admin) return;
  if ((admin.sshKeys ?? []).length === 0 && admin.generateSshKey === false) {
    report(
      'admin.generate_ssh_key',
      'no SSH key: ssh_keys is empty and generate_ssh_key is false, so nobody could log in',
      'set generate_ssh_key: true, or list a public key (a .pub path or the key itself) under ssh_keys',
    );
  }
}

/** Every service port of the cluster, in the order of the doc, so clashes can be named. */
const PORTS = [
  ['postgresql', 'port'],
  ['web', 'port'],
  ['web', 'app_port'],
  ['lb', 'stats_port'],
  ['lb', 'pg_write_port'],
  ['lb', 'pg_read_port'],
  ['lb', 'monitor_port'],
  ['patroni', 'rest_port'],
  ['etcd', 'client_port'],
  ['etcd', 'peer_port'],
] as const;

/** Ports every node's own system already uses: a service put there would fail, or lock the operator out. */
const SYSTEM_PORTS: Record<number, string> = { 22: 'the SSH port of every node (sshd)' };

/** A clash is reported at the port the file writes (a default clashing with it is not the mistake). */
function checkPorts(raw: RawInventory, report: Report, written: (path: string) => boolean): void {
  const seen = new Map<number, string>();
  for (const [section, key] of PORTS) {
    const prop = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    const port = raw.roles?.[section]?.[prop];
    if (typeof port !== 'number') continue;
    const path = `roles.${section}.${key}`;
    const system = SYSTEM_PORTS[port];
    if (system) {
      report(path, `${path} ${port} is ${system}`, 'pick another port');
      continue;
    }
    const first = seen.get(port);
    if (!first) seen.set(port, path);
    else if (written(path) || !written(first)) report(path, `${path} ${port} is already used by ${first}`, 'give every service its own port');
    else report(first, `${first} ${port} is already used by ${path}${written(path) ? '' : ' (its default)'}`, 'give every service its own port');
  }
}

function parentLocation(path: string, context: CheckContext): Location | undefined {
  const parts = path.split('.');
  while (parts.length > 1) {
    parts.pop();
    const location = context.keyLocations.get(parts.join('.')) ?? context.locations.get(parts.join('.'));
    if (location) return location;
  }
  return undefined;
}
