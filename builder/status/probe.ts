/**
 * What to ask each node, decided from what its role declares (roles are data: a user's new role
 * is checked without a code change), and the one script that asks it in a single ssh session.
 *
 * | check                        | when the role...                       |
 * |------------------------------|----------------------------------------|
 * | units, card, cloud-init, ... | always: its `services` and `firstboot` |
 * | PostgreSQL (one SQL query)   | has the tag `postgresql`               |
 * | Patroni's REST API           | lists `patroni.service` in services    |
 * | etcd's health                | lists `etcd.service`, and the node is  |
 * |                              | one of `roles.etcd.members`            |
 * | HAProxy's stats socket       | lists `haproxy.service` in services    |
 */
import type { Inventory, NodeSpec } from '../inventory/types.ts';
import type { RoleCatalog } from '../render/roles.ts';
import { PROBE_SCRIPT } from './probe-script.ts';

export interface ProbeTarget {
  name: string;
  role: string;
  ip: string;
  tags: string[];
  services: string[];
  firstboot: string[];
  /** PostgreSQL's port, when the role is tagged `postgresql`. */
  postgresqlPort?: number;
  /** Patroni's REST API (GET /patroni), when the role runs patroni.service. */
  patroniUrl?: string;
  /** etcd's health (GET /health), when the role runs etcd.service and the node is a member. */
  etcdUrl?: string;
  /** Read HAProxy's statistics, when the role runs haproxy.service. */
  haproxy: boolean;
}

const runs = (services: string[], unit: string) => services.some((s) => s === `${unit}.service` || s.startsWith(`${unit}@`));

export function probeTarget(inventory: Inventory, roles: RoleCatalog, node: NodeSpec): ProbeTarget {
  const role = roles.get(node.role);
  const tags = role?.tags ?? [];
  // A node whose role runs etcd but that the inventory does not make a member keeps etcd off
  // by design (pibake-etcd-setup writes no join.env): its unit is not expected to run.
  const etcdMember = inventory.roles.etcd.members.includes(node.name);
  const services = (role?.services ?? []).filter((s) => etcdMember || !runs([s], 'etcd'));
  return {
    name: node.name,
    role: node.role,
    ip: node.ip,
    tags: [...tags],
    services: [...services],
    firstboot: [...(role?.firstboot ?? [])],
    postgresqlPort: tags.includes('postgresql') ? inventory.roles.postgresql.port : undefined,
    patroniUrl: runs(services, 'patroni') ? `http://${node.ip}:${inventory.roles.patroni.restPort}/patroni` : undefined,
    etcdUrl: runs(services, 'etcd') ? `http://${node.ip}:${inventory.roles.etcd.clientPort}/health` : undefined,
    haproxy: runs(services, 'haproxy'),
  };
}

/** The kernel's boot id (/proc/sys/kernel/random/boot_id). */
const BOOT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The script for one node: its settings, then the probe (probe-script.ts). Every value is a unit name, a port, a
 * URL built from validated inventory values or a boot id; they are single-quoted all the same.
 * `settled.cloudInitDoneIn`: the boot in which an earlier round saw cloud-init done (--watch).
 */
export function probeScript(target: ProbeTarget, settled: { cloudInitDoneIn?: string } = {}): string {
  const quote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;
  const bootId = settled.cloudInitDoneIn !== undefined && BOOT_ID.test(settled.cloudInitDoneIn) ? settled.cloudInitDoneIn : '';
  const settings = [
    `# pibake status: probe of ${target.name} (role ${target.role})`,
    `UNITS=${quote([...target.services, ...target.firstboot].join(' '))}`,
    `PG_PORT=${quote(target.postgresqlPort === undefined ? '' : String(target.postgresqlPort))}`,
    `PATRONI_URL=${quote(target.patroniUrl ?? '')}`,
    `ETCD_URL=${quote(target.etcdUrl ?? '')}`,
    `HAPROXY=${quote(target.haproxy ? 'yes' : '')}`,
    `CLOUD_INIT_DONE_IN=${quote(bootId)}`,
  ];
  return `${settings.join('\n')}\n${PROBE_SCRIPT}`;
}
