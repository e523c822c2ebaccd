/**
 * Node records of healthy clusters, as readNode + linkReplication make them, for the verdict,
 * format and schema tests: today's layout (lb1, web1 primary, web2 and web3 standbys) and the HA
 * layout (lb1 and lb2 sharing 10.0.0.9, web1-web3 under Patroni). Tests break them one way at a time.
 */
import type { ProbeTarget } from '../../builder/status/probe.ts';
import type { NodeStatus, StatusReport } from '../../builder/status/types.ts';
import { judge, linkReplication, type JudgeContext } from '../../builder/status/verdict.ts';

const DIGEST = 'd'.repeat(64);

function base(name: string, role: string, ip: string, services: string[], firstboot: string[] = []): NodeStatus {
  return {
    name, role, ip, reachable: true, seconds: 1.2, hostname: name, uptimeSeconds: 3 * 3600 + 5 * 60,
    card: { state: 'current', node: name, cluster: 'pistack', digest: DIGEST, pibake: '0.1.0', expected: DIGEST },
    cloudInit: { status: 'done', detail: 'DataSourceNoCloud', errors: [] },
    systemState: 'running',
    units: [
      ...services.map((unit) => ({ unit, kind: 'service' as const, load: 'loaded', active: 'active', sub: 'running', result: 'success' })),
      ...firstboot.map((unit) => ({ unit, kind: 'firstboot' as const, load: 'loaded', active: 'active', sub: 'exited', result: 'success' })),
    ],
    failedUnits: [],
    addresses: [`${ip}/24`],
  };
}

const up = (name: string, backup = false) => ({ name, status: 'UP', check: backup ? 'L4OK' : 'L7OK', backup });
const refused = (name: string) => ({ name, status: 'DOWN', check: 'L7STS', backup: false });

export interface Layout {
  nodes: NodeStatus[];
  targets: ProbeTarget[];
  vip?: string;
}

export function todaysLayout(): Layout {
  const webServices = ['nginx.service', 'postgresql.service', 'pibake-webapp.service'];
  const lb1 = base('lb1', 'lb', '10.0.0.10', ['haproxy.service'], ['pibake-ownership.service']);
  lb1.haproxy = {
    answering: true,
    backends: [
      { name: 'web', status: 'UP', servers: [up('web1'), up('web2'), up('web3')] },
      { name: 'postgresql-write', status: 'UP', servers: [up('web1')] },
      { name: 'postgresql-read', status: 'UP', servers: [up('web2'), up('web3'), up('web1', true)] },
    ],
  };
  const web1 = base('web1', 'primary', '10.0.0.11', webServices, ['pibake-ownership.service', 'pibake-primary-setup.service']);
  web1.postgresql = {
    answering: true, role: 'primary', timeline: 1, version: 150018,
    replicas: ['web2', 'web3'].map((name) => ({ name, client: undefined, state: 'streaming', sync: 'async', lagBytes: 0, lagSeconds: null })),
    slots: ['web2', 'web3'].map((name) => ({ name, active: true, walStatus: 'reserved', retainedBytes: 0 })),
  };
  const standby = (name: string, ip: string) => {
    const n = base(name, 'replica', ip, webServices, ['pibake-ownership.service', 'pibake-replica-bootstrap.service']);
    n.postgresql = {
      answering: true, role: 'replica', timeline: 1, version: 150018, replicas: [], slots: [],
      receiver: { status: 'streaming', host: '10.0.0.11', slot: name }, receiveLagBytes: 0, replayDelaySeconds: 0,
    };
    return n;
  };
  const nodes = [lb1, web1, standby('web2', '10.0.0.12'), standby('web3', '10.0.0.13')];
  linkReplication(nodes);
  const target = (n: NodeStatus, tags: string[]): ProbeTarget => ({
    name: n.name, role: n.role, ip: n.ip, tags,
    services: n.units.filter((u) => u.kind === 'service').map((u) => u.unit),
    firstboot: n.units.filter((u) => u.kind === 'firstboot').map((u) => u.unit),
    postgresqlPort: tags.includes('postgresql') ? 5432 : undefined,
    haproxy: n.role === 'lb',
  });
  return {
    nodes,
    targets: [
      target(lb1, ['load-balancer']),
      target(web1, ['web', 'postgresql', 'postgresql-primary']),
      target(nodes[2] as NodeStatus, ['web', 'postgresql', 'postgresql-replica']),
      target(nodes[3] as NodeStatus, ['web', 'postgresql', 'postgresql-replica']),
    ],
  };
}

export function haLayout(): Layout {
  const vip = '10.0.0.9';
  const lb = (name: string, ip: string, holds: boolean) => {
    const n = base(name, 'lb', ip, ['haproxy.service', 'keepalived.service'], ['pibake-ownership.service']);
    n.addresses = holds ? [`${ip}/24`, `${vip}/24`] : [`${ip}/24`];
    n.holdsVip = holds;
    n.haproxy = {
      answering: true,
      backends: [
        { name: 'web', status: 'UP', servers: [up('web1'), up('web2'), up('web3')] },
        // Patroni's OPTIONS /primary and /replica checks: the other role answers 503 (L7STS).
        { name: 'postgresql-write', status: 'UP', servers: [up('web1'), refused('web2'), refused('web3')] },
        // The primary as a backup of the read port follows the write port's check (track).
        { name: 'postgresql-read', status: 'UP', servers: [refused('web1'), up('web2'), up('web3'),
          { ...up('web1-primary', true), check: undefined, tracks: 'postgresql-write/web1' },
          { ...refused('web2-primary'), backup: true, check: undefined, tracks: 'postgresql-write/web2' },
          { ...refused('web3-primary'), backup: true, check: undefined, tracks: 'postgresql-write/web3' }] },
      ],
    };
    return n;
  };
  const services = ['nginx.service', 'pibake-webapp.service', 'etcd.service', 'patroni.service'];
  const db = (name: string, ip: string, primary: boolean) => {
    const n = base(name, 'db', ip, services, ['pibake-ownership.service', 'pibake-etcd-setup.service']);
    n.holdsVip = false;
    n.patroni = { answering: true, state: primary ? 'running' : 'streaming', role: primary ? 'primary' : 'replica', timeline: 3, scope: 'pistack', version: '4.0.7' };
    n.patroni.state = 'running';
    n.etcd = { answering: true, healthy: true };
    n.postgresql = primary
      ? {
        answering: true, role: 'primary', timeline: 3, version: 170002,
        replicas: ['web2', 'web3'].map((r) => ({ name: r, state: 'streaming', sync: r === 'web2' ? 'sync' : 'async', lagBytes: 0, lagSeconds: 0.01 })),
        slots: ['web2', 'web3'].map((r) => ({ name: r, active: true, walStatus: 'reserved', retainedBytes: 0 })),
      }
      : {
        answering: true, role: 'replica', timeline: 3, version: 170002, replicas: [], slots: [],
        receiver: { status: 'streaming', host: '10.0.0.11', slot: name }, receiveLagBytes: 0, replayDelaySeconds: 0,
      };
    return n;
  };
  const nodes = [lb('lb1', '10.0.0.10', true), lb('lb2', '10.0.0.15', false), db('web1', '10.0.0.11', true), db('web2', '10.0.0.12', false), db('web3', '10.0.0.13', false)];
  linkReplication(nodes);
  const targets = nodes.map((n): ProbeTarget => ({
    name: n.name, role: n.role, ip: n.ip, tags: n.role === 'lb' ? ['load-balancer'] : ['web', 'postgresql'],
    services: n.units.filter((u) => u.kind === 'service').map((u) => u.unit),
    firstboot: n.units.filter((u) => u.kind === 'firstboot').map((u) => u.unit),
    postgresqlPort: n.role === 'db' ? 5432 : undefined,
    patroniUrl: n.role === 'db' ? `http://${n.ip}:8008/patroni` : undefined,
    etcdUrl: n.role === 'db' ? `http://${n.ip}:2379/health` : undefined,
    haproxy: n.role === 'lb',
  }));
  return { nodes, targets, vip };
}

export function contextOf(layout: Layout, partial = false): Omit<JudgeContext, 'nodes'> {
  return { cluster: 'pistack', targets: layout.targets, partial, vip: layout.vip, manifestFile: 'output/pistack/manifest.json', deadline: 10 };
}

export function reportOf(layout: Layout): StatusReport {
  return {
    format: 1, cluster: 'pistack', checkedAt: '2026-11-29T12:00:00.000Z', seconds: 2.5, ...(layout.vip ? { vip: layout.vip } : {}),
    partial: false, nodes: layout.nodes, verdict: judge(layout.nodes, contextOf(layout)),
  };
}

export function nodeOf(layout: Layout, name: string): NodeStatus {
  const n = layout.nodes.find((x) => x.name === name);
  if (!n) throw new Error(`no node ${name}`);
  return n;
}

/** What checkNode makes of a node it could not reach. */
export function unreachable(n: NodeStatus, error = 'no answer within 5 s'): void {
  const keep = { name: n.name, role: n.role, ip: n.ip };
  for (const key of Object.keys(n)) delete (n as unknown as Record<string, unknown>)[key];
  Object.assign(n, { ...keep, reachable: false, error, errorKind: 'unreachable', seconds: 5, card: { state: 'unknown', error: 'not checked' }, units: [], failedUnits: [], addresses: [] });
}
