/**
 * The Handlebars context a node's templates see (docs/roles.md "Template context", which
 * role-reference.ts generates: a key added here needs its line there).
 * Every optional key is present (possibly undefined) because templates run in strict mode.
 */
import { PibakeError } from '../common/errors.ts';
import type { Generation, Inventory, NodeSpec, RoleSettings } from '../inventory/types.ts';
import type { RoleCatalog } from './roles.ts';

export interface NodeView {
  name: string;
  role: string;
  tags: string[];
  ip: string;
  fqdn: string;
  mac?: string;
  /** 0-based position in the inventory. */
  index: number;
  /** Replication slot name: the node name lowercased, [^a-z0-9_] replaced by `_`. */
  slot: string;
  /** Runs an etcd member (settings.etcd.members). */
  etcdMember: boolean;
}

export interface TemplateContext {
  cluster: { name: string; domain: string };
  network: {
    cidr: string; prefixLength: number; netmask: string; gateway: string; dns: string[];
    /** The floating address of the load balancers (keepalived), when the inventory has one. */
    vip?: string;
    /** Where clients reach the cluster: the VIP, or the only load balancer's own address. */
    clientAddress: string;
  };
  node: NodeView;
  nodes: NodeView[];
  tagged: Record<string, NodeView[]>;
  primary?: NodeView;
  replicas: NodeView[];
  settings: RoleSettings & {
    postgresql: RoleSettings['postgresql'] & { version: number };
    patroni: RoleSettings['patroni'] & { ttl: number };
  };
  /** The etcd members, in inventory order. */
  etcdMembers: NodeView[];
  secrets: Record<string, string>;
  admin: { user: string };
  generation: Generation;
}

/** Debian's PostgreSQL major version per generation (what `apt-get install postgresql` gives). */
export const DEFAULT_POSTGRESQL_VERSION: Record<Generation, number> = { bookworm: 15, trixie: 17 };

/**
 * Patroni's ttl per generation: bookworm's Patroni 3.0 accepts 10 (measured: writes back after
 * about 10 s); trixie's Patroni 4.0 raises anything below 20 to 20, and its validator refuses it.
 */
export const DEFAULT_PATRONI_TTL: Record<Generation, number> = { bookworm: 10, trixie: 20 };
const MIN_PATRONI_TTL: Record<Generation, number> = { bookworm: 1, trixie: 20 };

/** The ttl a node's Patroni gets: the inventory's (checked against the generation's Patroni), else the generation's default. */
export function patroniTtl(inventory: Inventory, generation: Generation): number {
  const configured = inventory.roles.patroni.ttl;
  if (configured === undefined) return DEFAULT_PATRONI_TTL[generation];
  if (configured < MIN_PATRONI_TTL[generation]) {
    throw new PibakeError(`roles.patroni.ttl ${configured} is below ${MIN_PATRONI_TTL[generation]}, the least the ${generation} base's Patroni accepts`, {
      hint: `set ttl to ${MIN_PATRONI_TTL[generation]} or more, or leave it out (default ${DEFAULT_PATRONI_TTL[generation]} on ${generation})`,
      location: inventory.locations.get('roles.patroni.ttl'),
    });
  }
  return configured;
}

/**
 * The PostgreSQL major version a node will run: the inventory's, else the server the base already
 * has installed (postgresql-NN), else what the generation's Debian installs.
 */
export function postgresqlVersion(configured: number | undefined, generation: Generation, installed: ReadonlySet<string>): number {
  if (configured !== undefined) return configured;
  const versions = [...installed].map((p) => /^postgresql-(\d+)$/.exec(p)?.[1]).filter((v): v is string => v !== undefined).map(Number);
  return versions.length > 0 ? Math.max(...versions) : DEFAULT_POSTGRESQL_VERSION[generation];
}

export function nodeView(inventory: Inventory, roles: RoleCatalog, node: NodeSpec, index: number): NodeView {
  const role = roles.get(node.role);
  if (!role) {
    throw new PibakeError(`node "${node.name}" has role "${node.role}", which has no file in roles/`, {
      hint: `known roles: ${[...roles.keys()].join(', ')}`,
      location: inventory.locations.get(`nodes.${index}.role`),
    });
  }
  return {
    name: node.name,
    role: node.role,
    tags: [...role.tags],
    ip: node.ip,
    fqdn: `${node.name}.${inventory.cluster.domain}`,
    mac: node.mac,
    index,
    slot: node.name.toLowerCase().replace(/[^a-z0-9_]/g, '_'),
    etcdMember: inventory.roles.etcd.members.includes(node.name),
  };
}

export function netmaskOf(prefixLength: number): string {
  const bits = prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
  return [24, 16, 8, 0].map((shift) => (bits >>> shift) & 0xff).join('.');
}

export function buildContext(input: {
  inventory: Inventory; roles: RoleCatalog; nodeName: string; generation: Generation; secrets: Record<string, string>;
  /** Packages the base image has; an installed postgresql-NN decides the PostgreSQL version. */
  installedPackages?: ReadonlySet<string>;
}): TemplateContext {
  const { inventory, roles, nodeName, generation } = input;
  const nodes = inventory.nodes.map((n, i) => nodeView(inventory, roles, n, i));
  const node = nodes.find((n) => n.name === nodeName);
  if (!node) {
    throw new PibakeError(`no node named "${nodeName}" in ${inventory.file}`, {
      hint: `nodes: ${nodes.map((n) => n.name).join(', ')}`,
    });
  }
  const tagged: Record<string, NodeView[]> = {};
  for (const role of roles.values()) for (const tag of role.tags) tagged[tag] = [];
  for (const n of nodes) for (const tag of n.tags) (tagged[tag] ??= []).push(n);
  const primaries = tagged['postgresql-primary'] ?? [];
  if (primaries.length > 1) {
    throw new PibakeError(`more than one node is tagged postgresql-primary: ${primaries.map((p) => p.name).join(', ')}`, {
      hint: 'give exactly one node a role tagged postgresql-primary',
    });
  }
  const pg = inventory.roles.postgresql;
  const lbs = tagged['load-balancer'] ?? [];
  const clientAddress = inventory.network.vip ?? lbs[0]?.ip;
  if (clientAddress === undefined) {
    throw new PibakeError('no address for clients: no network.vip and no load balancer', { hint: 'give a node a role tagged load-balancer' });
  }
  const context: TemplateContext = {
    cluster: { ...inventory.cluster },
    network: {
      cidr: inventory.network.cidr,
      prefixLength: inventory.network.prefixLength,
      netmask: netmaskOf(inventory.network.prefixLength),
      gateway: inventory.network.gateway,
      dns: [...inventory.network.dns],
      vip: inventory.network.vip,
      clientAddress,
    },
    node,
    nodes,
    tagged,
    replicas: tagged['postgresql-replica'] ?? [],
    settings: {
      ...inventory.roles,
      postgresql: { ...pg, version: postgresqlVersion(pg.version, generation, input.installedPackages ?? new Set()) },
      patroni: { ...inventory.roles.patroni, ttl: patroniTtl(inventory, generation) },
    },
    etcdMembers: nodes.filter((n) => n.etcdMember),
    secrets: input.secrets,
    admin: { user: inventory.admin.user },
    generation,
  };
  if (primaries[0]) context.primary = primaries[0];
  return context;
}
