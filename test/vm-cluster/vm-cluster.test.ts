/**
 * The VM cluster test (`npm run test:vm-cluster`, root): `pibake build` bakes lb1 (HAProxy) and
 * two database nodes web1 and web2 (PostgreSQL run by Patroni, etcd on web1, the web app) from the
 * test base, and
 * the three images boot at once under qemu on one bridge in a network namespace, with no route
 * anywhere, each from its image as built. Then, from a client on that bridge, as a user would: HTTP through lb1 reaches both web
 * nodes, a row written through lb1's write port appears on both database nodes (whichever Patroni
 * made primary, the other streams from it), HAProxy's statistics show every backend UP and each
 * PostgreSQL server up exactly where its Patroni role puts it, and every node passes the boot test's checks. Figures (seconds from qemu start to a
 * serving node and cluster) are printed at the end; docs/testing.md keeps them.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverRows } from '../helpers/haproxy-stats.ts';
import { registerCleanup } from '../helpers/netns.ts';
import { ssh } from '../helpers/qemu.ts';
import { waitFor } from '../helpers/wait.ts';
import { ROLE_PACKAGES, bootSuites, ensureTestBase } from '../boot/test-base.ts';
import { VmCluster, buildTestCluster, type BuiltCluster, type ServingReport } from '../boot/vm-cluster.ts';

// PIBAKE_BOOT_ARCH=arm64: the arm64 base under qemu-system-aarch64 (much slower here).
const arch = process.env.PIBAKE_BOOT_ARCH === 'arm64' ? 'arm64' : 'amd64';
// PIBAKE_BOOT_SUITES=bookworm: the bookworm test base instead of trixie (one suite per run).
const suites = bootSuites('trixie');
if (suites.length !== 1) throw new Error(`the VM cluster test runs on one suite at a time, not ${suites.join(', ')}`);
const suite = suites[0] as 'trixie' | 'bookworm';
const SERVING_TIMEOUT_MS = Number(process.env.PIBAKE_VM_SERVING_TIMEOUT_S ?? 45 * 60) * 1000;
const NODES = [
  { name: 'lb1', role: 'lb', ip: '10.0.0.10' },
  { name: 'web1', role: 'db', ip: '10.0.0.11' },
  { name: 'web2', role: 'db', ip: '10.0.0.12' },
];
const started = Date.now();
const figures: [string, string][] = [];
let dir: string;
let built: BuiltCluster;
let cluster: VmCluster | undefined;
let serving: ServingReport;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pibake-vm-cluster-'));
  registerCleanup(() => rmSync(dir, { recursive: true, force: true })); // when interrupted
  const base = await ensureTestBase(arch, suite);
  built = await buildTestCluster(dir, base, 'vmcluster', NODES);
  figures.push(['pibake build of 3 images', `${built.buildSeconds.toFixed(0)} s (base: ${built.base.suite} ${arch})`]);
  cluster = await VmCluster.boot(built, NODES.map((n) => n.name), { arch, logPrefix: `${suite}-vm-cluster` });
  serving = await cluster.waitUntilServing(SERVING_TIMEOUT_MS);
  for (const [name, t] of Object.entries(serving.nodes)) {
    const steps = [
      t.cloudInitSeconds === undefined ? '' : `cloud-init finished ${t.cloudInitSeconds.toFixed(0)} s`,
      t.firstBootSeconds === undefined ? '' : `pibake-firstboot done ${t.firstBootSeconds.toFixed(0)} s`,
    ].filter(Boolean).join(', ');
    figures.push([`${name}: qemu start → serving`, `${t.servingSeconds.toFixed(0)} s${steps ? ` (${steps})` : ''}`]);
  }
  figures.push(['cluster: first qemu start → every node serving', `${serving.clusterSeconds.toFixed(0)} s`]);
});

afterAll(async () => {
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  figures.push(['whole test file', `${((Date.now() - started) / 1000).toFixed(0)} s`]);
  console.log(`VM cluster figures:\n${figures.map(([what, value]) => `  ${what.padEnd(48)} ${value}`).join('\n')}`);
});

const vms = () => cluster as VmCluster;
const ip = (name: string) => vms().node(name).ip;

describe('a cluster of VMs booted from pibake-built images', () => {
  it('is offline: no route leaves the bridge', async () => {
    const routes = await vms().lab.routes('client');
    expect(routes.filter((r) => r.startsWith('default'))).toEqual([]);
    // From a node: the inventory's gateway is not there, so nothing beyond the bridge answers.
    const r = await ssh(vms().sshTarget('lb1'), 'timeout 5 bash -c "exec 3<>/dev/tcp/151.101.2.132/80" && echo reachable || echo unreachable');
    expect(r.stdout.trim()).toBe('unreachable');
  });

  it('serves HTTP through lb1 from both web nodes', async () => {
    const seen = new Map<string, number>();
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const answer = await vms().http(`http://${ip('lb1')}/`);
      statuses.push(answer.status);
      const node = VmCluster.pageNode(answer.body) ?? '(no node in the page)';
      seen.set(node, (seen.get(node) ?? 0) + 1);
    }
    figures.push(['HTTP through lb1: 20 requests served by', [...seen].map(([n, c]) => `${n} ${c}`).join(', ')]);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect([...seen.keys()].sort()).toEqual(['web1', 'web2']);
  });

  it('writes a row through lb1\'s write port that appears on both database nodes', async () => {
    const { lb, postgresql } = built.inventory.roles;
    const password = built.secrets.app_db_password;
    expect(password, 'cluster.secrets.yaml has the application role\'s password').toBeTruthy();
    const app = { user: 'pibake_app', password: password as string };
    const message = `vm-cluster ${randomBytes(8).toString('hex')}`;
    const id = await vms().psql({ host: ip('lb1'), port: lb.pgWritePort, ...app },
      `INSERT INTO pibake_demo (message) VALUES ('${message}') RETURNING id`);
    expect(id).toMatch(/^\d+$/);
    const written = Date.now();
    const query = `SELECT message FROM pibake_demo WHERE id = ${id}`;
    for (const node of ['web1', 'web2']) {
      await waitFor(`the row on ${node}`, 60_000, async () =>
        (await vms().psql({ host: ip(node), port: postgresql.port, ...app }, query)) === message ? true : undefined, 200);
    }
    figures.push(['row written through lb1:5000 → seen on both', `${Date.now() - written} ms (with psql's connections)`]);
    // Exactly one is the primary (Patroni chose it); the other came by replication.
    const recovery = await Promise.all(['web1', 'web2'].map((n) => vms().psql({ host: ip(n), port: postgresql.port, ...app }, 'SELECT pg_is_in_recovery()')));
    expect(recovery.sort()).toEqual(['f', 't']);
    // The read port leads to the replica.
    expect(await vms().psql({ host: ip('lb1'), port: lb.pgReadPort, ...app }, query)).toBe(message);
  });

  it('HAProxy\'s statistics show every backend UP, each PostgreSQL server where its Patroni role puts it', async () => {
    const { postgresql } = built.inventory.roles;
    const app = { user: 'pibake_app', password: built.secrets.app_db_password as string };
    const primary = (await vms().psql({ host: ip('web1'), port: postgresql.port, ...app }, 'SELECT pg_is_in_recovery()')) === 'f' ? 'web1' : 'web2';
    const replica = primary === 'web1' ? 'web2' : 'web1';
    const rows = await vms().haproxyStats('lb1');
    const state = Object.fromEntries(serverRows(rows).map((r) => [`${r.pxname}/${r.svname}`, r.status]));
    expect(state).toEqual({
      'web/web1': 'UP', 'web/web2': 'UP',
      [`postgresql-write/${primary}`]: 'UP', [`postgresql-write/${replica}`]: 'DOWN',
      [`postgresql-read/${replica}`]: 'UP', [`postgresql-read/${primary}`]: 'DOWN',
      // The primary backs the read port up, following the write side's check.
      [`postgresql-read/${primary}-primary`]: 'UP', [`postgresql-read/${replica}-primary`]: 'DOWN',
    });
    const backends = rows.filter((r) => r.svname === 'BACKEND').map((r) => `${r.pxname} ${r.status}`);
    expect(backends.filter((b) => !b.endsWith(' UP'))).toEqual([]);
  });

  it('every node is as its inventory says: first boot, address, services, journal', async () => {
    const problems = await vms().checkNodes(ROLE_PACKAGES[suite]);
    expect(problems).toEqual(Object.fromEntries(NODES.map((n) => [n.name, []])));
  });
});
