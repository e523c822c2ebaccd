/**
 * The db role's PostgreSQL pieces outside Patroni's own code, and the demo app on them, from the
 * rendered files: the post_bootstrap hook (db-bootstrap.sh + .sql) run the way Patroni runs it — as
 * postgres, once, with a connection string to the new primary — on a real server whose pg_hba.conf
 * is the list from the rendered Patroni config; a replica cloned from it the way Patroni clones
 * (pg_basebackup as the replication role); then the demo app on both. Patroni itself (bootstrap,
 * cloning, failover) runs for real in the cluster test.
 *
 * The test inventory's network is 127.0.0.0/8 with node addresses 127.0.0.10.., so the rendered
 * pg_hba lines and addresses work unchanged on loopback. Deviations from a node: the servers are
 * children of the test (the replica listens on its node address only, since both share this
 * machine's localhost), and the app's read/write endpoints point at the servers themselves, as
 * there are no load balancers here.
 */
import { execa, type ResultPromise } from 'execa';
import { createWriteStream } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { chmod, chown, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { load } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RenderedNode } from '../../builder/render/types.ts';
import { account } from '../cluster/harness.ts';
import {
  clusterInventory, credentialsFolder, fileText, freePort, installedPostgresqlVersions, renderedCluster, waitFor, writeRoot,
  type RenderedCluster,
} from '../helpers/roles.ts';

const isRoot = process.getuid?.() === 0;
const PRIMARY_IP = '127.0.0.11';
const REPLICA_IP = '127.0.0.12';

interface Node {
  name: string;
  rendered: RenderedNode;
  root: string; // rendered root filesystem
  data: string; // stands in for /var/lib/postgresql/<v>/patroni
  sock: string; // stands in for /var/run/postgresql
  server?: ResultPromise;
}

let tmp: string;
let bin: string;
let port: number;
let appPort: number;
let pg: { uid: number; gid: number };
let nobody: { uid: number; gid: number };
let cluster: RenderedCluster;
let primary: Node;
let replica: Node;
const children: ResultPromise[] = [];
let healthzMs: string | undefined;

async function node(name: string): Promise<Node> {
  const rendered = await cluster.render(name);
  const base = path.join(tmp, name);
  const n: Node = { name, rendered, root: await writeRoot(rendered, path.join(base, 'root')), data: path.join(base, 'data'), sock: path.join(base, 'sock') };
  // The data folder is postgres' alone; the socket folder is open, as /var/run/postgresql is.
  for (const [dir, mode] of [[n.data, 0o700], [n.sock, 0o755]] as const) {
    await mkdir(dir, { recursive: true });
    await chmod(dir, mode);
    await chown(dir, pg.uid, pg.gid);
  }
  return n;
}

async function psql(n: Node, sql: string, options: { user?: string; db?: string; host?: string; password?: string } = {}): Promise<string> {
  const { stdout } = await execa(path.join(bin, 'psql'), ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-h', options.host ?? n.sock, '-p', String(port),
    '-U', options.user ?? 'postgres', '-d', options.db ?? 'postgres', '-c', sql], {
    ...(options.password ? { env: { PGPASSWORD: options.password } } : { uid: pg.uid, gid: pg.gid }), timeout: 20_000,
  });
  return stdout.trim();
}

/** A PostgreSQL server in the foreground as a child of the test, as postgres, listening on `ip` and its socket folder. */
function startServer(n: Node, ip: string): ResultPromise {
  const log = createWriteStream(path.join(tmp, `${n.name}-postgres.log`), { flags: 'a' });
  const child = execa(path.join(bin, 'postgres'), ['-D', n.data, '-p', String(port), '-c', `listen_addresses=${ip}`, '-c', `unix_socket_directories=${n.sock}`], {
    uid: pg.uid, gid: pg.gid, reject: false, buffer: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe',
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  children.push(child);
  return child;
}

async function waitReady(n: Node): Promise<void> {
  await waitFor(`PostgreSQL of ${n.name}`, 30_000, async () =>
    ((await execa(path.join(bin, 'pg_isready'), ['-q', '-h', n.sock, '-p', String(port)], { reject: false })).exitCode === 0 ? true : undefined));
}

/** The hook as Patroni calls it: as postgres, the superuser's connection string as its argument. */
function bootstrapHook(n: Node) {
  return execa('runuser', ['-u', 'postgres', '--', path.join(n.root, 'usr/local/lib/pibake/db-bootstrap.sh'),
    `postgresql://postgres@${encodeURIComponent(n.sock)}:${port}/postgres`], {
    env: { PIBAKE_BOOTSTRAP_SQL: path.join(n.root, 'etc/pibake/postgresql/db-bootstrap.sql'), PGOPTIONS: '-c synchronous_commit=local' },
    reject: false, all: true, timeout: 60_000,
  });
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
 * node's socket folder (the rendered /var/run/postgresql and, for reads, the load balancers' read
 * port), the write endpoint at the primary (for the load balancers' write port).
 */
function appProcess(node: Node, ip: string, credentials: string, env: Record<string, string>, options: { buffer: boolean }): ResultPromise {
  return execa('/usr/bin/python3', [path.join(node.root, 'usr/local/lib/pibake/webapp.py')], {
    uid: nobody.uid, gid: nobody.gid, reject: false, all: true, stdin: 'ignore', buffer: options.buffer, timeout: options.buffer ? 60_000 : undefined,
    env: {
      PIBAKE_WEB_CONFIG: path.join(node.root, 'etc/pibake/web/app.json'), PIBAKE_WEB_LISTEN: ip, CREDENTIALS_DIRECTORY: credentials,
      // No load balancers here: the read endpoint is the node's own server, the write endpoint the primary.
      PIBAKE_LOCAL_HOST: node.sock, PIBAKE_READ_HOST: node.sock, PIBAKE_READ_PORT: String(port),
      PIBAKE_WRITE_HOST: PRIMARY_IP, PIBAKE_WRITE_PORT: String(port), ...env,
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

describe.skipIf(!isRoot)('the db role\'s PostgreSQL and the demo app on it, from the rendered files', () => {
  beforeAll(async () => {
    const versions = await installedPostgresqlVersions();
    if (versions.length === 0) throw new Error('no PostgreSQL server installed (apt-get install postgresql)');
    const version = versions[versions.length - 1] as number;
    bin = `/usr/lib/postgresql/${version}/bin`;
    pg = await account('postgres');
    nobody = await account('nobody');
    tmp = await mkdtemp(path.join(tmpdir(), 'pibake-pg-'));
    await chmod(tmp, 0o755); // postgres must reach its folders below
    port = await freePort(['127.0.0.1', PRIMARY_IP, REPLICA_IP]);
    appPort = await freePort(['127.0.0.1', PRIMARY_IP, REPLICA_IP]);
    cluster = await renderedCluster(clusterInventory(tmp, { nodeCount: 4, postgresqlPort: port, appPort, postgresqlVersion: version }));
    primary = await node('db1');
    replica = await node('db2');
    // First boot hands the SQL (passwords, 0600) to postgres: Patroni runs the hook as postgres.
    expect(fileText(primary.rendered, '/etc/pibake/ownership.list')).toContain('/etc/pibake/postgresql/db-bootstrap.sql postgres postgres 0600\n');
    await chown(path.join(primary.root, 'etc/pibake/postgresql/db-bootstrap.sql'), pg.uid, pg.gid);

    // A fresh cluster as Patroni's initdb makes it (the rendered initdb options), with the pg_hba.conf Patroni writes from its config.
    const config = load(fileText(primary.rendered, '/etc/patroni/config.yml')) as {
      postgresql: { pg_hba: string[] }; bootstrap: { pg_hba: string[]; initdb: (string | Record<string, string>)[] };
    };
    expect(config.postgresql.pg_hba).toEqual(config.bootstrap.pg_hba);
    const initdb = config.bootstrap.initdb.map((o) => (typeof o === 'string' ? `--${o}` : Object.entries(o).map(([k, v]) => `--${k}=${v}`).join('')));
    expect(initdb).toEqual(['--encoding=UTF8', '--locale=C.UTF-8', '--data-checksums']);
    await execa('runuser', ['-u', 'postgres', '--', path.join(bin, 'initdb'), '-D', primary.data, '-U', 'postgres', '--auth-local=peer', '--no-sync', ...initdb], { timeout: 120_000 });
    await writeFile(path.join(primary.data, 'pg_hba.conf'), `${config.postgresql.pg_hba.join('\n')}\n`);
    primary.server = startServer(primary, PRIMARY_IP);
    await waitReady(primary);
  }, 180_000);

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
    if (healthzMs !== undefined) console.info(`the demo app's /healthz, 50 requests one after the other: ${healthzMs}`);
  });

  it('the post_bootstrap hook makes the database, the app roles and the demo row once; running it again changes nothing', async () => {
    for (let run = 0; run < 2; run++) {
      const hook = await bootstrapHook(primary);
      expect(hook.exitCode, hook.all).toBe(0);
      expect(hook.all).toContain('database, roles and demo table are in place');
    }
    expect(await psql(primary, 'SELECT message FROM pibake_demo', { db: 'pibake' })).toBe('Hello from pitest: the first primary was db1');
    expect(await psql(primary, "SELECT string_agg(rolname || ':' || rolcanlogin, ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'pibake_%'"))
      .toBe('pibake_app:true,pibake_web:true');
  });

  it('the app role writes and the web role only reads, over TCP from the cluster network with their generated passwords', async () => {
    const app = { user: 'pibake_app', db: 'pibake', host: PRIMARY_IP, password: cluster.secrets.values.app_db_password };
    expect(await psql(primary, "INSERT INTO pibake_demo (message) VALUES ('through TCP') RETURNING message", app)).toBe('through TCP');
    const web = { user: 'pibake_web', db: 'pibake', host: PRIMARY_IP, password: cluster.secrets.values.web_db_password };
    expect(await psql(primary, 'SELECT count(*) FROM pibake_demo', web)).toBe('2');
    await expect(psql(primary, "INSERT INTO pibake_demo (message) VALUES ('x')", web)).rejects.toThrow(/read-only transaction/);
    await expect(psql(primary, 'SELECT 1', { ...app, password: 'wrong' })).rejects.toThrow(/password authentication failed/);
  });

  it('a replica cloned the way Patroni clones (pg_basebackup as the replication role, over the rendered pg_hba) streams every committed row', async () => {
    // Patroni's bootstrap makes the replication role from its config's authentication section.
    const replication = cluster.secrets.values.replication_password ?? '';
    await psql(primary, `CREATE ROLE replicator WITH LOGIN REPLICATION PASSWORD '${replication}'`);
    const clone = await execa(path.join(bin, 'pg_basebackup'), ['-D', replica.data, '-X', 'stream', '-R', '-c', 'fast',
      '-d', `host=${PRIMARY_IP} port=${port} user=replicator application_name=db2`], {
      uid: pg.uid, gid: pg.gid, env: { PGPASSWORD: replication }, reject: false, all: true, timeout: 120_000,
    });
    expect(clone.exitCode, clone.all).toBe(0);
    replica.server = startServer(replica, REPLICA_IP);
    await waitReady(replica);
    expect(await psql(replica, 'SELECT pg_is_in_recovery()')).toBe('t');
    const message = `row written at ${Date.now()}`;
    await psql(primary, `INSERT INTO pibake_demo (message) VALUES ('${message}')`, { db: 'pibake' });
    await waitFor('the row on the replica', 30_000, async () =>
      ((await psql(replica, `SELECT count(*) FROM pibake_demo WHERE message = '${message}'`, { db: 'pibake' })) === '1' ? true : undefined));
    expect(await psql(primary, 'SELECT application_name, state FROM pg_stat_replication')).toBe('db2|streaming');
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
    expect(status).toMatchObject({ node: 'db2', role: 'db', error: null, in_recovery: true });
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
    expect(await psql(primary, `SELECT count(*) FROM pibake_demo WHERE message = '${message}'`, { db: 'pibake' })).toBe('1');
    await waitFor('the posted row on the replica\'s page', 20_000, async () =>
      ((await fetchText(`http://${REPLICA_IP}:${appPort}/`)).body.includes(message) ? true : undefined));
    expect((await postMessage(REPLICA_IP, '   ')).status).toBe(400);
  });

  it('the app does not start, and says why, when its database refuses its password or it has none', async () => {
    const wrong = await credentialsFolder(path.join(tmp, 'wrong-credentials'), { pibake_web: 'not-the-password\n', pibake_app: 'nor-this\n' }, nobody, 'acl');
    const refused = await runApp(primary, PRIMARY_IP, wrong, { PIBAKE_WEB_PORT: String(await freePort([PRIMARY_IP])), PIBAKE_WEB_LOGIN_GRACE_S: '3' });
    expect(refused.exitCode, refused.all).toBe(1);
    expect(refused.all).toMatch(/^pibake-webapp: cannot start: .*password authentication failed for user "pibake_web"/m);
    expect(refused.all).not.toContain('Traceback');
    // Within the grace period it said it waits (the bootstrap hook may not have made the role yet).
    expect(refused.all).toMatch(/^<4>pibake-webapp: waiting for the local endpoint .*password authentication failed/m);
    const none = await runApp(primary, PRIMARY_IP, path.join(tmp, 'no-such-folder'), {});
    expect(none.exitCode).toBe(1);
    expect(none.all).toMatch(/^pibake-webapp: no password for pibake_web: .*No such file/m);
  });

  it('the app waits while its database does not answer yet (a cluster forming), then starts by itself', async () => {
    const credentials = await credentialsFolder(path.join(tmp, 'waiting-credentials'), {
      pibake_web: fileText(primary.rendered, '/etc/pibake/web/pibake_web.password'),
      pibake_app: fileText(primary.rendered, '/etc/pibake/web/pibake_app.password'),
    }, nobody, 'acl');
    // The read endpoint: a port where nothing listens yet, later a relay to the primary's PostgreSQL.
    const readPort = await freePort(['127.0.0.1']);
    const webPort = await freePort([PRIMARY_IP]);
    const app = appProcess(primary, PRIMARY_IP, credentials, { PIBAKE_READ_HOST: '127.0.0.1', PIBAKE_READ_PORT: String(readPort), PIBAKE_WEB_PORT: String(webPort) }, { buffer: false });
    children.push(app);
    let output = '';
    app.all?.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    await waitFor('the app saying it waits', 20_000, async () => (output.includes('waiting for the read endpoint') ? true : undefined));
    expect(output).toMatch(new RegExp(`^<4>pibake-webapp: waiting for the read endpoint 127\\.0\\.0\\.1:${readPort}: .*; trying again every 30 s at most$`, 'm'));
    expect(app.exitCode).toBeNull();
    const relay = createServer((client) => {
      const server = createConnection({ host: PRIMARY_IP, port });
      client.pipe(server).pipe(client);
      client.on('error', () => server.destroy());
      server.on('error', () => client.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(readPort, '127.0.0.1', resolve));
    try {
      await waitFor('the app serving once its database answers', 40_000, async () => {
        if (app.exitCode !== null) throw new Error(`the app exited: ${output}`);
        return (await fetchText(`http://${PRIMARY_IP}:${webPort}/healthz`)).status === 200 ? true : undefined;
      });
      expect(output).not.toContain('Traceback');
    } finally {
      app.kill('SIGTERM');
      await app;
      relay.close();
    }
  });

  it('reads go on while the write endpoint is down, and both apps reconnect once the primary is back', async () => {
    const server = primary.server as ResultPromise;
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

    primary.server = startServer(primary, PRIMARY_IP);
    await waitReady(primary);
    // Same processes: their broken connections are replaced on the next request.
    await waitFor('the primary\'s app to answer again', 10_000, async () =>
      ((await fetchText(`http://${PRIMARY_IP}:${appPort}/healthz`)).status === 200 ? true : undefined));
    expect((await fetchText(`http://${PRIMARY_IP}:${appPort}/`)).body).toMatch(/newest demo row<\/th><td>#\d+ posted at/);
    expect((await postMessage(REPLICA_IP, 'after the primary came back')).status).toBe(303);
    expect((await postMessage(PRIMARY_IP, 'posted on the primary after its restart')).status).toBe(303);
  });

  it('a promoted replica answers /primary for HAProxy\'s checks of the app (what a failover looks like to it)', async () => {
    await psql(replica, 'SELECT pg_promote()');
    await waitFor('the promotion', 30_000, async () => ((await psql(replica, 'SELECT pg_is_in_recovery()')) === 'f' ? true : undefined));
    expect((await fetchText(`http://${REPLICA_IP}:${appPort}/primary`)).status).toBe(200);
    expect((await fetchText(`http://${REPLICA_IP}:${appPort}/replica`)).status).toBe(503);
  });

  it('the app reports 503 on every health endpoint once its PostgreSQL is gone', async () => {
    const server = replica.server as ResultPromise;
    server.kill('SIGINT');
    await server;
    for (const endpoint of ['healthz', 'primary', 'replica']) {
      const answer = await fetchText(`http://${REPLICA_IP}:${appPort}/${endpoint}`);
      expect(answer.status, endpoint).toBe(503);
      expect(JSON.parse(answer.body)).toMatchObject({ healthy: false, checked: { error: expect.stringMatching(/./) } });
    }
  });
});
