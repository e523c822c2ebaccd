/**
 * The db role's PostgreSQL pieces that run outside Patroni's own code, from the rendered files:
 * the post_bootstrap hook (db-bootstrap.sh + db-bootstrap.sql), run the way Patroni runs it — as
 * postgres, once, with a connection string to the new primary as its argument — on a real server
 * whose pg_hba.conf is the list from the rendered Patroni config. Patroni itself (bootstrap,
 * cloning, failover) runs for real in the cluster test.
 *
 * The test inventory's network is 127.0.0.0/8 with node addresses 127.0.0.10.., so the rendered
 * pg_hba lines and addresses work unchanged on loopback.
 */
import { execa } from 'execa';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { load } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RenderedNode } from '../../builder/render/types.ts';
import { account } from '../cluster/harness.ts';
import {
  clusterInventory, fileText, freePort, installedPostgresqlVersions, renderedCluster, waitFor, writeRoot, type RenderedCluster,
} from '../helpers/roles.ts';

const isRoot = process.getuid?.() === 0;
const NODE_IP = '127.0.0.11';

let tmp: string;
let bin: string;
let port: number;
let cluster: RenderedCluster;
let db1: RenderedNode;
let root: string;
let server: ReturnType<typeof execa> | undefined;
const data = () => path.join(tmp, 'data');
const sock = () => path.join(tmp, 'sock');

async function psql(sql: string, options: { user?: string; db?: string; host?: string; password?: string } = {}): Promise<string> {
  const pg = await account('postgres');
  const { stdout } = await execa(path.join(bin, 'psql'), ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-h', options.host ?? sock(), '-p', String(port),
    '-U', options.user ?? 'postgres', '-d', options.db ?? 'postgres', '-c', sql], {
    ...(options.password ? { env: { PGPASSWORD: options.password } } : { uid: pg.uid, gid: pg.gid }), timeout: 20_000,
  });
  return stdout.trim();
}

/** The hook as Patroni calls it: as postgres, the superuser's connection string as its argument. */
function bootstrapHook() {
  return execa('runuser', ['-u', 'postgres', '--', path.join(root, 'usr/local/lib/pibake/db-bootstrap.sh'),
    `postgresql://postgres@${encodeURIComponent(sock())}:${port}/postgres`], {
    env: { PIBAKE_BOOTSTRAP_SQL: path.join(root, 'etc/pibake/postgresql/db-bootstrap.sql'), PGOPTIONS: '-c synchronous_commit=local' },
    reject: false, all: true, timeout: 60_000,
  });
}

describe.skipIf(!isRoot)('the db role\'s post_bootstrap hook on a real PostgreSQL', () => {
  beforeAll(async () => {
    const versions = await installedPostgresqlVersions();
    if (versions.length === 0) throw new Error('no PostgreSQL server installed (apt-get install postgresql)');
    const version = versions[versions.length - 1] as number;
    bin = `/usr/lib/postgresql/${version}/bin`;
    tmp = await mkdtemp(path.join(tmpdir(), 'pibake-pg-'));
    await chmod(tmp, 0o755);
    port = await freePort(['127.0.0.1', NODE_IP]);
    cluster = await renderedCluster(clusterInventory(tmp, { nodeCount: 4, postgresqlPort: port, postgresqlVersion: version }));
    db1 = await cluster.render('db1');
    root = await writeRoot(db1, path.join(tmp, 'root'));
    // First boot hands the SQL (passwords, 0600) to postgres: Patroni runs the hook as postgres.
    const pg = await account('postgres');
    const sql = path.join(root, 'etc/pibake/postgresql/db-bootstrap.sql');
    expect(fileText(db1, '/etc/pibake/ownership.list')).toContain('/etc/pibake/postgresql/db-bootstrap.sql postgres postgres 0600\n');
    await chown(sql, pg.uid, pg.gid);

    // A fresh cluster as Patroni's initdb makes it, with the pg_hba.conf Patroni writes from its config.
    const config = load(fileText(db1, '/etc/patroni/config.yml')) as { postgresql: { pg_hba: string[]; listen: string }; bootstrap: { pg_hba: string[] } };
    expect(config.postgresql.pg_hba).toEqual(config.bootstrap.pg_hba);
    for (const dir of [data(), sock()]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chown(dir, pg.uid, pg.gid);
    }
    await execa('runuser', ['-u', 'postgres', '--', path.join(bin, 'initdb'), '-D', data(), '-U', 'postgres', '--auth-local=peer', '--no-sync',
      '--encoding=UTF8', '--locale=C.UTF-8', '--data-checksums'], { timeout: 120_000 });
    await writeFile(path.join(data(), 'pg_hba.conf'), `${config.postgresql.pg_hba.join('\n')}\n`);
    // A child of the test (stopped by PID at the end), as postgres.
    server = execa(path.join(bin, 'postgres'), ['-D', data(), '-p', String(port), '-c', `listen_addresses=${NODE_IP}`, '-c', `unix_socket_directories=${sock()}`],
      { uid: pg.uid, gid: pg.gid, reject: false, stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' });
    await waitFor('PostgreSQL', 30_000, async () => ((await execa(path.join(bin, 'pg_isready'), ['-q', '-h', sock(), '-p', String(port)], { reject: false })).exitCode === 0 ? true : undefined));
  }, 180_000);

  afterAll(async () => {
    if (server?.pid) {
      server.kill('SIGINT'); // fast shutdown
      await server;
    }
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('makes the database, the app roles and the demo row once; running it again changes nothing', async () => {
    for (let run = 0; run < 2; run++) {
      const hook = await bootstrapHook();
      expect(hook.exitCode, hook.all).toBe(0);
      expect(hook.all).toContain('database, roles and demo table are in place');
    }
    expect(await psql('SELECT message FROM pibake_demo', { db: 'pibake' })).toBe('Hello from pitest: the first primary was db1');
    expect(await psql("SELECT string_agg(rolname || ':' || rolcanlogin, ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'pibake_%'"))
      .toBe('pibake_app:true,pibake_web:true');
  });

  it('the app writes and the web role only reads, over TCP from the cluster network with their generated passwords', async () => {
    const app = { user: 'pibake_app', db: 'pibake', host: NODE_IP, password: cluster.secrets.values.app_db_password };
    expect(await psql("INSERT INTO pibake_demo (message) VALUES ('through TCP') RETURNING message", app)).toBe('through TCP');
    const web = { user: 'pibake_web', db: 'pibake', host: NODE_IP, password: cluster.secrets.values.web_db_password };
    expect(await psql('SELECT count(*) FROM pibake_demo', web)).toBe('2');
    await expect(psql("INSERT INTO pibake_demo (message) VALUES ('x')", web)).rejects.toThrow(/read-only transaction/);
    await expect(psql('SELECT 1', { ...app, password: 'wrong' })).rejects.toThrow(/password authentication failed/);
  });
});
