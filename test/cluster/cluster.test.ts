/**
 * The shipped 4-node cluster (cluster.yaml: lb1 HAProxy, web1 primary, web2/web3 replicas) running
 * for real: `pibake build` bakes the four images, and each node runs the files taken out of ITS
 * OWN built image (debugfs rdump; nothing re-rendered) with this machine's HAProxy, nginx, demo app
 * (python3 webapp.py) and PostgreSQL, each node in its own network namespace with its inventory
 * address, all joined by a bridge inside a "switch" namespace. Nothing is routed to the host.
 *
 * Test-environment stand-ins (documented in docs/cluster-test.md): Debian's postgresql.conf
 * (paths only) and nginx.conf (includes the image's site), the rendered haproxy.cfg with its three
 * host paths moved under the test folder, PIBAKE_* variables for the first-boot scripts' paths and
 * start/stop commands, and a test-only PostgreSQL role that may insert (the shipped roles have none).
 *
 * Run with `npm run test:cluster` as root. Figures go to the console at the end.
 */
import { readFileSync, rmSync } from 'node:fs';
import { copyFile, chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { load } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthesizeRaspiosImage } from '../../builder/image/synthesize.ts';
import { NetnsLab, registerCleanup, sweepStale } from '../helpers/netns.ts';
import { credentialsFolder } from '../helpers/roles.ts';
import {
  Daemons, account, adaptHaproxyConfig, debianCluster, differingLines, extractFromImage, parseWrk, psqlLocal,
  resolveInRoot, serverRow, showStat, sleep, waitFor, type Daemon, type PgDirs, type WrkResult,
} from './harness.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const isRoot = process.getuid?.() === 0;
const CLIENT_IP = '10.0.0.250'; // the test's HTTP/SQL client, on the same segment
const NS_PREFIX = 'pibakecl';
const KEEP = process.env.PIBAKE_CLUSTER_KEEP === '1';

interface ClusterNode {
  name: string;
  role: string;
  ip: string;
  image: string;
  root: string; // the image's extracted files
  dir: string; // scratch folder of the node
  pg?: PgDirs;
  daemons: Record<string, Daemon>;
}

let tmp: string;
let lab: NetnsLab;
let daemons: Daemons;
let bin: string;
let pgAccount: { uid: number; gid: number };
const nodes = new Map<string, ClusterNode>();
let lb: ClusterNode;
let primary: ClusterNode;
let replicas: ClusterNode[];
let webs: ClusterNode[];
let statsSocket: string;
let writer: { user: string; password: string };
const figures: [string, string, string][] = [];
const started = Date.now();

function figure(scenario: string, metric: string, value: string | number): void {
  figures.push([scenario, metric, typeof value === 'number' ? String(Math.round(value * 100) / 100) : value]);
}

function node(name: string): ClusterNode {
  const n = nodes.get(name);
  if (!n) throw new Error(`no node ${name}`);
  return n;
}

/** A first-boot script of the node's image, run as root in the node's namespace. */
async function runScript(n: ClusterNode, script: string, env: Record<string, string>, timeout = 120_000) {
  return lab.run(n.name, path.join(n.root, 'usr/local/lib/pibake', script), [], { env, reject: false, timeout });
}

async function stats() {
  return showStat(statsSocket);
}

async function waitStatus(proxy: string, server: string, status: 'UP' | 'DOWN', timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  await waitFor(`${proxy}/${server} ${status}`, timeoutMs, async () => {
    const row = serverRow(await stats(), proxy, server);
    return row.status === status ? true : undefined;
  }, 50);
  return Date.now() - t0;
}

function startPostgres(n: ClusterNode): Daemon {
  const pg = n.pg as PgDirs;
  n.daemons.postgres = daemons.start(n.name, 'postgres', 'setpriv',
    ['--reuid=postgres', '--regid=postgres', '--init-groups', path.join(bin, 'postgres'), '-D', pg.conf]);
  return n.daemons.postgres;
}

async function waitPostgres(n: ClusterNode, timeoutMs = 60_000): Promise<void> {
  await waitFor(`PostgreSQL on ${n.name}`, timeoutMs, async () => {
    if (n.daemons.postgres && !daemons.isRunning(n.daemons.postgres)) throw new Error(`postgres of ${n.name} exited; see ${n.daemons.postgres.log}`);
    const r = await lab.run(n.name, path.join(bin, 'pg_isready'), ['-q', '-h', n.ip, '-p', '5432'], { reject: false });
    return r.exitCode === 0 ? true : undefined;
  }, 200);
}

/**
 * The demo app as the unit runs it: as nobody, its passwords (the image's files) in a credentials
 * folder made the way trixie's systemd 257 makes it (root, 0440 with an ACL for the service's user).
 */
async function startApp(n: ClusterNode): Promise<void> {
  const cred = path.join(n.dir, 'credentials');
  if (!(await stat(cred).catch(() => undefined))) {
    const users = ['pibake_web', 'pibake_app'];
    const files = Object.fromEntries(await Promise.all(users.map(async (u) => [u, await readFile(path.join(n.root, `etc/pibake/web/${u}.password`), 'utf8')])));
    await credentialsFolder(cred, files, await account('nobody'), 'acl');
  }
  const sock = (n.pg as PgDirs).sock; // stands in for /var/run/postgresql (the local and read endpoints)
  n.daemons.app = daemons.start(n.name, 'app', 'setpriv',
    ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '/usr/bin/python3', path.join(n.root, 'usr/local/lib/pibake/webapp.py')], {
      PIBAKE_WEB_CONFIG: path.join(n.root, 'etc/pibake/web/app.json'), CREDENTIALS_DIRECTORY: cred,
      PIBAKE_LOCAL_HOST: sock, PIBAKE_READ_HOST: sock,
    });
  await waitFor(`the app of ${n.name}`, 30_000, async () => {
    const app = n.daemons.app as Daemon;
    if (!daemons.isRunning(app)) throw new Error(`the app of ${n.name} exited: ${await readFile(app.log, 'utf8')}`);
    const r = await lab.run(n.name, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', `http://127.0.0.1:${appPort(n)}/healthz`], { reject: false });
    return r.stdout === '200' ? true : undefined;
  }, 200);
}

function appPort(n: ClusterNode): number {
  return (JSON.parse(readFileSync(path.join(n.root, 'etc/pibake/web/app.json'), 'utf8')) as { port: number }).port;
}

/** nginx with a stand-in for Debian's nginx.conf that includes the site enabled in the image. */
async function startNginx(n: ClusterNode): Promise<void> {
  const dir = path.join(n.dir, 'nginx');
  const site = await resolveInRoot(n.root, '/etc/nginx/sites-enabled/pibake');
  expect(site).toBe(path.join(n.root, 'etc/nginx/sites-available/pibake'));
  const www = await account('www-data');
  for (const sub of ['', 'tmp']) {
    await mkdir(path.join(dir, sub), { recursive: true });
    await chown(path.join(dir, sub), www.uid, www.gid);
  }
  const conf = path.join(dir, 'nginx.conf');
  await writeFile(conf, [
    '# test stand-in for Debian\'s /etc/nginx/nginx.conf: everything under the test folder',
    'user www-data;', 'worker_processes 1;', `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log;`,
    'events { worker_connections 768; }',
    'http {',
    '  include /etc/nginx/mime.types;', '  default_type application/octet-stream;', '  keepalive_timeout 65;',
    `  access_log off;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/tmp/${t};`),
    `  include ${site};`,
    '}', '',
  ].join('\n'));
  const args = ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf];
  await lab.run(n.name, 'nginx', [...args, '-t', '-q']);
  n.daemons.nginx = daemons.start(n.name, 'nginx', 'nginx', [...args, '-g', 'daemon off;']);
}

async function clientPsql(args: string[], env: Record<string, string> = {}, input?: string) {
  return lab.run('client', path.join(bin, 'psql'), ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', ...args], {
    env: { PGPASSWORD: writer.password, PGCONNECT_TIMEOUT: '10', ...env }, input, timeout: 60_000,
  });
}

const WRITE_DSN = 'host=10.0.0.10 port=5000 dbname=pibake user=pibake_app';

/** A digest of every demo row (id, message, time) of the node: equal digests, equal tables. */
async function rowsDigest(n: ClusterNode): Promise<string> {
  return psqlLocal(bin, n.pg as PgDirs, "SELECT md5(string_agg(id || '|' || message || '|' || created_at, ',' ORDER BY id)) FROM pibake_demo", 'pibake');
}

async function countRows(n: ClusterNode): Promise<number> {
  return Number(await psqlLocal(bin, n.pg as PgDirs, 'SELECT count(*) FROM pibake_demo', 'pibake'));
}

function wrk(seconds: number): Promise<WrkResult> {
  return lab.run('client', 'wrk', ['-t2', '-c16', `-d${seconds}s`, '--timeout', '10s', '--latency',
    '-s', path.join(here, 'count-nodes.lua'), 'http://10.0.0.10/'], { timeout: (seconds + 30) * 1000 })
    .then((r) => parseWrk(r.stdout));
}

function wrkFigures(scenario: string, r: WrkResult): void {
  const errors = r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
  figure(scenario, 'requests (wrk -t2 -c16)', `${r.requests} in ${r.seconds.toFixed(1)} s`);
  figure(scenario, 'requests/s', r.requestsPerSecond);
  figure(scenario, 'latency p50 / p99 (ms)', `${r.latencyP50Ms ?? '?'} / ${r.latencyP99Ms ?? '?'}`);
  figure(scenario, 'non-2xx / socket errors', `${r.non2xx} / ${errors}`);
  figure(scenario, 'served by', Object.entries(r.byNode).sort().map(([k, v]) => `${k} ${v}`).join(', '));
}

describe('the shipped cluster in network namespaces', () => {
  beforeAll(async () => {
    if (!isRoot) throw new Error('the cluster test needs root (network namespaces, runuser): run `sudo npm run test:cluster`');
    for (const tool of ['ip', 'haproxy', 'nginx', 'wrk', 'curl', 'setpriv', 'runuser', 'debugfs', 'sfdisk']) {
      const found = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
      if (found.exitCode !== 0) throw new Error(`${tool} is missing (scripts/install-debian-deps.sh installs it)`);
    }
    tmp = await mkdtemp(path.join(tmpdir(), 'pibake-cluster-'));
    await chmod(tmp, 0o755); // postgres, nobody and www-data read their files below
    const scratch = tmp;
    if (!KEEP) registerCleanup(() => rmSync(scratch, { recursive: true, force: true })); // when interrupted
    pgAccount = await account('postgres');

    // Build the shipped cluster.yaml (its own secrets are created beside the copy).
    const t0 = Date.now();
    await copyFile(path.join(repo, 'cluster.yaml'), path.join(tmp, 'cluster.yaml'));
    const base = path.join(tmp, 'base.img');
    // Bookworm layout: its PostgreSQL is 15, HAProxy 2.6, nginx 1.22 — the versions of this machine.
    await synthesizeRaspiosImage({ path: base, generation: 'bookworm', sizeMiB: 400, bootMiB: 64 });
    await execa('node', [path.join(repo, 'bin/pibake.js'), 'build', '--config', path.join(tmp, 'cluster.yaml'), '--base', base,
      '--out', path.join(tmp, 'out'), '--cache-dir', path.join(tmp, 'cache'), '--jobs', '2', '--packages', 'online'], { timeout: 240_000 });
    await rm(base);
    figure('0 build', 'pibake build of 4 images (400 MiB base)', `${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const outDir = path.join(tmp, 'out', 'pistack');
    const manifest = JSON.parse(await readFile(path.join(outDir, 'manifest.json'), 'utf8')) as {
      nodes: Record<string, { role: string; ip: string }>;
    };
    for (const [name, spec] of Object.entries(manifest.nodes)) {
      const dir = path.join(tmp, name);
      const n: ClusterNode = { name, role: spec.role, ip: spec.ip, image: path.join(outDir, `${name}.img`), root: path.join(dir, 'root'), dir, daemons: {} };
      await extractFromImage(n.image, n.root);
      await rm(n.image); // the files are out; keep the disk use small
      nodes.set(name, n);
    }
    expect([...nodes.values()].map((n) => `${n.name} ${n.role} ${n.ip}`).sort()).toEqual([
      'lb1 lb 10.0.0.10', 'web1 primary 10.0.0.11', 'web2 replica 10.0.0.12', 'web3 replica 10.0.0.13',
    ]);
    lb = node('lb1');
    primary = node('web1');
    replicas = [node('web2'), node('web3')];
    webs = [primary, ...replicas];

    const version = /^rendered_version='(\d+)'$/m.exec(await readFile(path.join(primary.root, 'usr/local/lib/pibake/postgresql-setup.sh'), 'utf8'))?.[1];
    bin = `/usr/lib/postgresql/${version}/bin`;
    await execa('test', ['-x', path.join(bin, 'postgres')]).catch(() => {
      throw new Error(`${bin}/postgres is missing: the image's PostgreSQL version must be installed here (apt-get install postgresql)`);
    });

    await sweepStale(NS_PREFIX);
    lab = await NetnsLab.create(NS_PREFIX);
    for (const n of nodes.values()) await lab.addNode(n.name, n.ip);
    await lab.addNode('client', CLIENT_IP);
    daemons = new Daemons(lab, tmp);
  }, 300_000);

  afterAll(async () => {
    try {
      if (daemons) await daemons.stopAll();
    } finally {
      if (lab) await lab.destroy();
      if (tmp && !KEEP) await rm(tmp, { recursive: true, force: true });
    }
    figure('total', 'wall time of the file', `${((Date.now() - started) / 1000).toFixed(1)} s`);
    const width = [0, 1, 2].map((i) => Math.max(...figures.map((f) => (f[i] ?? '').length)));
    const line = (f: string[]) => `| ${f.map((c, i) => c.padEnd(width[i] as number)).join(' | ')} |`;
    console.log(['', 'pibake cluster test figures', line(['scenario', 'metric', 'value']),
      `|${width.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...figures.map(line), KEEP ? `kept: ${tmp}` : ''].join('\n'));
  }, 60_000);

  it('the node namespaces reach each other on the segment and have no route anywhere else', async () => {
    for (const name of [...nodes.keys(), 'client']) {
      const routes = await lab.routes(name);
      expect(routes.every((r) => r.startsWith('10.0.0.0/24 ')), `${name}: ${routes.join('; ')}`).toBe(true);
    }
    await lab.run('client', 'ping', ['-c1', '-W2', '10.0.0.13']).catch(async () => {
      // ping may be missing: a TCP connect refused also proves layer 2/3 connectivity.
      const r = await lab.run('client', 'curl', ['-s', '-o', '/dev/null', '--connect-timeout', '2', 'http://10.0.0.13:9/'], { reject: false });
      expect(r.exitCode).toBe(7); // "failed to connect": refused, i.e. the host answered
    });
    const outside = await lab.run('client', 'curl', ['-s', '--connect-timeout', '2', 'http://1.1.1.1/'], { reject: false });
    expect(outside.exitCode).not.toBe(0);
  });

  it('1. bring-up: primary, replicas cloned by their own bootstrap script, nginx + app on every web node, HAProxy sees all UP', async () => {
    const t0 = Date.now();
    // First boot hands files over to the users the packages create, from each image's own list.
    for (const n of nodes.values()) {
      const list = (await readFile(path.join(n.root, 'etc/pibake/ownership.list'), 'utf8')).split('\n')
        .filter((l) => l.trim() && !l.startsWith('#')).map((l) => `${n.root}${l}`);
      const file = path.join(n.dir, 'ownership.list');
      await writeFile(file, `${list.join('\n')}\n`);
      const applied = await execa(path.join(n.root, 'usr/local/lib/pibake/apply-ownership.sh'), [file], { reject: false, all: true });
      expect(applied.exitCode, applied.all).toBe(0);
    }
    // PostgreSQL as the package leaves it, then pibake-postgresql-setup with the image's files.
    await Promise.all(webs.map(async (n) => {
      n.pg = { conf: path.join(n.dir, 'pg/conf'), data: path.join(n.dir, 'pg/data'), sock: path.join(n.dir, 'pg/sock') };
      await debianCluster(bin, n.pg, pgAccount);
      const setup = await runScript(n, 'postgresql-setup.sh', {
        PIBAKE_PG_CONFDIR: n.pg.conf, PIBAKE_PG_SOURCE: path.join(n.root, 'etc/pibake/postgresql'), PIBAKE_PG_RESTART: 'echo PIBAKE-TEST-RESTART',
      });
      expect(setup.exitCode, setup.all).toBe(0);
      expect(setup.all).toContain('PIBAKE-TEST-RESTART');
      expect(await readFile(path.join(n.pg.conf, 'conf.d/50-pibake.conf'), 'utf8'))
        .toBe(await readFile(path.join(n.root, 'etc/pibake/postgresql/pibake.conf'), 'utf8'));
      startPostgres(n);
      await waitPostgres(n);
    }));
    figure('1 bring-up', 'initdb + setup + start of 3 PostgreSQL', `${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const setup = await runScript(primary, 'primary-setup.sh', {
      PIBAKE_PG_HOST: (primary.pg as PgDirs).sock, PIBAKE_PRIMARY_SQL: path.join(primary.root, 'etc/pibake/postgresql/primary-setup.sql'), PIBAKE_WAIT_SECONDS: '60',
    });
    expect(setup.exitCode, setup.all).toBe(0);
    expect(await countRows(primary)).toBe(1);

    // The app logs in at start: on the primary now, on a replica once it is a clone (on a node,
    // systemd restarts it until then).
    await startApp(primary);
    await startNginx(primary);

    // The replicas clone the primary over the segment with their own script (as at first boot).
    const t1 = Date.now();
    const results = await Promise.all(replicas.map(async (n) => {
      const pg = n.pg as PgDirs;
      const pgCtl = (cmd: string) => `runuser -u postgres -- ${bin}/pg_ctl ${cmd} -D ${pg.data}`;
      const result = await runScript(n, 'replica-bootstrap.sh', {
        PIBAKE_PG_DATADIR: pg.data,
        PIBAKE_PGPASS: path.join(n.root, 'etc/pibake/postgresql/replication.pgpass'),
        PIBAKE_MARKER: path.join(n.dir, 'replica-bootstrapped'),
        PIBAKE_PG_STOP: `[ ! -f ${pg.data}/postmaster.pid ] || ${pgCtl('stop -m fast -w -t 30')}`,
        PIBAKE_PG_START: 'echo PIBAKE-TEST-START',
        PIBAKE_WAIT_SECONDS: '120', PIBAKE_MAX_BACKOFF: '2',
      });
      return { n, result, ms: Date.now() - t1 };
    }));
    for (const { n, result, ms } of results) {
      expect(result.exitCode, result.all).toBe(0);
      expect(result.all).toContain('PIBAKE-TEST-START');
      figure('1 bring-up', `${n.name}: replica-bootstrap.sh (pg_basebackup over the segment)`, `${(ms / 1000).toFixed(1)} s`);
      startPostgres(n); // the start the script asked for
    }
    for (const n of replicas) {
      await waitPostgres(n);
      expect(await psqlLocal(bin, n.pg as PgDirs, 'SELECT pg_is_in_recovery()')).toBe('t');
    }
    await waitFor('both replicas streaming', 30_000, async () => {
      const names = await psqlLocal(bin, primary.pg as PgDirs,
        "SELECT string_agg(application_name || ':' || state, ',' ORDER BY application_name) FROM pg_stat_replication");
      return names === 'web2:streaming,web3:streaming' ? names : undefined;
    });
    expect(await psqlLocal(bin, primary.pg as PgDirs, 'SELECT string_agg(slot_name, \',\' ORDER BY slot_name) FROM pg_replication_slots WHERE active'))
      .toBe('web2,web3');
    for (const n of replicas) {
      await startApp(n);
      await startNginx(n);
    }

    // HAProxy with the image's haproxy.cfg, host paths moved under the test folder.
    const hdir = path.join(lb.dir, 'haproxy');
    await mkdir(path.join(hdir, 'chroot'), { recursive: true });
    const rendered = await readFile(path.join(lb.root, 'etc/haproxy/haproxy.cfg'), 'utf8');
    const adapted = adaptHaproxyConfig(rendered, hdir);
    expect(differingLines(rendered, adapted.text)).toEqual(adapted.changed);
    const changedText = adapted.changed.map((i) => rendered.split('\n')[i - 1]?.trim().split(/\s+/).slice(0, 2).join(' '));
    expect(changedText).toEqual(['log /dev/log', 'log /dev/log', 'chroot /var/lib/haproxy', 'stats socket']);
    const cfg = path.join(hdir, 'haproxy.cfg');
    await writeFile(cfg, adapted.text, { mode: 0o600 });
    statsSocket = path.join(hdir, 'admin.sock');
    await lab.run('lb1', 'haproxy', ['-c', '-q', '-f', cfg]);
    lb.daemons.haproxy = daemons.start('lb1', 'haproxy', 'haproxy', ['-db', '-f', cfg]);
    await waitFor('HAProxy stats socket', 20_000, async () => ((await stats()).length > 0 ? true : undefined));
    const t2 = Date.now();
    for (const n of webs) await waitStatus('web', n.name, 'UP', 60_000);
    await waitStatus('postgresql-write', 'web1', 'UP', 30_000);
    for (const n of replicas) await waitStatus('postgresql-read', n.name, 'UP', 30_000);
    figure('1 bring-up', 'HAProxy start → all servers UP', `${((Date.now() - t2) / 1000).toFixed(1)} s`);
    figure('1 bring-up', 'whole bring-up (after build)', `${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // The stats page answers with the password baked into lb1's haproxy.cfg, and only with it.
    const auth = /^\s*stats auth (\S+)$/m.exec(rendered)?.[1];
    expect(auth).toMatch(/^admin:.{16,}$/);
    const page = (withAuth: boolean) => lab.run('client', 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-K', '-', 'http://10.0.0.10:8404/;csv'], {
      input: withAuth ? `user = "${auth}"\n` : '\n',
    });
    expect((await page(true)).stdout).toBe('200');
    expect((await page(false)).stdout).toBe('401');

    // Each web node's page through the load balancer names it.
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await lab.run('client', 'curl', ['-s', '--max-time', '10', 'http://10.0.0.10/']);
      seen.add(/<title>pistack: (\w+)<\/title>/.exec(r.stdout)?.[1] ?? r.stdout.slice(0, 80));
    }
    expect([...seen].sort()).toEqual(['web1', 'web2', 'web3']);
  }, 240_000);

  it('2. steady HTTP load through the load balancer reaches every web node without errors', async () => {
    const before = await stats();
    const load = wrk(10);
    // What HAProxy's checks meet meanwhile: /healthz of each web node from lb1, one after the other.
    const healthz = await Promise.all(webs.map((n) => lab.run('lb1', '/usr/bin/python3',
      [path.join(here, 'http-probe.py'), `http://${n.ip}/healthz`, '8', '5'], { timeout: 40_000 })));
    const r = await load;
    const after = await stats();
    wrkFigures('2 steady load', r);
    const durations = healthz.flatMap((h) => h.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as [number, number, string, number]));
    expect(durations.every(([, status]) => status === 200)).toBe(true);
    const ms = durations.map((d) => d[3]).sort((a, b) => a - b);
    const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))];
    figure('2 steady load', `/healthz from lb1 under load (${ms.length} checks): p50 / p99 / max (ms)`, `${at(0.5)} / ${at(0.99)} / ${ms[ms.length - 1]}`);
    for (const n of webs) {
      const delta = Number(serverRow(after, 'web', n.name).stot) - Number(serverRow(before, 'web', n.name).stot);
      figure('2 steady load', `HAProxy sessions to ${n.name}`, delta);
      expect(delta).toBeGreaterThan(0);
      expect(r.byNode[n.name] ?? 0).toBeGreaterThan(0);
    }
    expect(r.requests).toBeGreaterThan(0);
    const errors = Object.values(r.socketErrors).reduce((a, b) => a + b, 0);
    expect(r.non2xx + errors).toBe(0);
    expect(Object.values(r.byNode).reduce((a, b) => a + b, 0)).toBe(r.requests);
  }, 90_000);

  it('3. web2 killed under load: HAProxy marks it DOWN and requests keep succeeding', async () => {
    const web2 = node('web2');
    const seconds = 12;
    const before = serverRow(await stats(), 'web', 'BACKEND');
    const load = wrk(seconds);
    const probe = lab.run('client', '/usr/bin/python3', [path.join(here, 'http-probe.py'), 'http://10.0.0.10/', String(seconds), '5'], { timeout: (seconds + 30) * 1000 });
    await sleep(4_000);
    const killedAt = Date.now();
    await Promise.all([daemons.stop(web2.daemons.nginx as Daemon, 'SIGKILL'), daemons.stop(web2.daemons.app as Daemon, 'SIGKILL')]);
    const downMs = await waitStatus('web', 'web2', 'DOWN', 15_000);
    const downAt = killedAt + downMs;
    const r = await load;
    const records = (await probe).stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as [number, number, string]);
    wrkFigures('3 web2 killed', r);
    figure('3 web2 killed', 'kill → HAProxy marks web2 DOWN', `${downMs} ms`);
    const after = serverRow(await stats(), 'web', 'BACKEND');
    const delta = (field: string) => Number(after[field]) - Number(before[field]);
    figure('3 web2 killed', 'HAProxy backend web: retries / redispatches / conn errors / resp errors',
      ['wretr', 'wredis', 'econ', 'eresp'].map(delta).join(' / '));
    const failed = (from: number, to: number) => records.filter(([t, s]) => t >= from && t < to && s !== 200).length;
    const total = (from: number, to: number) => records.filter(([t]) => t >= from && t < to).length;
    figure('3 web2 killed', 'probe (1 client, new connection each): failed/total before kill',
      `${failed(0, killedAt)}/${total(0, killedAt)}`);
    figure('3 web2 killed', 'probe: failed/total between kill and DOWN', `${failed(killedAt, downAt)}/${total(killedAt, downAt)}`);
    figure('3 web2 killed', 'probe: failed/total after DOWN', `${failed(downAt, Infinity)}/${total(downAt, Infinity)}`);
    const perSecond = new Map<number, [number, number]>();
    for (const [t, s] of records) {
      const second = Math.floor((t - killedAt) / 1000);
      const [f, n] = perSecond.get(second) ?? [0, 0];
      perSecond.set(second, [f + (s === 200 ? 0 : 1), n + 1]);
    }
    figure('3 web2 killed', 'probe failures per second (s from kill: failed/total)',
      [...perSecond.entries()].sort((a, b) => a[0] - b[0]).map(([s, [f, n]]) => `${s}:${f}/${n}`).join(' '));
    const servedAfter = records.filter(([t, s, who]) => t > downAt && s === 200 && who === 'web2').length;
    expect(servedAfter).toBe(0);
    expect(records.filter(([t, s]) => t > downAt && s === 200).length).toBeGreaterThan(0);
    // Retries + redispatch hide the dead server: at most a handful of failures out of thousands.
    const errors = Object.values(r.socketErrors).reduce((a, b) => a + b, 0);
    expect(r.non2xx + errors).toBeLessThanOrEqual(Math.max(5, r.requests * 0.005));
    expect(failed(0, Infinity)).toBeLessThanOrEqual(2);

    // Bring web2's web server back: HAProxy takes it in again (rise 2).
    const t0 = Date.now();
    await startApp(web2);
    await startNginx(web2);
    await waitStatus('web', 'web2', 'UP', 30_000);
    await waitStatus('postgresql-read', 'web2', 'UP', 30_000);
    figure('3 web2 killed', 'web2 restarted → UP again', `${Date.now() - t0} ms`);
  }, 120_000);

  it('4. replica web3 killed and restarted: it catches up and no row written meanwhile is lost', async () => {
    const web3 = node('web3');
    // The application role the primary's first boot created, with its password from the
    // cluster's secrets file (the operator's way in through the write port).
    const secrets = load(await readFile(path.join(tmp, 'cluster.secrets.yaml'), 'utf8')) as { secrets: Record<string, string> };
    writer = { user: 'pibake_app', password: secrets.secrets.app_db_password as string };

    await daemons.signalLeader(web3.daemons.postgres as Daemon, 'SIGQUIT'); // immediate shutdown: a crash
    const downMs = await waitStatus('postgresql-read', 'web3', 'DOWN', 15_000);
    figure('4 replica killed', 'web3 postgres killed → HAProxy read port marks it DOWN', `${downMs} ms`);
    await waitStatus('web', 'web3', 'DOWN', 15_000); // its /healthz needs its database

    const batches = 50;
    const perBatch = 200;
    const t0 = Date.now();
    const inserted = await clientPsql(['-d', WRITE_DSN], {}, Array.from({ length: batches }, (_, b) =>
      `INSERT INTO pibake_demo (message) SELECT 'while web3 was down: batch ${b} row ' || i FROM generate_series(1, ${perBatch}) i;`).join('\n') + '\n');
    expect(inserted.exitCode).toBe(0);
    figure('4 replica killed', `rows written through 10.0.0.10:5000 while web3 down`, `${batches * perBatch} in ${batches} transactions, ${Date.now() - t0} ms`);
    const expected = await countRows(primary);
    expect(expected).toBe(1 + batches * perBatch);
    expect(await psqlLocal(bin, primary.pg as PgDirs, "SELECT active FROM pg_replication_slots WHERE slot_name = 'web3'")).toBe('f');
    const retained = await psqlLocal(bin, primary.pg as PgDirs,
      "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM pg_replication_slots WHERE slot_name = 'web3'");
    figure('4 replica killed', 'WAL held for web3 by its slot', `${Math.round(Number(retained) / 1024)} KiB`);

    const t1 = Date.now();
    startPostgres(web3);
    await waitPostgres(web3);
    const readyMs = Date.now() - t1;
    await waitFor('web3 to catch up', 60_000, async () => ((await countRows(web3)) === expected ? true : undefined), 50);
    const catchUpMs = Date.now() - t1;
    figure('4 replica killed', 'web3 restart → accepting connections', `${readyMs} ms`);
    figure('4 replica killed', 'web3 restart → all rows replayed (catch-up)', `${catchUpMs} ms`);
    const counts = await Promise.all(webs.map(countRows));
    figure('4 replica killed', 'rows on web1 / web2 / web3', counts.join(' / '));
    expect(counts).toEqual([expected, expected, expected]);
    const digests = await Promise.all(webs.map(rowsDigest));
    expect(new Set(digests).size).toBe(1);
    expect(await psqlLocal(bin, web3.pg as PgDirs, 'SELECT pg_is_in_recovery()')).toBe('t');
    const back = Date.now();
    await waitStatus('postgresql-read', 'web3', 'UP', 30_000);
    await waitStatus('web', 'web3', 'UP', 30_000);
    figure('4 replica killed', 'web3 caught up → UP again in HAProxy', `${Date.now() - back} ms`);
  }, 150_000);

  it('5. a row written through the write port is visible on every replica; replication lag', async () => {
    // The demo page's form through the load balancer: whichever node takes it writes on the primary.
    const posted = await lab.run('client', 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10',
      '--data-urlencode', `message=posted through lb1 by ${process.pid}`, 'http://10.0.0.10/']);
    expect(posted.stdout).toBe('303');
    for (const n of webs) {
      await waitFor(`the posted row on ${n.name}`, 10_000, async () => ((await psqlLocal(bin, n.pg as PgDirs,
        `SELECT count(*) FROM pibake_demo WHERE message = 'posted through lb1 by ${process.pid}'`, 'pibake')) === '1' ? true : undefined));
    }
    const rounds = 10;
    const lags: Record<string, number[]> = { web2: [], web3: [] };
    for (let round = 0; round < rounds; round++) {
      const marker = `lag probe ${process.pid}-${round}`;
      // Each replica waits in one session (a fresh snapshot per check) and reports when it saw the row.
      const waiters = replicas.map((n) => execa('runuser', ['-u', 'postgres', '--', path.join(bin, 'psql'), '-X', '-A', '-t', '-q',
        '-v', 'ON_ERROR_STOP=1', '-h', (n.pg as PgDirs).sock, '-d', 'pibake',
        '-c', 'SET statement_timeout = \'20s\'',
        '-c', `DO $$ BEGIN WHILE NOT EXISTS (SELECT FROM pibake_demo WHERE message = '${marker}') LOOP PERFORM pg_sleep(0.001); END LOOP; END $$`,
        '-c', 'SELECT extract(epoch FROM clock_timestamp())'], { timeout: 30_000 }));
      await sleep(150); // the waiters are in their loop
      // The primary's clock just before the commit: seen − this is the lag plus the commit itself.
      const wrote = await clientPsql(['-d', WRITE_DSN, '-c',
        `INSERT INTO pibake_demo (message) VALUES ('${marker}') RETURNING extract(epoch FROM clock_timestamp())`]);
      const committed = Number(wrote.stdout.trim());
      const seen = await Promise.all(waiters);
      replicas.forEach((n, i) => lags[n.name]?.push((Number(seen[i]?.stdout.trim()) - committed) * 1000));
    }
    const replication = await psqlLocal(bin, primary.pg as PgDirs,
      "SELECT string_agg(application_name || ' ' || coalesce(replay_lag::text, 'null'), ', ' ORDER BY application_name) FROM pg_stat_replication");
    const stat = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return `median ${(s[Math.floor(s.length / 2)] as number).toFixed(1)} ms, max ${(s[s.length - 1] as number).toFixed(1)} ms`;
    };
    for (const n of replicas) figure('5 replication', `${n.name}: INSERT on web1 → visible (${rounds} rows)`, stat(lags[n.name] as number[]));
    figure('5 replication', 'pg_stat_replication replay_lag on web1', replication);
    for (const n of replicas) {
      expect(lags[n.name]).toHaveLength(rounds);
      // Same clock: a row is seen after its commit, which is after the RETURNING clock read.
      for (const lag of lags[n.name] as number[]) expect(lag).toBeGreaterThan(0);
      for (const lag of lags[n.name] as number[]) expect(lag).toBeLessThan(10_000);
    }
    const counts = await Promise.all(webs.map(countRows));
    expect(new Set(counts).size).toBe(1);
    expect(new Set(await Promise.all(webs.map(rowsDigest))).size).toBe(1);
    figure('5 replication', 'rows on web1 / web2 / web3 at the end (same digest)', counts.join(' / '));

    // The read port spreads sessions over the standbys (leastconn), never the primary while they are up.
    const servedBy = new Map<string, number>();
    for (let i = 0; i < 6; i++) {
      const r = await clientPsql(['-d', WRITE_DSN.replace('port=5000', 'port=5001'), '-c', 'SELECT host(inet_server_addr()) || \' \' || pg_is_in_recovery()']);
      servedBy.set(r.stdout.trim(), (servedBy.get(r.stdout.trim()) ?? 0) + 1);
    }
    figure('5 replication', 'sessions on 10.0.0.10:5001 (read port)', [...servedBy].sort().map(([k, v]) => `${k}: ${v}`).join(', '));
    expect([...servedBy.keys()].sort()).toEqual(['10.0.0.12 true', '10.0.0.13 true']);
  }, 120_000);
});
