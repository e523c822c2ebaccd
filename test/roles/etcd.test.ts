/**
 * The db role's etcd, from the rendered files only: /etc/default/etcd and the first-boot step
 * pibake-etcd-setup (etcd-setup.sh) deciding how each member starts, run against real etcd members
 * in network namespaces (each node its own address and loopback, as on a Pi). Covers founding the
 * cluster, a founding member that boots late, a node that is no member, a member restarting with
 * its data, and a replaced card (the dead member removed and added again at run time).
 */
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemons, account, parseEnvFile, type Daemon } from '../cluster/harness.ts';
import { NetnsLab, sweepStale } from '../helpers/netns.ts';
import { clusterInventory, fileText, renderedCluster, waitFor, writeRoot } from '../helpers/roles.ts';

const isRoot = process.getuid?.() === 0;
const PREFIX = 'pibakeetcd';
const NODES = ['db1', 'db2', 'db3', 'db4']; // db1..db3 are the etcd members; db4 runs Patroni only

let tmp: string;
let lab: NetnsLab;
let daemons: Daemons;
const roots = new Map<string, string>();
const running = new Map<string, Daemon>();

const dataDir = (name: string) => path.join(tmp, name, 'etcd');
const joinEnv = (name: string) => path.join(tmp, name, 'join.env');

function setup(name: string) {
  return lab.run(name, path.join(roots.get(name) ?? '', 'usr/local/lib/pibake/etcd-setup.sh'), [], {
    env: { PIBAKE_ETCD_DATA_DIR: dataDir(name), PIBAKE_ETCD_JOIN_ENV: joinEnv(name) }, reject: false, timeout: 60_000,
  });
}

/** etcd as etcd.service runs it: /etc/default/etcd, then join.env; the data folder under the test folder. */
async function start(name: string): Promise<void> {
  const etcd = await account('etcd');
  await mkdir(dataDir(name), { recursive: true, mode: 0o700 });
  await chown(dataDir(name), etcd.uid, etcd.gid);
  const env = {
    ...parseEnvFile(await readFile(path.join(roots.get(name) ?? '', 'etc/default/etcd'), 'utf8')),
    ...parseEnvFile(await readFile(joinEnv(name), 'utf8')),
    ETCD_DATA_DIR: dataDir(name),
  };
  running.set(name, daemons.start(name, 'etcd', 'setpriv', ['--reuid=etcd', '--regid=etcd', '--init-groups', '/usr/bin/etcd'], env));
}

function etcdctl(from: string, args: string[]) {
  return lab.run(from, 'etcdctl', ['--endpoints=http://127.0.0.1:2379', '--dial-timeout=2s', '--command-timeout=5s', ...args], {
    env: { ETCDCTL_API: '3' }, reject: false, timeout: 30_000,
  });
}

/** "name ran|new" per member as the member on `from` sees the cluster: a member that ran has published its client URLs. */
async function members(from: string): Promise<string[]> {
  const r = await etcdctl(from, ['member', 'list', '-w', 'simple']);
  if (r.exitCode !== 0) throw new Error(r.all);
  return r.stdout.trim().split('\n').map((l) => l.split(', ')).map((f) => `${f[2] || '(unnamed)'} ${f[4] ? 'ran' : 'new'}`).sort();
}

describe.skipIf(!isRoot)('etcd of the db role, from the rendered files', () => {
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'pibake-etcd-'));
    await chmod(tmp, 0o755); // etcd (its own user) reaches its data folder below
    const inventory = clusterInventory(tmp, {
      nodeCount: 5, network: { cidr: '10.0.0.0/24', prefixLength: 24, gateway: '10.0.0.1', prefix: '10.0.0' },
    });
    expect(inventory.roles.etcd.members).toEqual(['db1', 'db2', 'db3']);
    const cluster = await renderedCluster(inventory);
    await sweepStale(PREFIX);
    lab = await NetnsLab.create(PREFIX);
    daemons = new Daemons(lab, tmp);
    for (const name of NODES) {
      const node = inventory.nodes.find((n) => n.name === name);
      roots.set(name, await writeRoot(await cluster.render(name), path.join(tmp, name, 'root')));
      await lab.addNode(name, node?.ip ?? '');
    }
    const db1 = fileText(await cluster.render('db1'), '/etc/default/etcd');
    expect(db1).toMatch(/^ETCD_INITIAL_CLUSTER=db1=http:\/\/10\.0\.0\.11:2380,db2=http:\/\/10\.0\.0\.12:2380,db3=http:\/\/10\.0\.0\.13:2380$/m);
    expect(db1).toMatch(/^ETCD_INITIAL_CLUSTER_TOKEN=pitest-[A-Za-z0-9_-]{32}$/m);
    expect(fileText(await cluster.render('db4'), '/etc/default/etcd')).not.toMatch(/^ETCD_/m);
  }, 60_000);

  afterAll(async () => {
    await daemons?.stopAll();
    await lab?.destroy();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('a node that is no etcd member gets no join.env, so its etcd.service never starts', async () => {
    const r = await setup('db4');
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toContain('db4 is not an etcd member; etcd stays off');
    await expect(stat(joinEnv('db4'))).rejects.toThrow(/ENOENT/);
  });

  it('the first members find nobody and found the cluster; two of three make a quorum', async () => {
    for (const name of ['db1', 'db2']) {
      const r = await setup(name);
      expect(r.exitCode, r.all).toBe(0);
      expect(r.all).toContain('starting as a founding member (ETCD_INITIAL_CLUSTER_STATE=new)');
      expect(parseEnvFile(await readFile(joinEnv(name), 'utf8'))).toEqual({ ETCD_INITIAL_CLUSTER_STATE: 'new' });
      await start(name);
    }
    await waitFor('a quorum of db1 and db2', 60_000, async () => ((await etcdctl('db1', ['put', 'pibake-test', 'founded'])).exitCode === 0 ? true : undefined), 200);
    expect(await members('db1')).toEqual(['db1 ran', 'db2 ran', 'db3 new']); // db3: named by the founding list, never ran
  }, 90_000);

  it('a founding member that boots late finds itself announced and joins the running cluster', async () => {
    const r = await setup('db3');
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).not.toContain('removing');
    expect(r.all).not.toContain('adding');
    const env = parseEnvFile(await readFile(joinEnv('db3'), 'utf8'));
    expect(env.ETCD_INITIAL_CLUSTER_STATE).toBe('existing');
    expect(env.ETCD_INITIAL_CLUSTER?.split(',').sort()).toEqual(['db1=http://10.0.0.11:2380', 'db2=http://10.0.0.12:2380', 'db3=http://10.0.0.13:2380']);
    await start('db3');
    await waitFor('db3 running', 60_000, async () => ((await members('db1')).join() === 'db1 ran,db2 ran,db3 ran' ? true : undefined), 200);
    expect((await etcdctl('db3', ['get', '--print-value-only', 'pibake-test'])).stdout).toBe('founded');
  }, 90_000);

  it('a member restarting with its data keeps what it is', async () => {
    const before = await readFile(joinEnv('db1'), 'utf8');
    const r = await setup('db1');
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toContain('restarts as the member it is');
    expect(await readFile(joinEnv('db1'), 'utf8')).toBe(before);
  });

  it('a replaced card (same name and address, empty data) is removed and added again, and gets the data', async () => {
    await daemons.stop(running.get('db2') as Daemon, 'SIGKILL');
    await rm(path.join(tmp, 'db2', 'etcd'), { recursive: true, force: true });
    await rm(joinEnv('db2'));
    // If db2 led, db1 and db3 elect a new leader first: the write is taken once they have one.
    await waitFor('a write while db2 is dead', 60_000, async () =>
      ((await etcdctl('db1', ['put', 'pibake-test', 'written while db2 was dead'])).exitCode === 0 ? true : undefined), 200);
    const r = await setup('db2');
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toMatch(/a member at http:\/\/10\.0\.0\.12:2380 that ran before \(a replaced card\): removing it/);
    expect(r.all).toContain('adding db2 (http://10.0.0.12:2380) to the running cluster');
    expect(parseEnvFile(await readFile(joinEnv('db2'), 'utf8')).ETCD_INITIAL_CLUSTER_STATE).toBe('existing');
    await start('db2');
    await waitFor('the new db2 running', 60_000, async () => ((await members('db1')).join() === 'db1 ran,db2 ran,db3 ran' ? true : undefined), 200);
    await waitFor('the data on the new db2', 30_000, async () =>
      ((await etcdctl('db2', ['get', '--print-value-only', 'pibake-test'])).stdout === 'written while db2 was dead' ? true : undefined), 200);
  }, 120_000);
});
