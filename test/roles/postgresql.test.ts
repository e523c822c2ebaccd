/**
 * A real streaming-replication pair on loopback, set up only by the RENDERED first-boot scripts:
 * pibake-postgresql-setup (config into the cluster), pibake-primary-setup (roles, slots, demo
 * database), the ownership hand-over, and pibake-replica-bootstrap (pg_basebackup from the
 * primary). Then the demo app answers /healthz, /primary and /replica on both nodes.
 *
 * The test inventory's network is 127.0.0.0/8 with node addresses 127.0.0.10.., so every rendered
 * address is a loopback address and the rendered files are used unchanged. The only deviations
 * from a node: the PIBAKE_* variables point the scripts at temporary folders (confdir, data dir,
 * socket dir) instead of /etc/postgresql and /var/lib/postgresql, starting/stopping the server is
 * done by the test (the servers are children of the test, stopped by PID), and the replica
 * listens on its node address only, because both servers share this machine's `localhost`.
 */
import { execa, type ResultPromise } from 'execa';
import { createWriteStream } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Inventory } from '../../builder/inventory/types.ts';
import type { RenderedNode } from '../../builder/render/types.ts';
import {
  clusterInventory, credentialsFolder, fileText, freePort, installedPostgresqlVersions, renderedCluster, waitFor, writeRoot,
} from '../helpers/roles.ts';

const isRoot = process.getuid?.() === 0;
const PRIMARY_IP = '127.0.0.11';
const REPLICA_IP = '127.0.0.12';

interface Node {
  name: string;
  rendered: RenderedNode;
  root: string; // rendered root filesystem
  conf: string; // stands in for /etc/postgresql/<v>/main
  data: string; // stands in for /var/lib/postgresql/<v>/main
  sock: string; // stands in for /var/run/postgresql
}

let tmp: string;
let version: number;
let bin: string;
let port: number;
let appPort: number;
let pg: { uid: number; gid: number };
const children: ResultPromise[] = [];
let primary: Node;
let replica: Node;
let catchUpMs: number | undefined;
let cloneMs: number | undefined;
let primaryServer: ResultPromise | undefined;
let replicaServer: ResultPromise | undefined;
let inventory: Inventory;
let nobody: { uid: number; gid: number };
let healthzMs: string | undefined;

async function account(name: string): Promise<{ uid: number; gid: number }> {
  return { uid: Number((await execa('id', ['-u', name])).stdout), gid: Number((await execa('id', ['-g', name])).stdout) };
}

/** Run a rendered script of `node` as root with PIBAKE_* overrides; returns stdout+stderr. */
async function runScript(node: Node, script: string, env: Record<string, string>): Promise<{ exitCode: number; all: string }> {
  const result = await execa(path.join(node.root, 'usr/local/lib/pibake', script), [], {
    env: { PIBAKE_PG_BINDIR: bin, ...env }, reject: false, all: true, timeout: 90_000,
  });
  return { exitCode: result.exitCode ?? -1, all: result.all ?? '' };
}

async function psql(node: Node, sql: string, db = 'postgres'): Promise<string> {
  const result = await execa(path.join(bin, 'psql'), ['-X', '-A', '-t', '-q', '-h', node.sock, '-p', String(port), '-d', db, '-c', sql], {
    uid: pg.uid, gid: pg.gid, timeout: 20_000,
  });
  return result.stdout.trim();
}

/** A PostgreSQL server in the foreground as a child of the test (PID 1 here does not reap daemons). */
function startServer(node: Node): ResultPromise {
  const log = createWriteStream(path.join(tmp, `${node.name}-postgres.log`));
  const child = execa(path.join(bin, 'postgres'), ['-D', node.conf], {
    uid: pg.uid, gid: pg.gid, reject: false, buffer: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe',
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  children.push(child);
  return child;
}

async function waitReady(node: Node, host: string): Promise<void> {
  await waitFor(`PostgreSQL of ${node.name}`, 30_000, async () => {
    const r = await execa(path.join(bin, 'pg_isready'), ['-q', '-h', host, '-p', String(port)], { reject: false });
    return r.exitCode === 0 ? true : undefined;
  });
}

/** Debian's layout: the configuration in its own folder, the data directory elsewhere. */
async function prepareNode(name: string, rendered: RenderedNode, extraConf: string[]): Promise<Node> {
  const base = path.join(tmp, name);
  const node: Node = {
    name, rendered, root: await writeRoot(rendered, path.join(base, 'root')),
    conf: path.join(base, 'conf'), data: path.join(base, 'data'), sock: path.join(base, 'sock'),
  };
  for (const dir of [node.conf, node.data, node.sock]) {
    await mkdir(dir, { recursive: true });
    await chown(dir, pg.uid, pg.gid);
  }
  await chmod(node.data, 0o700);
  await writeFile(path.join(node.conf, 'postgresql.conf'), [
    `data_directory = '${node.data}'`, `unix_socket_directories = '${node.sock}'`, "include_dir = 'conf.d'", ...extraConf, '',
  ].join('\n'));
  await writeFile(path.join(node.conf, 'pg_ident.conf'), '');
  await chown(path.join(node.conf, 'postgresql.conf'), pg.uid, pg.gid);
  // A fresh cluster, as postgresql-common creates at package installation.
  await execa(path.join(bin, 'initdb'), ['-D', node.data, '-U', 'postgres', '--auth-local=peer', '--auth-host=scram-sha-256'], {
    uid: pg.uid, gid: pg.gid,
  });
  for (const f of ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf']) await rm(path.join(node.data, f));
  return node;
}

/** The PostgreSQL configuration step of first boot, as pibake-postgresql-setup.service runs it. */
async function configure(node: Node): Promise<string> {
  const result = await runScript(node, 'postgresql-setup.sh', {
    PIBAKE_PG_CONFDIR: node.conf, PIBAKE_PG_SOURCE: path.join(node.root, 'etc/pibake/postgresql'), PIBAKE_PG_RESTART: 'echo RESTART',
  });
  expect(result.exitCode, result.all).toBe(0);
  return result.all;
}

async function fetchText(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return { status: response.status, body: await response.text() };
}

/** The page's form, as a browser posts it (not following the redirect). */
async function postMessage(ip: string, message: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://${ip}:${appPort}/`, {
    method: 'POST', body: new URLSearchParams({ message }), redirect: 'manual', signal: AbortSignal.timeout(10_000),
  });
  return { status: response.status, body: await response.text() };
}

/**
 * The demo app as pibake-webapp.service runs it: an unprivileged user, the node's rendered files,
 * its passwords in `credentials` ($CREDENTIALS_DIRECTORY). The local and read endpoints point at the
 * node's socket folder (the rendered /var/run/postgresql); the write endpoint is the rendered one.
 */
function appProcess(node: Node, ip: string, credentials: string, env: Record<string, string>, options: { buffer: boolean }): ResultPromise {
  return execa('/usr/bin/python3', [path.join(node.root, 'usr/local/lib/pibake/webapp.py')], {
    uid: nobody.uid, gid: nobody.gid, reject: false, all: true, stdin: 'ignore', buffer: options.buffer, timeout: options.buffer ? 60_000 : undefined,
    env: {
      PIBAKE_WEB_CONFIG: path.join(node.root, 'etc/pibake/web/app.json'), PIBAKE_WEB_LISTEN: ip,
      PIBAKE_LOCAL_HOST: node.sock, PIBAKE_READ_HOST: node.sock, CREDENTIALS_DIRECTORY: credentials, ...env,
    },
  });
}

/** Start the node's app with its rendered passwords handed over in systemd's `style`; wait until it serves. */
async function startApp(node: Node, ip: string, style: 'acl' | 'owner'): Promise<void> {
  const credentials = await credentialsFolder(path.join(tmp, `${node.name}-credentials`), {
    pibake_web: fileText(node.rendered, '/etc/pibake/web/pibake_web.password'),
    pibake_app: fileText(node.rendered, '/etc/pibake/web/pibake_app.password'),
  }, nobody, style);
  const child = appProcess(node, ip, credentials, {}, { buffer: false });
  child.all?.pipe(createWriteStream(path.join(tmp, `${node.name}-app.log`)));
  children.push(child);
  await waitFor(`the app of ${node.name}`, 20_000, async () => {
    if (child.exitCode !== null) throw new Error(`the app of ${node.name} exited; see ${tmp}/${node.name}-app.log`);
    return (await fetchText(`http://${ip}:${appPort}/healthz`)).status === 200 ? true : undefined;
  });
}

/** An app run that is expected to end: its exit code and output. */
async function runApp(node: Node, ip: string, credentials: string, env: Record<string, string>): Promise<{ exitCode: number; all: string }> {
  const result = await appProcess(node, ip, credentials, env, { buffer: true });
  return { exitCode: result.exitCode ?? -1, all: String(result.all ?? '') };
}

describe.skipIf(!isRoot)('PostgreSQL primary and replica from the rendered first-boot scripts', () => {
  beforeAll(async () => {
    const versions = await installedPostgresqlVersions();
    if (versions.length === 0) throw new Error('no PostgreSQL server installed (apt-get install postgresql)');
    version = versions[versions.length - 1] as number;
    bin = `/usr/lib/postgresql/${version}/bin`;
    pg = await account('postgres');
    nobody = await account('nobody');
    tmp = await mkdtemp(path.join(tmpdir(), 'pibake-pg-'));
    await chmod(tmp, 0o755); // postgres must reach its folders below
    port = await freePort(['127.0.0.1', PRIMARY_IP, REPLICA_IP]);
    appPort = await freePort(['127.0.0.1', PRIMARY_IP, REPLICA_IP]);
    inventory = clusterInventory(tmp, { nodeCount: 4, postgresqlPort: port, appPort, postgresqlVersion: version });
    const cluster = await renderedCluster(inventory);
    primary = await prepareNode('db1', await cluster.render('db1'), []);
    replica = await prepareNode('db2', await cluster.render('db2'), [
      `# test only: the primary already listens on this machine's localhost:${port}`, `listen_addresses = '${REPLICA_IP}'`,
    ]);
  });

  afterAll(async () => {
    for (const child of children.reverse()) {
      if (child.exitCode === null && child.pid !== undefined) {
        child.kill('SIGINT'); // PostgreSQL: fast shutdown; the app: KeyboardInterrupt
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await child;
        clearTimeout(timer);
      }
    }
    if (tmp) await rm(tmp, { recursive: true, force: true });
    if (cloneMs !== undefined) console.info(`replica bootstrap (pg_basebackup of a fresh primary) took ${cloneMs} ms`);
    if (catchUpMs !== undefined) console.info(`replica showed a row committed on the primary after ${catchUpMs} ms (polling every 100 ms)`);
    if (healthzMs !== undefined) console.info(`the demo app's /healthz, 50 requests one after the other: ${healthzMs}`);
  });

  it('the setup script installs the rendered settings into the cluster once, restarting only on change', async () => {
    const first = await configure(primary);
    expect(first).toContain('RESTART');
    expect(await readFile(path.join(primary.conf, 'conf.d/50-pibake.conf'), 'utf8')).toBe(fileText(primary.rendered, '/etc/pibake/postgresql/pibake.conf'));
    expect(await readFile(path.join(primary.conf, 'pg_hba.conf'), 'utf8')).toBe(fileText(primary.rendered, '/etc/pibake/postgresql/pg_hba.conf'));
    const second = await configure(primary);
    expect(second).not.toContain('RESTART');
    expect((await stat(path.join(primary.conf, 'pg_hba.conf'))).uid).toBe(pg.uid);
  });

  it('the primary starts with the rendered settings and the rendered setup (run twice) creates the roles and the demo database, and no slots', async () => {
    primaryServer = startServer(primary);
    await waitReady(primary, PRIMARY_IP); // listens on its node address, from the rendered listen_addresses
    expect(await psql(primary, 'SHOW max_slot_wal_keep_size')).toBe('256MB');
    expect(await psql(primary, 'SHOW hot_standby')).toBe('on');
    for (let run = 0; run < 2; run++) {
      const result = await runScript(primary, 'primary-setup.sh', {
        PIBAKE_PG_HOST: primary.sock, PIBAKE_PRIMARY_SQL: path.join(primary.root, 'etc/pibake/postgresql/primary-setup.sql'), PIBAKE_WAIT_SECONDS: '30',
      });
      expect(result.exitCode, result.all).toBe(0);
    }
    expect(await psql(primary, "SELECT rolreplication, rolcanlogin, rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'replicator'")).toBe('t|t|t');
    expect(await psql(primary, 'SELECT count(*) FROM pg_replication_slots')).toBe('0'); // replicas make their own
    expect(await psql(primary, 'SELECT count(*) FROM pibake_demo', 'pibake')).toBe('1');
  });

  it('the rendered bootstrap script clones the primary into the replica, which then streams every committed row', async () => {
    // First boot hands the baked pgpass (root 0600) over to postgres, from the rendered list.
    const list = fileText(replica.rendered, '/etc/pibake/ownership.list').split('\n').filter(Boolean)
      .map((line) => `${replica.root}${line}`).join('\n');
    await writeFile(path.join(tmp, 'db2-ownership.list'), `${list}\n`);
    const applied = await execa(path.join(replica.root, 'usr/local/lib/pibake/apply-ownership.sh'), [path.join(tmp, 'db2-ownership.list')], { reject: false, all: true });
    expect(applied.exitCode, applied.all).toBe(0);
    const pgpass = path.join(replica.root, 'etc/pibake/postgresql/replication.pgpass');
    expect((await stat(pgpass)).uid).toBe(pg.uid);

    // The primary not answering (wrong port here): bounded retries, then failure; the fresh local
    // cluster is neither stopped nor emptied.
    const unreachable = await runScript(replica, 'replica-bootstrap.sh', {
      PIBAKE_PG_DATADIR: replica.data, PIBAKE_PGPASS: pgpass, PIBAKE_MARKER: path.join(tmp, 'db2-bootstrapped'),
      PIBAKE_PRIMARY_PORT: String(await freePort([PRIMARY_IP])), PIBAKE_PG_STOP: 'echo STOP', PIBAKE_PG_START: 'echo START',
      PIBAKE_WAIT_SECONDS: '2', PIBAKE_MAX_BACKOFF: '1',
    });
    expect(unreachable.exitCode, unreachable.all).toBe(1);
    expect(unreachable.all).toContain('giving up');
    expect(unreachable.all).not.toContain('STOP');
    expect((await stat(path.join(replica.data, 'PG_VERSION'))).isFile()).toBe(true);

    const env = {
      PIBAKE_PG_DATADIR: replica.data, PIBAKE_PGPASS: pgpass, PIBAKE_MARKER: path.join(tmp, 'db2-bootstrapped'),
      PIBAKE_PG_STOP: 'echo STOP', PIBAKE_PG_START: 'echo START', PIBAKE_WAIT_SECONDS: '60', PIBAKE_MAX_BACKOFF: '2',
    };
    const cloneStarted = Date.now();
    const bootstrap = await runScript(replica, 'replica-bootstrap.sh', env); // primary address, port and slot: as rendered
    cloneMs = Date.now() - cloneStarted;
    expect(bootstrap.exitCode, bootstrap.all).toBe(0);
    expect(bootstrap.all).toMatch(/STOP[\s\S]*START/);
    expect(bootstrap.all).toContain('(slot db2: missing)'); // so pg_basebackup -C created it
    const auto = await readFile(path.join(replica.data, 'postgresql.auto.conf'), 'utf8');
    expect(auto).toContain("primary_slot_name = 'db2'");
    expect(auto).toContain(`host=${PRIMARY_IP}`);
    expect(auto).not.toMatch(/password=/); // the password stays in the pgpass file
    expect((await stat(path.join(replica.data, 'standby.signal'))).uid).toBe(pg.uid);

    expect(await configure(replica)).toContain('RESTART');
    replicaServer = startServer(replica);
    await waitReady(replica, REPLICA_IP);
    expect(await psql(replica, 'SELECT pg_is_in_recovery()')).toBe('t');
    await waitFor('the replica to stream from its slot', 30_000, async () =>
      (await psql(primary, "SELECT active FROM pg_replication_slots WHERE slot_name = 'db2'")) === 't' ? true : undefined);

    const message = `row written at ${Date.now()}`;
    const started = Date.now();
    await psql(primary, `INSERT INTO pibake_demo (message) VALUES ('${message}')`, 'pibake');
    await waitFor('the row on the replica', 30_000, async () =>
      (await psql(replica, `SELECT count(*) FROM pibake_demo WHERE message = '${message}'`, 'pibake')) === '1' ? true : undefined);
    catchUpMs = Date.now() - started;
    expect(await psql(primary, "SELECT application_name, state FROM pg_stat_replication")).toBe('db2|streaming');
  });

  it('a re-flashed replica whose slot still exists on the primary reuses it', async () => {
    await psql(primary, "SELECT pg_create_physical_replication_slot('db3')");
    const db3 = await renderedCluster(inventory).then((c) => c.render('db3'));
    const root = await writeRoot(db3, path.join(tmp, 'db3', 'root'));
    const pgpass = path.join(root, 'etc/pibake/postgresql/replication.pgpass');
    await chown(pgpass, pg.uid, pg.gid);
    const data = path.join(tmp, 'db3', 'data');
    await mkdir(data, { mode: 0o700 });
    await chown(data, pg.uid, pg.gid);
    const result = await execa(path.join(root, 'usr/local/lib/pibake/replica-bootstrap.sh'), [], {
      env: {
        PIBAKE_PG_BINDIR: bin, PIBAKE_PG_DATADIR: data, PIBAKE_PGPASS: pgpass, PIBAKE_MARKER: path.join(tmp, 'db3-bootstrapped'),
        PIBAKE_PG_STOP: 'true', PIBAKE_PG_START: 'true', PIBAKE_WAIT_SECONDS: '30',
      },
      reject: false, all: true, timeout: 90_000,
    });
    expect(result.exitCode, result.all).toBe(0);
    expect(result.all).toContain('(slot db3: present)');
    expect(result.all).not.toContain('already exists');
    expect(await readFile(path.join(data, 'postgresql.auto.conf'), 'utf8')).toContain("primary_slot_name = 'db3'");
    await rm(path.join(tmp, 'db3'), { recursive: true });
    await psql(primary, "SELECT pg_drop_replication_slot('db3')");
  });

  it('running the bootstrap script again on the standby is a no-op', async () => {
    const control = await stat(path.join(replica.data, 'global/pg_control'));
    const before = await psql(replica, 'SELECT system_identifier FROM pg_control_system()');
    const again = await runScript(replica, 'replica-bootstrap.sh', {
      PIBAKE_PG_DATADIR: replica.data, PIBAKE_PGPASS: '/nonexistent', PIBAKE_MARKER: path.join(tmp, 'db2-bootstrapped'),
      PIBAKE_PG_STOP: 'echo STOP', PIBAKE_PG_START: 'echo START', PIBAKE_WAIT_SECONDS: '5',
    });
    expect(again.exitCode, again.all).toBe(0);
    expect(again.all).toContain('already is a standby');
    expect(again.all).not.toContain('STOP');
    expect((await stat(path.join(replica.data, 'global/pg_control'))).ino).toBe(control.ino);
    expect(await psql(replica, 'SELECT system_identifier FROM pg_control_system()')).toBe(before);
    expect(await psql(replica, 'SELECT pg_is_in_recovery()')).toBe('t');
  });

  it('the demo app logs in with its passwords handed over as systemd 257 does (0440 root plus an ACL) and as 252 does', async () => {
    // libpq itself refuses such a file as a password file: the failure of the old unit, reproduced.
    const pgpassDir = await credentialsFolder(path.join(tmp, 'db1-pgpass'), {
      pgpass: `*:${port}:pibake:pibake_web:${fileText(primary.rendered, '/etc/pibake/web/pibake_web.password').trim()}\n`,
    }, nobody, 'acl');
    expect((await stat(path.join(pgpassDir, 'pgpass'))).mode & 0o777).toBe(0o440);
    const viaFile = await execa(path.join(bin, 'psql'), ['-X', '-w', '-h', primary.sock, '-p', String(port), '-U', 'pibake_web', '-d', 'pibake', '-c', 'SELECT 1'], {
      uid: nobody.uid, gid: nobody.gid, env: { PGPASSFILE: path.join(pgpassDir, 'pgpass') }, reject: false, all: true, timeout: 20_000,
    });
    expect(viaFile.exitCode).not.toBe(0);
    expect(viaFile.all).toMatch(/has group or world access[\s\S]*no password supplied/);

    await startApp(primary, PRIMARY_IP, 'acl'); // trixie
    await startApp(replica, REPLICA_IP, 'owner'); // bookworm
    const expected: Record<string, { primary: number; replica: number; recovery: boolean }> = {
      [PRIMARY_IP]: { primary: 200, replica: 503, recovery: false }, [REPLICA_IP]: { primary: 503, replica: 200, recovery: true },
    };
    for (const ip of [PRIMARY_IP, REPLICA_IP]) {
      const health = await fetchText(`http://${ip}:${appPort}/healthz`);
      expect(health.status).toBe(200);
      // It says what it checked: a query of the demo table on the read endpoint, as the app's role.
      expect(JSON.parse(health.body)).toMatchObject({
        healthy: true, checked: { endpoint: 'read', user: 'pibake_web', in_recovery: expected[ip]?.recovery, newest_row: expect.any(Number) },
      });
      expect((await fetchText(`http://${ip}:${appPort}/primary`)).status).toBe(expected[ip]?.primary);
      expect((await fetchText(`http://${ip}:${appPort}/replica`)).status).toBe(expected[ip]?.replica);
    }
    const status = JSON.parse((await fetchText(`http://${REPLICA_IP}:${appPort}/status`)).body) as Record<string, unknown>;
    expect(status).toMatchObject({ node: 'db2', role: 'replica', error: null, in_recovery: true });
    expect(String((status.row as { message?: string }).message)).toMatch(/^row written at \d+$/);
    const page = await fetchText(`http://${PRIMARY_IP}:${appPort}/`);
    expect(page.body).toContain('<h1>pitest: db1</h1>');
    expect(page.body).toMatch(/replica db2<\/th><td>streaming/);
    // The app's read role is read-only even on the primary.
    await expect(execa(path.join(bin, 'psql'), ['-X', '-h', primary.sock, '-p', String(port), '-U', 'pibake_web', '-d', 'pibake',
      '-c', "INSERT INTO pibake_demo (message) VALUES ('x')"], {
      env: { PGPASSWORD: fileText(primary.rendered, '/etc/pibake/web/pibake_web.password').trim() },
    })).rejects.toThrow(/permission denied|read-only/);

    const times: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t0 = performance.now();
      expect((await fetchText(`http://${REPLICA_IP}:${appPort}/healthz`)).status).toBe(200);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    healthzMs = `median ${times[25]?.toFixed(1)} ms, max ${times[49]?.toFixed(1)} ms`;
  });

  it('a row posted to the replica\'s app is written through the write endpoint (the primary) and read back from the replica', async () => {
    const message = `posted at ${Date.now()}`;
    const posted = await postMessage(REPLICA_IP, message);
    expect(posted.status, posted.body).toBe(303);
    expect(await psql(primary, `SELECT count(*) FROM pibake_demo WHERE message = '${message}'`, 'pibake')).toBe('1');
    await waitFor('the posted row on the replica\'s page', 20_000, async () =>
      ((await fetchText(`http://${REPLICA_IP}:${appPort}/`)).body.includes(message) ? true : undefined));
    expect((await postMessage(REPLICA_IP, '   ')).status).toBe(400);
  });

  it('the app does not start, and says why, when its database refuses its password or it has none', async () => {
    const wrong = await credentialsFolder(path.join(tmp, 'wrong-credentials'), { pibake_web: 'not-the-password\n', pibake_app: 'nor-this\n' }, nobody, 'acl');
    const refused = await runApp(primary, PRIMARY_IP, wrong, { PIBAKE_WEB_PORT: String(await freePort([PRIMARY_IP])) });
    expect(refused.exitCode, refused.all).toBe(1);
    expect(refused.all).toMatch(/^pibake-webapp: cannot start: .*password authentication failed for user "pibake_web"/m);
    expect(refused.all).not.toContain('Traceback');
    const none = await runApp(primary, PRIMARY_IP, path.join(tmp, 'no-such-folder'), {});
    expect(none.exitCode).toBe(1);
    expect(none.all).toMatch(/^pibake-webapp: no password for pibake_web: .*No such file/m);
  });

  it('reads go on while the write endpoint is down, and both apps reconnect once the primary is back', async () => {
    const server = primaryServer as ResultPromise;
    server.kill('SIGINT'); // fast shutdown: every connection of the apps is closed by the server
    await server;
    const primaryHealth = await fetchText(`http://${PRIMARY_IP}:${appPort}/healthz`);
    expect(primaryHealth.status).toBe(503);
    expect(JSON.parse(primaryHealth.body)).toMatchObject({ healthy: false, checked: { endpoint: 'read', error: expect.any(String) } });
    // The replica's app: its page and health come from the standby; only a write fails.
    expect((await fetchText(`http://${REPLICA_IP}:${appPort}/healthz`)).status).toBe(200);
    const page = await fetchText(`http://${REPLICA_IP}:${appPort}/`);
    expect(page.status).toBe(200);
    expect(page.body).toMatch(/newest demo row<\/th><td>#\d+ posted at/);
    const refused = await postMessage(REPLICA_IP, 'while the primary is down');
    expect(refused.status).toBe(503);
    expect(refused.body).toMatch(/^not written: write endpoint 127\.0\.0\.11:\d+ as pibake_app: /);

    primaryServer = startServer(primary);
    await waitReady(primary, PRIMARY_IP);
    // Same processes: their broken connections are replaced on the next request.
    await waitFor('the primary\'s app to answer again', 10_000, async () =>
      ((await fetchText(`http://${PRIMARY_IP}:${appPort}/healthz`)).status === 200 ? true : undefined));
    expect((await fetchText(`http://${PRIMARY_IP}:${appPort}/`)).body).toMatch(/newest demo row<\/th><td>#\d+ posted at/);
    expect((await postMessage(REPLICA_IP, 'after the primary came back')).status).toBe(303);
    expect((await postMessage(PRIMARY_IP, 'posted on the primary after its restart')).status).toBe(303);
  });

  it('a promoted replica is never wiped by a later run of the bootstrap script', async () => {
    await psql(replica, 'SELECT pg_promote()');
    await waitFor('the promotion', 30_000, async () => ((await psql(replica, 'SELECT pg_is_in_recovery()')) === 'f' ? true : undefined));
    const control = await stat(path.join(replica.data, 'global/pg_control'));
    const again = await runScript(replica, 'replica-bootstrap.sh', {
      PIBAKE_PG_DATADIR: replica.data, PIBAKE_PGPASS: '/nonexistent', PIBAKE_MARKER: path.join(tmp, 'db2-bootstrapped'),
      PIBAKE_PG_STOP: 'echo STOP', PIBAKE_PG_START: 'echo START', PIBAKE_WAIT_SECONDS: '5',
    });
    expect(again.exitCode, again.all).toBe(0);
    expect(again.all).toContain('no longer a standby');
    expect(again.all).not.toContain('STOP');
    expect((await stat(path.join(replica.data, 'global/pg_control'))).ino).toBe(control.ino);
    // What HAProxy's checks see after such a failover: the promoted node now answers /primary.
    expect((await fetchText(`http://${REPLICA_IP}:${appPort}/primary`)).status).toBe(200);
    expect((await fetchText(`http://${REPLICA_IP}:${appPort}/replica`)).status).toBe(503);
  });

  it('the app reports 503 on every health endpoint once its PostgreSQL is gone', async () => {
    const server = replicaServer as ResultPromise;
    server.kill('SIGINT');
    await server;
    for (const endpoint of ['healthz', 'primary', 'replica']) {
      const answer = await fetchText(`http://${REPLICA_IP}:${appPort}/${endpoint}`);
      expect(answer.status, endpoint).toBe(503);
      expect(JSON.parse(answer.body)).toMatchObject({ healthy: false, checked: { error: expect.stringMatching(/./) } });
    }
  });
});
