/**
 * The probe's output read back: sections, and each program's real output (fixtures/README.md says
 * where each came from). The last test runs the real probe script on this machine with sh and
 * reads whatever this machine's programs answered.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import {
  judgeCard, parseAddresses, parseCloudInit, parseEtcd, parseFailedUnits, parseFirstboot, parseHaproxy, parseHost, parsePatroni, parsePostgres,
  parseUnits, readNode, splitSections, systemState, type Section,
} from '../../builder/status/parse.ts';
import { probeScript, type ProbeTarget } from '../../builder/status/probe.ts';
import { freePort } from '../helpers/qemu.ts';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const fixture = (name: string) => readFileSync(path.join(fixtures, name), 'utf8');
const ok = (name: string, text: string): Section => ({ name, text, exitCode: 0 });

/** `show stat` on HAProxy's stats socket, as the probe asks it. */
function showStat(socket: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const conn = connect(socket, () => conn.end('show stat\n'));
    conn.on('data', (chunk) => { text += chunk.toString(); });
    conn.on('end', () => resolve(text));
    conn.on('error', reject);
  });
}

/** etcd (Debian's etcd-server) as a one-member cluster on free loopback ports, until its /health answers. */
async function startEtcd(): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pibake-status-etcd-'));
  const [client, peer] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${client}`;
  const child = execa('etcd', ['--name', 'here', '--data-dir', path.join(dir, 'data'), '--listen-client-urls', url, '--advertise-client-urls', url,
    '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
    '--initial-cluster', `here=http://127.0.0.1:${peer}`], { reject: false, all: true });
  const stop = async () => {
    child.kill('SIGTERM');
    await child;
    await rm(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${url}/health`).then((r) => r.ok, () => false)) return { url, stop };
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await stop();
  throw new Error(`etcd did not answer on ${url} within 20 s:\n${String((await child).all)}`);
}

describe('splitSections', () => {
  it('reads each section with its exit code, a step without a final newline, and one cut off', () => {
    const out = [
      '@@pibake-status begin host', 'web1', '1234.5 99.1', '', '@@pibake-status end host 0',
      '@@pibake-status begin manifest', 'cat: /etc/pibake/manifest.json: No such file or directory', '', '@@pibake-status end manifest 1',
      '@@pibake-status begin system', 'running', '@@pibake-status end system 0',
      '@@pibake-status begin postgresql', '{"version" : 1',
    ].join('\n');
    const s = splitSections(out);
    expect(s.get('host')).toEqual({ name: 'host', text: 'web1\n1234.5 99.1', exitCode: 0 });
    expect(s.get('manifest')?.exitCode).toBe(1);
    expect(s.get('system')).toEqual({ name: 'system', text: 'running', exitCode: 0 });
    expect(s.get('postgresql')).toEqual({ name: 'postgresql', text: '{"version" : 1' });
    expect(parseHost('web1\n1234.5 99.1\n0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0')).toEqual({ hostname: 'web1', uptimeSeconds: 1234.5, bootId: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0' });
    expect(systemState(s.get('system'))).toBe('running');
    expect(systemState(ok('system', 'System has not been booted with systemd as init system (PID 1). Can\'t operate.'))).toBeUndefined();
  });
});

describe('judgeCard: the in-image manifest against output/<cluster>/manifest.json', () => {
  const manifest = (node: string, cluster: string, digest: string) =>
    ok('manifest', JSON.stringify({ pibake: '0.1.0', cluster, node, role: 'replica', ip: '10.0.0.12', digest, files: {} }, null, 2));
  const expect_ = { node: 'web2', cluster: 'pistack', digest: 'a'.repeat(64) };
  it('current, stale, another node\'s card, another cluster\'s card, not built, unreadable', () => {
    expect(judgeCard(manifest('web2', 'pistack', 'a'.repeat(64)), expect_).state).toBe('current');
    expect(judgeCard(manifest('web2', 'pistack', 'b'.repeat(64)), expect_)).toMatchObject({ state: 'stale', digest: 'b'.repeat(64), expected: 'a'.repeat(64) });
    expect(judgeCard(manifest('web3', 'pistack', 'a'.repeat(64)), expect_)).toMatchObject({ state: 'foreign', node: 'web3' });
    expect(judgeCard(manifest('web2', 'other', 'a'.repeat(64)), expect_)).toMatchObject({ state: 'foreign', cluster: 'other' });
    expect(judgeCard(manifest('web2', 'pistack', 'a'.repeat(64)), { ...expect_, digest: undefined }).state).toBe('not-built');
    expect(judgeCard({ name: 'manifest', text: 'cat: /etc/pibake/manifest.json: No such file or directory', exitCode: 1 }, expect_))
      .toEqual({ state: 'unknown', error: 'cat: /etc/pibake/manifest.json: No such file or directory' });
    expect(judgeCard(ok('manifest', 'garbage'), expect_)).toEqual({ state: 'unknown', error: '/etc/pibake/manifest.json is not JSON' });
  });
});

describe('parseCloudInit', () => {
  it('reads cloud-init 22.4\'s JSON (captured) and the plain form of older ones', () => {
    expect(parseCloudInit(ok('cloud-init', fixture('cloud-init-22.4-done.json')))).toEqual({
      status: 'done', detail: 'DataSourceNoCloud [seed=/dev/mmcblk0p1][dsmode=net]', errors: [],
    });
    expect(parseCloudInit(ok('cloud-init', 'status: running\n'))).toEqual({ status: 'running', errors: [] });
  });
  it('reads 23.4+: a boot that finished with recoverable errors is degraded, errors are kept', () => {
    const degraded = { status: 'done', extended_status: 'degraded done', detail: 'DataSourceNoCloud', errors: [],
      recoverable_errors: { WARNING: ['Failed to set locale en_GB.UTF-8'] } };
    expect(parseCloudInit({ name: 'cloud-init', text: JSON.stringify(degraded), exitCode: 2 })).toEqual({
      status: 'degraded', detail: 'DataSourceNoCloud', errors: ['WARNING: Failed to set locale en_GB.UTF-8'],
    });
    const failed = { status: 'error', extended_status: 'error', errors: ["('ntp', RuntimeError('oops'))"], recoverable_errors: {} };
    expect(parseCloudInit({ name: 'cloud-init', text: JSON.stringify(failed), exitCode: 1 })?.status).toBe('error');
  });
  it('is absent where cloud-init is not installed (bookworm cards) or was not reached', () => {
    expect(parseCloudInit({ name: 'cloud-init', text: 'cloud-init is not installed', exitCode: 127 })).toBeUndefined();
    expect(parseCloudInit(undefined)).toBeUndefined();
  });
});

describe('parseFirstboot: /var/lib/pibake/firstboot.status', () => {
  it('reads its key=value lines', () => {
    const text = 'state=waiting\nsource=card\nattempt=2\nupdated=2026-11-29T10:00:00Z\ndetail=installing haproxy failed (attempt 2); next try in 60s\n';
    expect(parseFirstboot(ok('firstboot', text))).toEqual({
      state: 'waiting', attempt: 2, updated: '2026-11-29T10:00:00Z', detail: 'installing haproxy failed (attempt 2); next try in 60s',
    });
    expect(parseFirstboot({ name: 'firstboot', text: 'cat: /var/lib/pibake/firstboot.status: No such file or directory', exitCode: 1 })).toBeUndefined();
  });
});

describe('systemd', () => {
  it('reads systemctl show blocks in any property order; a unit systemd does not know is not-found', () => {
    const text = [
      'Id=nginx.service', 'LoadState=loaded', 'ActiveState=active', 'SubState=running', 'Result=success', '',
      'Result=signal', 'ActiveState=failed', 'SubState=failed', 'LoadState=loaded', 'Id=pibake-webapp.service', '',
      'Id=pibake-replica-bootstrap.service', 'LoadState=loaded', 'ActiveState=active', 'SubState=exited', 'Result=success', '',
      'Id=postgresql.service', 'LoadState=not-found', 'ActiveState=inactive', 'SubState=dead', 'Result=success',
    ].join('\n');
    const units = parseUnits(text, { services: ['nginx.service', 'pibake-webapp.service', 'postgresql.service'], firstboot: ['pibake-replica-bootstrap.service'] });
    expect(units.map((u) => `${u.kind} ${u.unit} ${u.load} ${u.active}/${u.sub} ${u.result}`)).toEqual([
      'service nginx.service loaded active/running success',
      'service pibake-webapp.service loaded failed/failed signal',
      'service postgresql.service not-found inactive/dead success',
      'firstboot pibake-replica-bootstrap.service loaded active/exited success',
    ]);
    expect(parseFailedUnits('pibake-webapp.service loaded failed failed pibake demo web app\nssh.socket loaded failed failed OpenBSD Secure Shell server socket\n'))
      .toEqual(['pibake-webapp.service', 'ssh.socket']);
    expect(parseFailedUnits('')).toEqual([]);
  });
});

describe('parseAddresses: ip -4 -br addr show', () => {
  it('takes every IPv4 address of every interface but lo', () => {
    const text = 'lo               UNKNOWN        127.0.0.1/8 \neth0             UP             10.0.0.10/24 10.0.0.9/24 \nwlan0            DOWN           \n';
    expect(parseAddresses(text)).toEqual(['10.0.0.10/24', '10.0.0.9/24']);
  });
});

describe('parsePostgres: the probe\'s query on PostgreSQL 15 (captured)', () => {
  const [primary, standby, orphan, promoted] = fixture('postgresql-15.jsonl').trim().split('\n').map((line) => parsePostgres(ok('postgresql', line)));
  it('a primary: its standbys with lag, its slots', () => {
    expect(primary).toEqual({
      answering: true, role: 'primary', timeline: 1, version: 150018,
      replicas: [{ name: 'web2', client: undefined, state: 'streaming', sync: 'async', lagBytes: 1283920, lagSeconds: 0.232239 }],
      slots: [
        { name: 'web2', active: true, walStatus: 'reserved', retainedBytes: 0 },
        { name: 'web3', active: false, walStatus: undefined, retainedBytes: null },
      ],
    });
  });
  it('a standby streaming, one whose primary is gone, one promoted', () => {
    expect(standby).toMatchObject({ role: 'replica', timeline: 1, receiver: { status: 'streaming', slot: 'web2' }, receiveLagBytes: 0, replayDelaySeconds: 0 });
    expect(orphan).toMatchObject({ role: 'replica', receiver: null });
    expect(promoted).toMatchObject({ role: 'primary', timeline: 2, replicas: [], slots: [] });
    expect(promoted).not.toHaveProperty('receiver');
  });
  it('says why when it does not answer', () => {
    const down = parsePostgres({
      name: 'postgresql', exitCode: 2,
      text: 'psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: No such file or directory\n\tIs the server running locally and accepting connections on that socket?',
    });
    expect(down).toEqual({
      answering: false, replicas: [], slots: [],
      error: 'psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: No such file or directory',
    });
    expect(parsePostgres({ name: 'postgresql', text: 'sudo: a password is required', exitCode: 1 }).error).toBe('sudo: a password is required');
    expect(parsePostgres({ name: 'postgresql', text: '', exitCode: 124 }).error).toBe('PostgreSQL: no answer within the probe\'s time limit');
    expect(parsePostgres({ name: 'postgresql', text: '' }).error).toBe('PostgreSQL: cut off (the check ran out of time)');
  });
});

describe('parsePatroni: GET /patroni', () => {
  it('Patroni 3 says master, 4 says primary: both are the primary', () => {
    const v3 = { state: 'running', role: 'master', server_version: 150004, xlog: { location: 67395656 }, timeline: 1,
      replication: [{ usename: 'replicator', application_name: 'web2', client_addr: '10.0.0.12', state: 'streaming', sync_state: 'sync' }],
      patroni: { version: '3.0.2', scope: 'pistack', name: 'web1' } };
    expect(parsePatroni(ok('patroni', JSON.stringify(v3)))).toEqual({ answering: true, state: 'running', role: 'primary', timeline: 1, scope: 'pistack', version: '3.0.2', pendingRestart: undefined });
    const v4 = { ...v3, role: 'replica', state: 'streaming', timeline: 3, pending_restart: true, patroni: { version: '4.0.7', scope: 'pistack', name: 'web2' } };
    expect(parsePatroni(ok('patroni', JSON.stringify(v4)))).toMatchObject({ state: 'streaming', role: 'replica', timeline: 3, pendingRestart: true });
  });
  it('says why when it does not answer', () => {
    expect(parsePatroni({ name: 'patroni', text: 'http://10.0.0.11:8008/patroni: <urlopen error [Errno 111] Connection refused>', exitCode: 1 }))
      .toEqual({ answering: false, error: 'http://10.0.0.11:8008/patroni: <urlopen error [Errno 111] Connection refused>' });
  });
});

describe('parseEtcd: GET /health of etcd 3.4 (captured)', () => {
  it('healthy; without a leader (503) not healthy; 3.5\'s reason kept; no answer says why', () => {
    const [healthy, noLeader] = fixture('etcd-3.4-health.jsonl').trim().split('\n');
    expect(parseEtcd(ok('etcd', healthy ?? ''))).toEqual({ answering: true, healthy: true });
    expect(parseEtcd(ok('etcd', noLeader ?? ''))).toEqual({ answering: true, healthy: false });
    expect(parseEtcd(ok('etcd', '{"health":"false","reason":"RAFT NO LEADER"}'))).toEqual({ answering: true, healthy: false, reason: 'RAFT NO LEADER' });
    expect(parseEtcd({ name: 'etcd', text: 'http://10.0.0.13:2379/health: timed out', exitCode: 1 }))
      .toEqual({ answering: false, error: 'http://10.0.0.13:2379/health: timed out' });
  });
});

describe('parseHaproxy: show stat of HAProxy 2.6 (captured)', () => {
  it('backends with servers; FRONTEND rows and server-less proxies left out; backup marked', () => {
    expect(parseHaproxy(ok('haproxy', fixture('haproxy-2.6-show-stat.csv')))).toEqual({
      answering: true,
      backends: [
        { name: 'web', status: 'UP', servers: [
          { name: 'web1', status: 'UP', check: 'L7OK', backup: false },
          { name: 'web2', status: 'DOWN', check: 'L4CON', backup: false },
        ] },
        { name: 'postgresql-read', status: 'UP', servers: [
          { name: 'web3', status: 'DOWN', check: 'L4CON', backup: false },
          { name: 'web1', status: 'UP', check: 'L4OK', backup: true },
        ] },
      ],
    });
  });
  it('a server that tracks another says which', () => {
    expect(parseHaproxy(ok('haproxy', fixture('haproxy-2.6-show-stat-track.csv'))).backends).toEqual([
      { name: 'postgresql-write', status: 'UP', servers: [
        { name: 'web1', status: 'UP', check: 'L4OK', backup: false },
        { name: 'web2', status: 'DOWN', check: 'L4CON', backup: false },
      ] },
      { name: 'postgresql-read', status: 'UP', servers: [
        { name: 'web2', status: 'DOWN', check: 'L4CON', backup: false },
        { name: 'web1-primary', status: 'UP', check: undefined, backup: true, tracks: 'postgresql-write/web1' },
      ] },
    ]);
  });
  it('a check that is running: the last result, without the "* " HAProxy marks it with (live HAProxy)', async () => {
    // A Patroni REST API that is slow to refuse: HAProxy shows the server DOWN and, while the next
    // check waits for its answer, the last result as "* L7STS". Read as it is, that is no refusal,
    // and the primary, down by design in the read backend, was reported as a fault (found in CI).
    const dir = await mkdtemp(path.join(tmpdir(), 'pibake-status-haproxy-'));
    const api = createServer((_req, res) => setTimeout(() => res.writeHead(503).end(), 300));
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    const apiPort = (api.address() as AddressInfo).port;
    const socket = path.join(dir, 'admin.sock');
    await writeFile(path.join(dir, 'haproxy.cfg'), [
      'global', `    stats socket ${socket} mode 600 level admin`,
      'defaults', '    mode tcp', '    timeout connect 1s', '    timeout client 5s', '    timeout server 5s', '    timeout check 2s',
      '    default-server inter 100ms fastinter 100ms downinter 100ms fall 1 rise 2',
      'listen postgresql-read', `    bind 127.0.0.1:${await freePort()}`, '    option httpchk OPTIONS /replica', '    http-check expect status 200',
      `    server web3 127.0.0.1:1 check port ${apiPort}`, '',
    ].join('\n'));
    const haproxy = execa('haproxy', ['-db', '-f', path.join(dir, 'haproxy.cfg')], { reject: false, all: true });
    try {
      let seen: string | undefined;
      for (let i = 0; i < 200 && !seen; i++) {
        await new Promise((resolve) => setTimeout(resolve, 25));
        const csv = await showStat(socket).catch(() => '');
        if (/,DOWN,.*,\* L7STS,/.test(csv)) seen = csv;
      }
      expect(seen, 'no show stat caught a running check after an L7STS').toBeDefined();
      expect(parseHaproxy(ok('haproxy', seen ?? '')).backends[0]?.servers).toEqual([{ name: 'web3', status: 'DOWN', check: 'L7STS', backup: false }]);
    } finally {
      haproxy.kill('SIGTERM');
      await haproxy;
      api.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
  it('says why when the socket does not answer', () => {
    expect(parseHaproxy({ name: 'haproxy', text: '/run/haproxy/admin.sock: [Errno 2] No such file or directory', exitCode: 1 }))
      .toEqual({ answering: false, error: '/run/haproxy/admin.sock: [Errno 2] No such file or directory', backends: [] });
  });
});

describe('the real probe script, run here with sh', () => {
  it('prints every section it was asked for, and readNode reads what this machine answered', async () => {
    // A real one-member etcd on loopback answers the etcd step; nothing listens for the others.
    const etcd = await startEtcd();
    const target: ProbeTarget = {
      name: 'here', role: 'test', ip: '127.0.0.1', tags: ['postgresql'], services: ['pibake-no-such.service'], firstboot: [],
      postgresqlPort: 1, patroniUrl: 'http://127.0.0.1:1/patroni', etcdUrl: `${etcd.url}/health`, haproxy: true,
    };
    const run = await execa('sh', ['-s'], { input: probeScript(target), reject: false, timeout: 60_000 }).finally(() => etcd.stop());
    const sections = splitSections(run.stdout);
    expect([...sections.keys()]).toEqual(['host', 'manifest', 'firstboot', 'cloud-init', 'units', 'failed', 'system', 'addresses', 'postgresql', 'patroni', 'etcd', 'haproxy']);
    for (const s of sections.values()) expect(s.exitCode, s.name).toBeTypeOf('number');
    const node = readNode(target, run.stdout, { cluster: 'pistack', digest: 'a'.repeat(64) });
    expect(node.uptimeSeconds).toBeGreaterThan(0);
    expect(node.postgresql?.answering).toBe(false);
    expect(node.patroni).toMatchObject({ answering: false, error: expect.stringContaining('http://127.0.0.1:1/patroni: ') });
    expect(node.etcd).toEqual({ answering: true, healthy: true });
    expect(node.haproxy?.answering).toBe(false);
    expect(node.bootId).toBe((await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim());
    // --watch, once cloud-init was done in this boot: the script does not start it again.
    if (node.cloudInit) {
      const again = await execa('sh', ['-s'], { input: probeScript(target, { cloudInitDoneIn: node.bootId }), reject: false, timeout: 60_000 });
      expect(splitSections(again.stdout).get('cloud-init')).toEqual({ name: 'cloud-init', text: 'done earlier in this boot', exitCode: 0 });
      expect(readNode(target, again.stdout, { cluster: 'pistack' }).cloudInit).toEqual({ status: 'done', detail: 'done earlier in this boot', errors: [] });
    }
    // With systemd running, the made-up unit is not-found; without it, systemctl says why not.
    if (node.unitsError) expect(node.unitsError).toMatch(/systemd|bus|not found/i);
    else expect(node.units[0]).toMatchObject({ unit: 'pibake-no-such.service', load: 'not-found' });
  }, 60_000);
});
