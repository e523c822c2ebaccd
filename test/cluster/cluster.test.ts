/**
 * The shipped 5-node cluster (cluster.yaml: lb1 and lb2 sharing the floating address 10.0.0.9,
 * web1..web3 database nodes) running for real: `pibake build` bakes the five images, and each node
 * runs the files taken out of ITS OWN built image (debugfs rdump; nothing re-rendered) with this
 * machine's etcd, Patroni, PostgreSQL, nginx, demo app, HAProxy and keepalived, each node in its
 * own network namespace with its inventory address, all joined by a bridge inside a "switch"
 * namespace. Nothing is routed to the host.
 *
 * Under load through the floating address it kills and cuts off the load balancer holding the
 * address and the PostgreSQL primary, takes etcd's quorum away and replaces the primary's card,
 * and records how long clients wait and whether an acknowledged write is lost.
 *
 * Test-environment stand-ins (docs/cluster-test.md): paths only — data and socket folders, pid
 * files, the check script's and the bootstrap hook's location — and the test, not systemd, starts
 * the daemons (and restarts the killed ones, as Restart= would).
 *
 * Run with `npm run test:cluster` as root. Figures go to the console at the end.
 */
import { rmSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerCleanup, type NetnsLab } from '../helpers/netns.ts';
import { Daemons, serverRow, sleep, waitFor, type Daemon } from './harness.ts';
import { Figures, TARGET, against, writesBackMs } from './figures.ts';
import { Cluster, buildAndExtract, labFor, requireTools, seconds, tearDown, type ClusterNode } from './ha-harness.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const CLIENT_IP = '10.0.0.250'; // the test's HTTP/SQL client, on the same segment
/** Prefix of the network namespaces; PIBAKE_NETNS_PREFIX lets concurrent runs keep apart. */
const NS_PREFIX = process.env.PIBAKE_NETNS_PREFIX ?? 'pibakecl';
const KEEP = process.env.PIBAKE_CLUSTER_KEEP === '1';

let tmp: string;
let lab: NetnsLab;
let cluster: Cluster;
const nodes = new Map<string, ClusterNode>();
const figures = new Figures();
const figure = figures.add;
const started = Date.now();

describe('the shipped cluster in network namespaces', () => {
  beforeAll(async () => {
    await requireTools();
    tmp = await mkdtemp(path.join(tmpdir(), 'pibake-cluster-'));
    await chmod(tmp, 0o755); // postgres, etcd, nobody and www-data read their files below
    const scratch = tmp;
    if (!KEEP) registerCleanup(() => rmSync(scratch, { recursive: true, force: true })); // when interrupted

    // Build the shipped cluster.yaml (its own secrets are created beside the copy).
    const built = await buildAndExtract(tmp, await readFile(path.join(repo, 'cluster.yaml'), 'utf8'), repo);
    expect(built.output).not.toMatch(/^warning:/m); // the shipped layout has no single point of failure
    figure('0 build', 'pibake build of 5 images (400 MiB base)', seconds(built.buildMs));
    for (const [name, n] of built.nodes) nodes.set(name, n);
    expect([...nodes.values()].map((n) => `${n.name} ${n.role} ${n.ip}`).sort()).toEqual([
      'lb1 lb 10.0.0.10', 'lb2 lb 10.0.0.15', 'web1 db 10.0.0.11', 'web2 db 10.0.0.12', 'web3 db 10.0.0.13',
    ]);

    lab = await labFor(nodes, NS_PREFIX, CLIENT_IP);
    cluster = new Cluster(lab, new Daemons(lab, tmp), nodes, built.bin, built.secrets, 'client');
  }, 300_000);

  afterAll(async () => {
    await tearDown({ cluster, lab, tmp, keep: KEEP }, () => {
      figure('total', 'wall time of the file', seconds(Date.now() - started));
      console.log(figures.table('pibake cluster test figures', KEEP ? `kept: ${tmp}` : ''));
    });
  }, 60_000);

  it('the node namespaces reach each other on the segment and have no route anywhere else', async () => {
    for (const name of [...nodes.keys(), 'client']) {
      const routes = await lab.routes(name);
      expect(routes.every((r) => r.startsWith('10.0.0.0/24 ')), `${name}: ${routes.join('; ')}`).toBe(true);
    }
    const r = await lab.run('client', 'curl', ['-s', '-o', '/dev/null', '--connect-timeout', '2', 'http://10.0.0.13:9/'], { reject: false });
    expect(r.exitCode).toBe(7); // "failed to connect": refused, i.e. the host answered
    const outside = await lab.run('client', 'curl', ['-s', '--connect-timeout', '2', 'http://1.1.1.1/'], { reject: false });
    expect(outside.exitCode).not.toBe(0);
  });

  it('1. bring-up: etcd founded, Patroni bootstraps one primary and clones two replicas, both load balancers up, the address on one', async () => {
    await cluster.bringUp((metric, value) => figure('1 bring-up', metric, value));

    // Each web node's page through the address names it; the stats page wants the image's password.
    const seen = new Set<string>();
    for (let i = 0; i < 9 && seen.size < 3; i++) {
      const r = await cluster.curl(['--max-time', '10', `http://${cluster.vip}/`]);
      seen.add(/<title>pistack: (\w+)<\/title>/.exec(r.stdout)?.[1] ?? r.stdout.slice(0, 80));
    }
    expect([...seen].sort()).toEqual(['web1', 'web2', 'web3']);
    const auth = /^\s*stats auth (\S+)$/m.exec(await readFile(path.join(cluster.node('lb1').root, 'etc/haproxy/haproxy.cfg'), 'utf8'))?.[1];
    const page = (withAuth: boolean) => lab.run('client', 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-K', '-', `http://${cluster.vip}:8404/;csv`], {
      input: withAuth ? `user = "${auth}"\n` : '\n',
    });
    expect((await page(true)).stdout).toBe('200');
    expect((await page(false)).stdout).toBe('401');
  }, 300_000);

  it('2. steady HTTP load through the floating address reaches every web node without errors', async () => {
    const load = cluster.wrk(8);
    // What HAProxy's checks meet meanwhile: /healthz of each web node from lb1, one after the other.
    const healthz = await Promise.all(cluster.webs.map((n) => lab.run('lb1', '/usr/bin/python3',
      [path.join(here, 'http-probe.py'), `http://${n.ip}/healthz`, '6', '5'], { timeout: 40_000 })));
    const r = await load;
    figures.wrk('2 steady load', r);
    for (const n of cluster.webs) expect(r.byNode[n.name] ?? 0, n.name).toBeGreaterThan(0);
    expect(r.non2xx + Object.values(r.socketErrors).reduce((a, b) => a + b, 0)).toBe(0);
    const checks = healthz.flatMap((h) => h.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as [number, number, string, number]));
    expect(checks.every(([, status]) => status === 200)).toBe(true);
    const ms = checks.map((c) => c[3]).sort((a, b) => a - b);
    const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))];
    figure('2 steady load', `/healthz from lb1 under load (${ms.length} checks): p50 / p99 / max (ms)`, `${at(0.5)} / ${at(0.99)} / ${ms[ms.length - 1]}`);
  }, 60_000);

  /** The address holder's HAProxy gets SIGKILL (or its cable pulled) under a probe; the address moves. */
  async function vipScenario(scenario: string, fail: (holder: ClusterNode) => Promise<void>, heal: (holder: ClusterNode) => Promise<void>): Promise<void> {
    const [holderName] = await cluster.vipHolders();
    const holder = cluster.node(holderName ?? '');
    const probe = cluster.probe(`http://${cluster.vip}/`, 16, 1);
    await sleep(3_000);
    const event = Date.now();
    let healed = false;
    try {
      await fail(holder);
      const { to: other, ms: moved } = await cluster.waitVipMoved(holder, 30_000);
      figure(scenario, `event → the address only on ${other.name}`, against(moved, TARGET.vipMs));
      const records = await probe;
      const outage = figures.probe(scenario, records, event);
      // The web nodes read through the address too (app.json's read endpoint): their /healthz
      // fails while it moves, and the new holder takes them back after HAProxy's rise checks.
      expect(outage, 'clients answered again').toBeDefined();
      expect(records.filter(([t, s]) => t > event + 10_000 && s !== 200)).toEqual([]);
      // Back to health: the address stays where it is (nopreempt), no second move.
      const t0 = Date.now();
      healed = true;
      await heal(holder);
      await sleep(4_000);
      expect(await cluster.vipHolders()).toEqual([other.name]);
      figure(scenario, `${holder.name} healthy again → the address stays on ${other.name} (nopreempt)`, `checked ${seconds(Date.now() - t0)} later`);
    } finally {
      if (!healed) await heal(holder); // later scenarios need every load balancer
    }
  }

  it('3. the load balancer holding the address: HAProxy killed (kill -9); keepalived moves the address', async () => {
    await vipScenario('3 LB HAProxy killed', async (holder) => {
      process.kill((holder.daemons.haproxy as Daemon).pid, 'SIGKILL');
    }, async (holder) => {
      await cluster.startHaproxy(holder); // systemd's Restart=
      await cluster.waitStatus(holder, 'web', 'web1', 'UP', 30_000);
    });
  }, 90_000);

  it('4. the load balancer holding the address: cable pulled; the other takes the address', async () => {
    await vipScenario('4 LB cable pulled', async (holder) => {
      await lab.setCable(holder.name, 'down');
    }, async (holder) => {
      await lab.setCable(holder.name, 'up');
    });
  }, 90_000);

  /**
   * The primary fails while a client writes through the address's write port; then it comes back
   * (systemd restarts Patroni, or the cable is plugged in) and rejoins as a replica (pg_rewind).
   */
  async function primaryScenario(scenario: string, how: 'kill' | 'cable', mode: string): Promise<void> {
    const old = await cluster.waitLeader(30_000);
    const label = `s${scenario.split(' ')[0]}-${process.pid}`;
    const writer = cluster.startWriter(label);
    await sleep(2_000);
    const event = Date.now();
    if (how === 'kill') await cluster.killDatabase(old);
    else await lab.setCable(old.name, 'down');
    const leader = await cluster.waitLeader(90_000, old);
    figure(scenario, `event (${mode}) → ${leader.name} answers /primary`, seconds(Date.now() - event));
    await sleep(3_000);
    const records = await writer.stop();

    // The old primary comes back and follows the new one.
    const logFile = (old.daemons.patroni as Daemon).log;
    const logBefore = (await readFile(logFile, 'utf8')).length;
    const t0 = Date.now();
    if (how === 'kill') {
      await sleep(2_000); // after pg's crash the orphaned backends go away; systemd restarts after RestartSec
      cluster.startPatroni(old);
    } else {
      await lab.setCable(old.name, 'up');
    }
    await cluster.waitStreaming(leader, 180_000).catch(async (error: unknown) => {
      // Say what the cluster looked like, so a failure in CI can be read without the scratch folder.
      throw new Error(`${String(error)}\n${await cluster.diagnose(old)}`, { cause: error });
    });
    const rejoinMs = Date.now() - t0;
    const rewound = /running pg_rewind/.test((await readFile(logFile, 'utf8')).slice(logBefore));
    figure(scenario, `${old.name} back → streaming from ${leader.name}`, `${seconds(rejoinMs)}${rewound ? ' (pg_rewind ran)' : ''}`);

    const missing = await figures.writes(scenario, records, event, await cluster.rowsOf(leader, label));
    if (mode === 'synchronous') expect(missing).toBe(0);
    expect(writesBackMs(records, event)).toBeDefined();
    const digests = await waitFor('equal rows on every database node', 30_000, async () => {
      const all = await Promise.all(cluster.dbs.map((n) => cluster.rowsDigest(n)));
      return new Set(all).size === 1 ? all : undefined;
    }, 200);
    figure(scenario, 'rows on every node afterwards (count, same digest)', (digests[0] ?? '').split(' ')[0] ?? '');
  }

  it('5. the primary killed (kill -9 of Patroni and PostgreSQL), synchronous mode: no acknowledged write lost', async () => {
    await primaryScenario('5 primary killed', 'kill', 'synchronous');
  }, 240_000);

  it('6. the primary killed, asynchronous mode (switched at run time)', async () => {
    const leader = await cluster.waitLeader(30_000);
    await cluster.setDynamicConfig(leader, { synchronous_mode: false });
    await waitFor('no sync standby', 30_000, async () => ((await cluster.replication(leader)).every((r) => r.endsWith(':async')) ? true : undefined), 200);
    figure('6 primary killed', 'synchronous_mode switched off at run time (PATCH /config) → no sync standby', 'yes');
    try {
      await primaryScenario('6 primary killed', 'kill', 'asynchronous');
    } finally {
      const now = await cluster.waitLeader(30_000);
      await cluster.setDynamicConfig(now, { synchronous_mode: true });
      await cluster.waitSync(now, 30_000);
    }
  }, 240_000);

  it('7. the primary\'s cable pulled, synchronous mode', async () => {
    await primaryScenario('7 primary cable pulled', 'cable', 'synchronous');
  }, 240_000);

  /**
   * etcd on both non-leader nodes gets SIGKILL: one member of three is left, no quorum, while a
   * client writes. With failsafe_mode the primary asks every Patroni directly and stays primary;
   * without it, it steps down. Then etcd comes back.
   */
  async function quorumScenario(scenario: string, failsafe: boolean, lossMs: number): Promise<void> {
    const leader = await cluster.waitLeader(30_000);
    if (!failsafe) await cluster.setDynamicConfig(leader, { failsafe_mode: false });
    const others = cluster.dbs.filter((n) => n !== leader);
    const label = `s${scenario.split(' ')[0]}-${process.pid}`;
    const writer = cluster.startWriter(label);
    await sleep(2_000);
    const event = Date.now();
    await Promise.all(others.map(async (n) => {
      const etcd = n.daemons.etcd as Daemon;
      process.kill(etcd.pid, 'SIGKILL');
      await etcd.exited;
    }));
    // Watch the primary's own answer to HAProxy's check while etcd has no quorum.
    let stepDown: number | undefined;
    while (Date.now() - event < lossMs) {
      const primary = await cluster.patroniApi(leader, '/primary', 'OPTIONS');
      if (primary.status !== 200 && stepDown === undefined) stepDown = Date.now() - event;
      await sleep(250);
    }
    figure(scenario, `etcd on ${others.map((n) => n.name).join(' and ')} killed: ${leader.name} (primary) answers /primary`,
      stepDown === undefined ? `all along (${seconds(lossMs)} without quorum)` : `until ${seconds(stepDown)}, then 503`);
    const back = Date.now();
    for (const n of others) await cluster.startEtcd(n); // systemd's Restart=: the data folders are still there
    await waitFor('etcd healthy again', 60_000, async () => {
      const r = await cluster.etcdctl(['endpoint', 'health']);
      return r.exitCode === 0 && (r.all.match(/is healthy/g) ?? []).length === 3 ? true : undefined;
    }, 200);
    const leaderAgain = await cluster.waitLeader(60_000);
    figure(scenario, 'etcd restarted → healthy and a leader answers /primary', `${seconds(Date.now() - back)} (${leaderAgain.name})`);
    await sleep(2_000);
    const records = await writer.stop();
    const during = records.filter((r) => r.t >= event && r.t < back);
    figure(scenario, 'writes while etcd had no quorum: acknowledged / failed attempts',
      `${during.filter((r) => r.ok).length} / ${during.filter((r) => !r.ok).length}`);
    const failures = records.filter((r) => !r.ok && r.t >= event);
    if (failures.length > 0) {
      figure(scenario, 'writes failing from → to (after the kill)', `${seconds((failures[0]?.t ?? event) - event)} → ${seconds((failures.at(-1)?.t ?? event) - event)}`);
    }
    const present = await cluster.rowsOf(leaderAgain, label);
    const missing = records.filter((r) => r.ok && !present.has(r.seq)).length;
    figure(scenario, 'acknowledged rows missing afterwards', `${missing} of ${records.filter((r) => r.ok).length}`);
    expect(missing).toBe(0);
    if (failsafe) expect(stepDown).toBeUndefined();
    await cluster.waitSync(leaderAgain, 60_000);
    if (!failsafe) await cluster.setDynamicConfig(leaderAgain, { failsafe_mode: true });
  }

  it('8. etcd loses its quorum while a client writes: with failsafe_mode (the default) the primary keeps writing', async () => {
    await quorumScenario('8 etcd quorum lost', true, 15_000);
  }, 180_000);

  it('9. etcd loses its quorum with failsafe_mode off: the primary steps down until etcd is back', async () => {
    await quorumScenario('9 etcd quorum lost, no failsafe', false, 15_000);
  }, 180_000);

  it('10. the primary\'s card dies and a new card with the same image replaces it: etcd and Patroni take it back, no inventory change', async () => {
    const old = await cluster.waitLeader(30_000);
    const label = `s10-${process.pid}`;
    const writer = cluster.startWriter(label);
    await sleep(2_000);
    // Power gone: the cable is dead and every process of the node with it.
    const event = Date.now();
    await lab.setCable(old.name, 'down');
    const pm = cluster.postmasterPid(old);
    for (const d of Object.values(old.daemons)) if (cluster.daemons.isRunning(d)) await cluster.daemons.stop(d, 'SIGKILL');
    if (pm) process.kill(pm, 'SIGKILL');
    const leader = await cluster.waitLeader(90_000, old);
    figure('10 card replaced', `power cut → ${leader.name} answers /primary`, seconds(Date.now() - event));
    await sleep(3_000);
    const records = await writer.stop();
    figure('10 card replaced', 'power cut → writes acknowledged again', against(writesBackMs(records, event), TARGET.writesMs));

    // The new card: the same image, nothing of the old node's state.
    await rm(path.join(old.dir, 'etcd'), { recursive: true, force: true });
    await rm(path.join(old.dir, 'pg'), { recursive: true, force: true });
    await rm(cluster.etcdPaths(old).joinEnv, { force: true });
    await lab.setCable(old.name, 'up');
    const t0 = Date.now();
    const setup = await cluster.etcdSetup(old);
    expect(setup.exitCode, setup.all).toBe(0);
    expect(setup.all).toMatch(/a member at http:\/\/10\.0\.0\.\d+:2380 that ran before \(a replaced card\): removing it/);
    expect(setup.all).toContain(`joining the running cluster as ${old.name}`);
    await cluster.startEtcd(old);
    await waitFor('three running etcd members', 60_000, async () => {
      const members = await cluster.etcdMembers().catch(() => []);
      return members.length === 3 && members.every((m) => m.endsWith(' ran')) ? members : undefined;
    }, 200);
    figure('10 card replaced', 'pibake-etcd-setup (member remove + add) → etcd member started', seconds(Date.now() - t0));
    await cluster.writePatroniConfig(old);
    const t1 = Date.now();
    cluster.startPatroni(old);
    await cluster.waitStreaming(leader, 120_000);
    figure('10 card replaced', `Patroni on the new card → cloned from ${leader.name} and streaming`, seconds(Date.now() - t1));
    await cluster.startApp(old);
    await cluster.startNginx(old);
    for (const lb of cluster.lbs) await cluster.waitStatus(lb, 'web', old.name, 'UP', 60_000);
    const present = await cluster.rowsOf(old, label);
    const missing = records.filter((r) => r.ok && !present.has(r.seq)).length;
    figure('10 card replaced', 'acknowledged rows missing on the new card', `${missing} of ${records.filter((r) => r.ok).length}`);
    expect(missing).toBe(0);
  }, 300_000);

  it('11. a row written through the write port is visible on every replica; the read port serves the replicas', async () => {
    const leader = await cluster.waitLeader(30_000);
    // The demo page's form through the address: whichever web node takes it writes through the write port.
    const message = `posted through ${cluster.vip} by ${process.pid}`;
    const posted = await cluster.curl(['-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', '--data-urlencode', `message=${message}`, `http://${cluster.vip}/`]);
    expect(posted.stdout).toBe('303');
    for (const n of cluster.dbs) {
      await waitFor(`the posted row on ${n.name}`, 10_000, async () =>
        ((await cluster.psql(n, `SELECT count(*) FROM pibake_demo WHERE message = '${message}'`, 'pibake')) === '1' ? true : undefined));
    }
    const replicas = cluster.dbs.filter((n) => n !== leader);
    const lags: Record<string, number[]> = Object.fromEntries(replicas.map((n) => [n.name, []]));
    const writeDsn = `host=${cluster.vip} port=5000 dbname=pibake user=pibake_app`;
    const client = (args: string[]) => lab.run('client', path.join(cluster.bin, 'psql'), ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', ...args], {
      env: { PGPASSWORD: cluster.secrets.app_db_password ?? '', PGCONNECT_TIMEOUT: '10' }, timeout: 60_000,
    });
    for (let round = 0; round < 5; round++) {
      const marker = `lag probe ${process.pid}-${round}`;
      const waiters = replicas.map((n) => execa('runuser', ['-u', 'postgres', '--', path.join(cluster.bin, 'psql'), '-X', '-A', '-t', '-q',
        '-v', 'ON_ERROR_STOP=1', '-h', path.join(n.dir, 'pg/sock'), '-d', 'pibake', '-c', "SET statement_timeout = '20s'",
        '-c', `DO $$ BEGIN WHILE NOT EXISTS (SELECT FROM pibake_demo WHERE message = '${marker}') LOOP PERFORM pg_sleep(0.001); END LOOP; END $$`,
        '-c', 'SELECT extract(epoch FROM clock_timestamp())'], { timeout: 30_000 }));
      await sleep(150);
      const wrote = await client(['-d', writeDsn, '-c', `INSERT INTO pibake_demo (message) VALUES ('${marker}') RETURNING extract(epoch FROM clock_timestamp())`]);
      const committed = Number(wrote.stdout.trim());
      const seen = await Promise.all(waiters);
      replicas.forEach((n, i) => lags[n.name]?.push((Number(seen[i]?.stdout.trim()) - committed) * 1000));
    }
    for (const n of replicas) {
      const ms = [...(lags[n.name] ?? [])].sort((a, b) => a - b);
      figure('11 replication', `${n.name}: INSERT on ${leader.name} → visible (5 rows), median / max`, `${ms[2]?.toFixed(1)} / ${ms[4]?.toFixed(1)} ms`);
      for (const lag of ms) expect(lag).toBeGreaterThan(0);
    }
    const servedBy = new Map<string, number>();
    for (let i = 0; i < 6; i++) {
      const r = await client(['-d', writeDsn.replace('port=5000', 'port=5001'), '-c', "SELECT host(inet_server_addr()) || ' ' || pg_is_in_recovery()"]);
      servedBy.set(r.stdout.trim(), (servedBy.get(r.stdout.trim()) ?? 0) + 1);
    }
    figure('11 replication', `sessions on ${cluster.vip}:5001 (read port)`, [...servedBy].sort().map(([k, v]) => `${k}: ${v}`).join(', '));
    // Only standbys serve the read port (leastconn: the apps' kept-open read connections count too).
    const replicaIps = replicas.map((n) => `${n.ip} true`);
    expect([...servedBy.keys()].every((k) => replicaIps.includes(k)), [...servedBy.keys()].join()).toBe(true);
    for (const lb of cluster.lbs) for (const n of replicas) expect(serverRow(await cluster.stats(lb), 'postgresql-read', n.name).status).toBe('UP');
    expect(new Set(await Promise.all(cluster.dbs.map((n) => cluster.rowsDigest(n)))).size).toBe(1);
  }, 120_000);

  it('12. memory: resident size of the HA agents per node', async () => {
    for (const n of [...cluster.lbs, ...cluster.dbs]) {
      const memory = cluster.agentMemory(n);
      figure('12 memory (RSS)', n.name, memory);
      expect(memory).toMatch(/ MB/);
    }
  });
});
