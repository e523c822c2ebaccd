/** The verdict: each way a node or the cluster can be wrong, one at a time, on both layouts. */
import { describe, expect, it } from 'vitest';
import { judge, linkReplication, LAG_BYTES_LIMIT } from '../../builder/status/verdict.ts';
import { contextOf, haLayout, nodeOf, todaysLayout, unreachable, type Layout } from './fixture.ts';

const verdictOf = (layout: Layout, partial = false) => judge(layout.nodes, contextOf(layout, partial));
const messages = (layout: Layout, partial = false) => verdictOf(layout, partial).findings.map((f) => `${f.level}: ${f.message}`);

describe('healthy clusters', () => {
  it('today\'s layout and the HA layout (standbys kept out of the write port by Patroni are no fault)', () => {
    for (const layout of [todaysLayout(), haLayout()]) expect(verdictOf(layout)).toEqual({ state: 'healthy', exitCode: 0, findings: [] });
  });
  it('each standby gets its replication line from the primary\'s view', () => {
    const layout = todaysLayout();
    expect(nodeOf(layout, 'web2').replication).toEqual({ from: 'web1', state: 'streaming', lagBytes: 0, lagSeconds: 0, source: 'primary' });
    expect(nodeOf(layout, 'web1').postgresql?.replicas.map((r) => r.node)).toEqual(['web2', 'web3']);
  });
});

describe('a node', () => {
  it('unreachable, or refusing the host key or the admin key', () => {
    const layout = todaysLayout();
    unreachable(nodeOf(layout, 'web3'));
    Object.assign(nodeOf(layout, 'web2'), { reachable: false, errorKind: 'host-key', error: 'its ssh host key does not match output/pistack/known_hosts' });
    expect(messages(layout)).toEqual([
      'degraded: cannot check web2: its ssh host key does not match output/pistack/known_hosts',
      'degraded: web3 is unreachable: no answer within 5 s',
    ]);
  });
  it('runs a stale card, another node\'s card, or one that was never built', () => {
    const layout = todaysLayout();
    nodeOf(layout, 'web1').card.state = 'stale';
    Object.assign(nodeOf(layout, 'web2').card, { state: 'foreign', node: 'web3' });
    Object.assign(nodeOf(layout, 'web3').card, { state: 'not-built' });
    expect(messages(layout)).toEqual([
      'degraded: stale card: reflash web1',
      'degraded: web2 runs web3\'s card: reflash web2',
      'degraded: web3 has no image in output/pistack/manifest.json: run pibake build',
    ]);
  });
  it('still booting, cloud-init failed, pibake-firstboot waiting', () => {
    const layout = todaysLayout();
    Object.assign(nodeOf(layout, 'lb1'), { cloudInit: { status: 'running', errors: [] } });
    Object.assign(nodeOf(layout, 'web1'), { cloudInit: { status: 'error', errors: ["('ntp', RuntimeError('oops'))"] } });
    Object.assign(nodeOf(layout, 'web2'), { firstboot: { state: 'waiting', detail: 'installing haproxy failed (attempt 2); next try in 60s' } });
    expect(messages(layout)).toEqual([
      'degraded: lb1: first boot is still running (cloud-init: running)',
      'degraded: web1: cloud-init failed: (\'ntp\', RuntimeError(\'oops\'))',
      'degraded: web2: first boot waiting: installing haproxy failed (attempt 2); next try in 60s',
    ]);
  });
  it('services not active, a first-boot unit failed, other failed units, unit states unreadable', () => {
    const layout = todaysLayout();
    const web2 = nodeOf(layout, 'web2');
    Object.assign(web2.units[0] as object, { active: 'failed', sub: 'failed', result: 'signal' });
    Object.assign(web2.units[4] as object, { active: 'failed', sub: 'failed', result: 'exit-code' });
    web2.failedUnits = ['pibake-webapp.service', 'nginx.service', 'pibake-replica-bootstrap.service', 'apt-daily.service'];
    nodeOf(layout, 'web3').units[1] = { unit: 'postgresql.service', kind: 'service', load: 'not-found', active: 'inactive', sub: 'dead', result: 'success' };
    nodeOf(layout, 'lb1').unitsError = 'sudo: a password is required';
    expect(messages(layout)).toEqual([
      'degraded: lb1: cannot read the state of its services (sudo: a password is required)',
      'degraded: web2: nginx.service failed, pibake-replica-bootstrap.service failed',
      'degraded: web2: failed units apt-daily.service',
      'degraded: web3: postgresql.service not installed',
    ]);
  });
});

describe('PostgreSQL', () => {
  it('a stopped standby: its own finding, and the WAL its slot keeps on the primary', () => {
    const layout = todaysLayout();
    const web3 = nodeOf(layout, 'web3');
    web3.postgresql = { answering: false, error: 'psql: error: connection to server … failed', replicas: [], slots: [] };
    const web1 = nodeOf(layout, 'web1');
    web1.postgresql?.replicas.splice(1, 1);
    Object.assign(web1.postgresql?.slots[1] ?? {}, { active: false, retainedBytes: 33_554_432 });
    delete web3.replication;
    linkReplication(layout.nodes);
    expect(messages(layout)).toEqual([
      'degraded: web1 keeps 32 MiB of WAL for the inactive replication slot web3',
      'degraded: web3: PostgreSQL does not answer (psql: error: connection to server … failed)',
    ]);
  });
  it('a standby that lags, one that does not stream, one on an old timeline, a slot that lost WAL', () => {
    const layout = todaysLayout();
    const link = nodeOf(layout, 'web1').postgresql?.replicas[0];
    Object.assign(link ?? {}, { lagBytes: LAG_BYTES_LIMIT + 1, lagSeconds: 42.4 });
    Object.assign(nodeOf(layout, 'web3').postgresql ?? {}, { receiver: null, timeline: 0 });
    nodeOf(layout, 'web1').postgresql?.replicas.splice(1, 1);
    Object.assign(nodeOf(layout, 'web1').postgresql?.slots[1] ?? {}, { active: false, walStatus: 'lost', retainedBytes: 0 });
    linkReplication(layout.nodes);
    expect(messages(layout)).toEqual([
      'degraded: web1: replication slot web3 has lost WAL its standby needs: clone it again',
      'degraded: web2 lags 16 MiB / 42 s behind the primary',
      'degraded: web3 does not stream from the primary (WAL receiver: not streaming)',
      'degraded: web3 is on timeline 0, the primary web1 on 1',
    ]);
  });
  it('no primary, two primaries, and a primary where the role says standby', () => {
    const none = todaysLayout();
    nodeOf(none, 'web1').postgresql = { answering: false, error: 'psql: error', replicas: [], slots: [] };
    expect(verdictOf(none).state).toBe('down');
    expect(messages(none)[0]).toBe('down: no PostgreSQL primary answers: writes fail');

    const two = todaysLayout();
    Object.assign(nodeOf(two, 'web2').postgresql ?? {}, { role: 'primary' });
    delete nodeOf(two, 'web2').replication;
    expect(messages(two)).toEqual([
      'down: web1 and web2 are all PostgreSQL primaries (split brain)',
      'degraded: web2 is a primary, but its role replica makes it a standby',
    ]);
  });
});

describe('load balancers', () => {
  it('today: a server DOWN is degraded; the only load balancer gone, or a backend with no server, is down', () => {
    const layout = todaysLayout();
    const backends = nodeOf(layout, 'lb1').haproxy?.backends ?? [];
    Object.assign(backends[0]?.servers[1] ?? {}, { status: 'DOWN', check: 'L7STS' });
    Object.assign(backends[2]?.servers[0] ?? {}, { status: 'DOWN', check: 'L4CON' });
    Object.assign(backends[1] ?? {}, { status: 'DOWN' });
    Object.assign(backends[1]?.servers[0] ?? {}, { status: 'MAINT', check: undefined });
    expect(messages(layout)).toEqual([
      'down: lb1: HAProxy backend postgresql-write has no server UP',
      'degraded: lb1: HAProxy marks web2 DOWN (web, postgresql-read)',
      'degraded: lb1: HAProxy marks web1 MAINT (postgresql-write)',
    ]);
    unreachable(nodeOf(layout, 'lb1'));
    expect(messages(layout)).toEqual(['down: no load balancer answers (lb1)', 'degraded: lb1 is unreachable: no answer within 5 s']);
  });
  it('HA: one load balancer down is degraded while the other holds the floating address', () => {
    const layout = haLayout();
    unreachable(nodeOf(layout, 'lb2'));
    expect(verdictOf(layout)).toMatchObject({ state: 'degraded', exitCode: 1 });
    expect(messages(layout)).toEqual(['degraded: lb2 is unreachable: no answer within 5 s']);
  });
  it('HA: the holder of the address without HAProxy, nobody holding it, both holding it', () => {
    const layout = haLayout();
    nodeOf(layout, 'lb1').haproxy = { answering: false, error: '/run/haproxy/admin.sock: [Errno 111] Connection refused', backends: [] };
    expect(messages(layout)).toEqual([
      'down: lb1 holds the floating address 10.0.0.9, but no HAProxy answers there',
      'degraded: lb1: HAProxy does not answer on its stats socket (/run/haproxy/admin.sock: [Errno 111] Connection refused)',
    ]);
    const nobody = haLayout();
    nodeOf(nobody, 'lb1').holdsVip = false;
    expect(messages(nobody)).toEqual(['down: no node holds the floating address 10.0.0.9']);
    const both = haLayout();
    nodeOf(both, 'lb2').holdsVip = true;
    expect(messages(both)).toEqual(['degraded: the floating address 10.0.0.9 is on lb1 and lb2 at once']);
  });
  it('HA after a failover: the old primary dead is reported, the standbys kept out by role are not', () => {
    const layout = haLayout();
    unreachable(nodeOf(layout, 'web1'));
    const web2 = nodeOf(layout, 'web2');
    web2.postgresql = { answering: true, role: 'primary', timeline: 4, replicas: [{ name: 'web3', state: 'streaming', sync: 'sync', lagBytes: 0, lagSeconds: 0 }], slots: [] };
    Object.assign(web2.patroni ?? {}, { role: 'primary', timeline: 4 });
    delete web2.replication;
    Object.assign(nodeOf(layout, 'web3').postgresql ?? {}, { timeline: 4, receiver: { status: 'streaming', host: '10.0.0.12', slot: 'web3' } });
    for (const lb of ['lb1', 'lb2']) {
      const [web, write, read] = nodeOf(layout, lb).haproxy?.backends ?? [];
      Object.assign(web?.servers[0] ?? {}, { status: 'DOWN', check: 'L4TOUT' });
      if (write) write.servers = [{ name: 'web1', status: 'DOWN', check: 'L4TOUT', backup: false }, { name: 'web2', status: 'UP', check: 'L7OK', backup: false }, { name: 'web3', status: 'DOWN', check: 'L7STS', backup: false }];
      if (read) {
        read.servers = [{ name: 'web1', status: 'DOWN', check: 'L4TOUT', backup: false }, { name: 'web2', status: 'DOWN', check: 'L7STS', backup: false },
          { name: 'web3', status: 'UP', check: 'L7OK', backup: false }, { name: 'web1-primary', status: 'DOWN', backup: true, tracks: 'postgresql-write/web1' },
          { name: 'web2-primary', status: 'UP', backup: true, tracks: 'postgresql-write/web2' }];
      }
    }
    linkReplication(layout.nodes);
    expect(nodeOf(layout, 'web3').replication).toMatchObject({ from: 'web2', state: 'streaming', source: 'primary' });
    expect(messages(layout)).toEqual([
      'degraded: lb1: HAProxy marks web1 DOWN (web, postgresql-write, postgresql-read)',
      'degraded: lb2: HAProxy marks web1 DOWN (web, postgresql-write, postgresql-read)',
      'degraded: web1 is unreachable: no answer within 5 s',
    ]);
  });
  it('one database node: the primary refused by the read port serves it as the tracked backup, no fault', () => {
    const layout = haLayout();
    layout.nodes = layout.nodes.filter((n) => n.name !== 'web2' && n.name !== 'web3');
    layout.targets = layout.targets.filter((n) => n.name !== 'web2' && n.name !== 'web3');
    Object.assign(nodeOf(layout, 'web1').postgresql ?? {}, { replicas: [], slots: [] });
    for (const lb of ['lb1', 'lb2']) {
      for (const backend of nodeOf(layout, lb).haproxy?.backends ?? []) backend.servers = backend.servers.filter((s) => s.name.startsWith('web1'));
    }
    expect(verdictOf(layout)).toEqual({ state: 'healthy', exitCode: 0, findings: [] });
    // The same refusal without the tracked backup UP is a fault: nothing of web1 serves the port.
    for (const lb of ['lb1', 'lb2']) {
      const read = nodeOf(layout, lb).haproxy?.backends[2];
      Object.assign(read?.servers[1] ?? {}, { status: 'DOWN' });
      Object.assign(read ?? {}, { status: 'DOWN' });
    }
    expect(messages(layout)).toEqual([
      'down: lb1: HAProxy backend postgresql-read has no server UP',
      'degraded: lb1: HAProxy marks web1 DOWN (postgresql-read)',
      'degraded: lb2: HAProxy marks web1 DOWN (postgresql-read)',
      'degraded: lb2: HAProxy backend postgresql-read has no server UP',
    ]);
  });
  it('Patroni not running', () => {
    const layout = haLayout();
    Object.assign(nodeOf(layout, 'web3').patroni ?? {}, { state: 'starting' });
    nodeOf(layout, 'web2').patroni = { answering: false, error: 'http://10.0.0.12:8008/patroni: <urlopen error [Errno 111] Connection refused>' };
    expect(messages(layout)).toEqual([
      'degraded: web2: Patroni does not answer (http://10.0.0.12:8008/patroni: <urlopen error [Errno 111] Connection refused>)',
      'degraded: web3: Patroni is starting',
    ]);
  });
  it('etcd: a member that does not answer, then no quorum (a member without a leader is not healthy)', () => {
    const layout = haLayout();
    nodeOf(layout, 'web3').etcd = { answering: false, error: 'http://10.0.0.13:2379/health: <urlopen error [Errno 111] Connection refused>' };
    expect(messages(layout)).toEqual(['degraded: web3: etcd does not answer (http://10.0.0.13:2379/health: <urlopen error [Errno 111] Connection refused>)']);
    nodeOf(layout, 'web2').etcd = { answering: true, healthy: false };
    expect(verdictOf(layout)).toMatchObject({ state: 'degraded', exitCode: 1 });
    expect(messages(layout)).toEqual([
      'degraded: web2: etcd member not healthy',
      'degraded: web3: etcd does not answer (http://10.0.0.13:2379/health: <urlopen error [Errno 111] Connection refused>)',
      'degraded: etcd has no quorum (1 of 3 members healthy): Patroni cannot change the primary',
    ]);
  });
});

describe('--node', () => {
  it('judges what was seen only: no cluster-wide rule on a part of the cluster', () => {
    const layout = todaysLayout();
    layout.nodes = layout.nodes.filter((n) => n.name === 'web2');
    layout.targets = layout.targets.filter((n) => n.name === 'web2');
    expect(verdictOf(layout, true)).toEqual({ state: 'healthy', exitCode: 0, findings: [] });
    expect(verdictOf(layout, false).findings.map((f) => f.message)).toEqual(['no PostgreSQL primary answers: writes fail']);
  });
});
