/**
 * `pibake status` against the shipped cluster running in network namespaces: the four images
 * built by `pibake build`, each node's daemons run from the files of its own image (as in
 * cluster.test.ts), and on every node an sshd with the node's baked host key and the admin key
 * from its image (node-login.ts). `pibake status` runs in a client namespace on the same segment,
 * as it would on the operator's laptop, with the build's known_hosts and admin key.
 *
 * Scenarios: all healthy; a web node's web server down; a replica stopped; a stale card (web2
 * rebuilt after a change); --watch; a node unreachable (powered off); the load balancer down.
 * Each time the exit code, the verdict's findings and the node lines are checked, and the
 * --json report is validated against schema/status.schema.json.
 *
 * Run with `npm run test:status` as root (network and mount namespaces). Figures go to the console.
 */
import { readFileSync, rmSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthesizeRaspiosImage } from '../../builder/image/synthesize.ts';
import type { StatusReport } from '../../builder/status/types.ts';
import { NetnsLab, registerCleanup, sweepStale } from '../helpers/netns.ts';
import { credentialsFolder } from '../helpers/roles.ts';
import {
  Daemons, account, adaptHaproxyConfig, debianCluster, extractFromImage, psqlLocal, resolveInRoot, serverRow, showStat, waitFor,
  type Daemon, type PgDirs,
} from './harness.ts';
import { startNodeLogin, unitState, waitListening, type NodeLogin } from './node-login.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const isRoot = process.getuid?.() === 0;
const CLIENT_IP = '10.0.0.250'; // the operator's laptop, on the cluster's segment
const NS_PREFIX = 'pibakest';
const KEEP = process.env.PIBAKE_STATUS_KEEP === '1';
const TIMEOUT = 20; // --timeout: generous, the probes share two loaded cores here; a dead node still costs the 5 s connect timeout

interface Node {
  name: string;
  role: string;
  ip: string;
  root: string;
  dir: string;
  pg?: PgDirs;
  daemons: Record<string, Daemon>;
  login?: NodeLogin;
}

let tmp: string;
let lab: NetnsLab;
let daemons: Daemons;
let bin: string;
let base: string;
let statsSocket: string;
const nodes = new Map<string, Node>();
const figures: [string, string][] = [];
const started = Date.now();
const validate = new Ajv2020({ strict: true, allErrors: true }).addFormat('date-time', true)
  .compile(JSON.parse(readFileSync(path.join(repo, 'schema/status.schema.json'), 'utf8')) as object);

function node(name: string): Node {
  const n = nodes.get(name);
  if (!n) throw new Error(`no node ${name}`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// The cluster's daemons, each recorded as its unit for the stand-in systemctl

async function record(n: Node, unit: string, what: string, daemon: Daemon): Promise<Daemon> {
  n.daemons[what] = daemon;
  await unitState({ dir: path.join(n.dir, 'login') }, unit, { pid: daemon.pid });
  return daemon;
}

async function unit(n: Node, name: string, state: 'done' | 'stopped'): Promise<void> {
  await unitState({ dir: path.join(n.dir, 'login') }, name, state);
}

async function runScript(n: Node, script: string, env: Record<string, string>) {
  const r = await lab.run(n.name, path.join(n.root, 'usr/local/lib/pibake', script), [], { env, reject: false, timeout: 120_000 });
  expect(r.exitCode, r.all).toBe(0);
}

async function startPostgres(n: Node): Promise<void> {
  const pg = n.pg as PgDirs;
  await record(n, 'postgresql.service', 'postgres', daemons.start(n.name, 'postgres', 'setpriv',
    ['--reuid=postgres', '--regid=postgres', '--init-groups', path.join(bin, 'postgres'), '-D', pg.conf]));
  await waitFor(`PostgreSQL on ${n.name}`, 60_000, async () => {
    const r = await lab.run(n.name, path.join(bin, 'pg_isready'), ['-q', '-h', n.ip, '-p', '5432'], { reject: false });
    return r.exitCode === 0 ? true : undefined;
  }, 200);
}

async function startWeb(n: Node): Promise<void> {
  const cred = path.join(n.dir, 'credentials');
  if (!(await stat(cred).catch(() => undefined))) {
    const users = ['pibake_web', 'pibake_app'];
    const files = Object.fromEntries(await Promise.all(users.map(async (u) => [u, await readFile(path.join(n.root, `etc/pibake/web/${u}.password`), 'utf8')])));
    await credentialsFolder(cred, files, await account('nobody'), 'acl');
  }
  const sock = (n.pg as PgDirs).sock;
  await record(n, 'pibake-webapp.service', 'app', daemons.start(n.name, 'app', 'setpriv',
    ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '/usr/bin/python3', path.join(n.root, 'usr/local/lib/pibake/webapp.py')], {
      PIBAKE_WEB_CONFIG: path.join(n.root, 'etc/pibake/web/app.json'), CREDENTIALS_DIRECTORY: cred, PIBAKE_LOCAL_HOST: sock, PIBAKE_READ_HOST: sock,
    }));
  const dir = path.join(n.dir, 'nginx');
  const site = await resolveInRoot(n.root, '/etc/nginx/sites-enabled/pibake');
  const www = await account('www-data');
  await mkdir(path.join(dir, 'tmp'), { recursive: true });
  await execa('chown', ['-R', `${www.uid}:${www.gid}`, dir]);
  const conf = path.join(dir, 'nginx.conf');
  await writeFile(conf, [
    'user www-data;', 'worker_processes 1;', `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log;`, 'events { worker_connections 256; }',
    'http {', '  include /etc/nginx/mime.types;', '  access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/tmp/${t};`), `  include ${site};`, '}', '',
  ].join('\n'));
  await record(n, 'nginx.service', 'nginx', daemons.start(n.name, 'nginx', 'nginx', ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;']));
}

async function waitServer(proxy: string, server: string, status: 'UP' | 'DOWN'): Promise<void> {
  await waitFor(`${proxy}/${server} ${status}`, 30_000, async () =>
    (serverRow(await showStat(statsSocket), proxy, server).status === status ? true : undefined), 100);
}

async function bringUp(): Promise<void> {
  const lb = node('lb1');
  const primary = node('web1');
  const replicas = [node('web2'), node('web3')];
  const webs = [primary, ...replicas];
  for (const n of nodes.values()) {
    const list = (await readFile(path.join(n.root, 'etc/pibake/ownership.list'), 'utf8')).split('\n')
      .filter((l) => l.trim() && !l.startsWith('#')).map((l) => `${n.root}${l}`);
    await writeFile(path.join(n.dir, 'ownership.list'), `${list.join('\n')}\n`);
    await execa(path.join(n.root, 'usr/local/lib/pibake/apply-ownership.sh'), [path.join(n.dir, 'ownership.list')]);
    await unit(n, 'pibake-ownership.service', 'done');
  }
  const pgAccount = await account('postgres');
  await Promise.all(webs.map(async (n) => {
    n.pg = { conf: path.join(n.dir, 'pg/conf'), data: path.join(n.dir, 'pg/data'), sock: path.join(n.dir, 'pg/sock') };
    await debianCluster(bin, n.pg, pgAccount);
    await runScript(n, 'postgresql-setup.sh', {
      PIBAKE_PG_CONFDIR: n.pg.conf, PIBAKE_PG_SOURCE: path.join(n.root, 'etc/pibake/postgresql'), PIBAKE_PG_RESTART: 'true',
    });
    await unit(n, 'pibake-postgresql-setup.service', 'done');
    await unit(n, 'pibake-web-setup.service', 'stopped'); // Debian's default site does not exist here
  }));
  await startPostgres(primary);
  await runScript(primary, 'primary-setup.sh', {
    PIBAKE_PG_HOST: (primary.pg as PgDirs).sock, PIBAKE_PRIMARY_SQL: path.join(primary.root, 'etc/pibake/postgresql/primary-setup.sql'), PIBAKE_WAIT_SECONDS: '60',
  });
  await unit(primary, 'pibake-primary-setup.service', 'done');
  await startWeb(primary);
  await Promise.all(replicas.map(async (n) => {
    const pg = n.pg as PgDirs;
    await runScript(n, 'replica-bootstrap.sh', {
      PIBAKE_PG_DATADIR: pg.data, PIBAKE_PGPASS: path.join(n.root, 'etc/pibake/postgresql/replication.pgpass'),
      PIBAKE_MARKER: path.join(n.dir, 'replica-bootstrapped'), PIBAKE_PG_STOP: 'true', PIBAKE_PG_START: 'true',
      PIBAKE_WAIT_SECONDS: '120', PIBAKE_MAX_BACKOFF: '2',
    });
    await unit(n, 'pibake-replica-bootstrap.service', 'done');
    await startPostgres(n);
  }));
  await waitFor('both replicas streaming', 30_000, async () => ((await psqlLocal(bin, primary.pg as PgDirs,
    "SELECT string_agg(application_name || ':' || state, ',' ORDER BY application_name) FROM pg_stat_replication")) === 'web2:streaming,web3:streaming' ? true : undefined));
  for (const n of replicas) await startWeb(n);

  const hdir = path.join(lb.dir, 'haproxy');
  await mkdir(path.join(hdir, 'chroot'), { recursive: true });
  const cfg = path.join(hdir, 'haproxy.cfg');
  await writeFile(cfg, adaptHaproxyConfig(await readFile(path.join(lb.root, 'etc/haproxy/haproxy.cfg'), 'utf8'), hdir).text, { mode: 0o600 });
  statsSocket = path.join(hdir, 'admin.sock');
  await record(lb, 'haproxy.service', 'haproxy', daemons.start('lb1', 'haproxy', 'haproxy', ['-db', '-f', cfg]));
  await waitFor('HAProxy stats socket', 20_000, async () => ((await showStat(statsSocket)).length > 0 ? true : undefined));
  for (const n of webs) await waitServer('web', n.name, 'UP');
  await waitServer('postgresql-write', 'web1', 'UP');
  for (const n of replicas) await waitServer('postgresql-read', n.name, 'UP');
}

// ---------------------------------------------------------------------------------------------
// pibake status from the client namespace

interface StatusRun {
  exitCode: number;
  report: StatusReport;
  text: string;
  /** Text line of each node. */
  lines: Map<string, string>;
  findings: string[];
  seconds: number;
}

async function pibakeStatus(args: string[], json: boolean, out = path.join(tmp, 'out')) {
  const t0 = Date.now();
  const r = await lab.run('client', process.execPath, [path.join(repo, 'bin/pibake.js'), 'status', '--config', path.join(tmp, 'cluster.yaml'),
    '--out', out, '--timeout', String(TIMEOUT), ...(json ? ['--json'] : []), ...args], { reject: false, timeout: 120_000, env: { NO_COLOR: '1' } });
  return { ...r, seconds: (Date.now() - t0) / 1000 };
}

/** `pibake status` twice: --json (validated against the schema) and the text view. */
async function status(scenario: string, args: string[] = [], out?: string): Promise<StatusRun> {
  const [json, text] = await Promise.all([pibakeStatus(args, true, out), pibakeStatus(args, false, out)]);
  expect(json.stderr, json.stderr).toBe('');
  const report = JSON.parse(json.stdout) as StatusReport;
  expect(validate(report), JSON.stringify(validate.errors)).toBe(true);
  // Two runs at once: each must agree with itself (the cluster may change between them).
  expect(json.exitCode).toBe(report.verdict.exitCode);
  expect(text.stdout).toContain(`(exit ${text.exitCode})`);
  const lines = new Map<string, string>();
  for (const line of text.stdout.split('\n')) {
    const name = line.split(/\s+/)[0] ?? '';
    if (nodes.has(name)) lines.set(name, line);
  }
  figures.push([scenario, `exit ${json.exitCode}, ${report.verdict.state}; pibake status took ${json.seconds.toFixed(1)} s (nodes ${report.nodes.map((n) => `${n.name} ${n.seconds.toFixed(1)} s`).join(', ')})`]);
  console.log(`--- ${scenario}\n${text.stdout}`);
  return { exitCode: json.exitCode, report, text: text.stdout, lines, findings: report.verdict.findings.map((f) => f.message), seconds: json.seconds };
}

/** After a repair: pibake status says healthy within `ms` (checks, restarts and standbys settle). */
async function healthyAgain(scenario: string, ms = 90_000): Promise<void> {
  const t0 = Date.now();
  let last = '';
  await waitFor(`pibake status healthy (${scenario})`, ms, async () => {
    const r = await pibakeStatus([], true);
    last = r.stdout;
    return r.exitCode === 0 ? true : undefined;
  }, 1_000).catch((error: Error) => {
    throw new Error(`${error.message}\n${last}`);
  });
  figures.push([scenario, `healthy again ${((Date.now() - t0) / 1000).toFixed(1)} s after the repair`]);
}

describe('pibake status against the cluster in network namespaces', () => {
  beforeAll(async () => {
    if (!isRoot) throw new Error('the status test needs root (network and mount namespaces): run `sudo npm run test:status`');
    for (const tool of ['ip', 'haproxy', 'nginx', 'curl', 'setpriv', 'runuser', 'unshare', 'debugfs', 'sfdisk', 'ssh', 'sudo', 'cloud-init', '/usr/sbin/sshd']) {
      const found = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
      if (found.exitCode !== 0) throw new Error(`${tool} is missing (scripts/install-debian-deps.sh installs it)`);
    }
    tmp = await mkdtemp(path.join(tmpdir(), 'pibake-status-'));
    await chmod(tmp, 0o755);
    const scratch = tmp;
    if (!KEEP) registerCleanup(() => rmSync(scratch, { recursive: true, force: true }));

    const t0 = Date.now();
    await copyFile(path.join(repo, 'cluster.yaml'), path.join(tmp, 'cluster.yaml'));
    base = path.join(tmp, 'base.img');
    await synthesizeRaspiosImage({ path: base, generation: 'bookworm', sizeMiB: 400, bootMiB: 64 });
    await execa('node', [path.join(repo, 'bin/pibake.js'), 'build', '--config', path.join(tmp, 'cluster.yaml'), '--base', base,
      '--out', path.join(tmp, 'out'), '--cache-dir', path.join(tmp, 'cache'), '--jobs', '2'], { timeout: 240_000 });
    figures.push(['build', `pibake build of 4 images: ${((Date.now() - t0) / 1000).toFixed(1)} s`]);

    const outDir = path.join(tmp, 'out', 'pistack');
    const manifest = JSON.parse(await readFile(path.join(outDir, 'manifest.json'), 'utf8')) as { nodes: Record<string, { role: string; ip: string }> };
    for (const [name, spec] of Object.entries(manifest.nodes)) {
      const dir = path.join(tmp, name);
      const n: Node = { name, role: spec.role, ip: spec.ip, root: path.join(dir, 'root'), dir, daemons: {} };
      await extractFromImage(path.join(outDir, `${name}.img`), n.root,
        ['/etc/pibake', '/etc/ssh', '/etc/sudoers.d', '/usr/local/lib/pibake', '/etc/haproxy', '/etc/nginx']);
      await rm(path.join(outDir, `${name}.img`));
      nodes.set(name, n);
    }
    const version = /^rendered_version='(\d+)'$/m.exec(await readFile(path.join(node('web1').root, 'usr/local/lib/pibake/postgresql-setup.sh'), 'utf8'))?.[1];
    bin = `/usr/lib/postgresql/${version}/bin`;

    await sweepStale(NS_PREFIX);
    lab = await NetnsLab.create(NS_PREFIX);
    for (const n of nodes.values()) await lab.addNode(n.name, n.ip);
    await lab.addNode('client', CLIENT_IP);
    daemons = new Daemons(lab, tmp);

    // Every node's login first (status reads the unit states the bring-up records there).
    for (const n of nodes.values()) {
      const runs: Record<string, string> = {};
      if (n.role === 'lb') runs[path.join(n.dir, 'haproxy')] = 'haproxy';
      else runs[path.join(n.dir, 'pg/sock')] = 'postgresql';
      for (const dir of Object.keys(runs)) await mkdir(dir, { recursive: true });
      n.login = await startNodeLogin({ daemons, node: n.name, ip: n.ip, root: n.root, dir: path.join(n.dir, 'login'), admin: 'pi', runs });
    }
    for (const n of nodes.values()) await waitListening(daemons, n.login as NodeLogin);
    const t1 = Date.now();
    await bringUp();
    figures.push(['bring-up', `${((Date.now() - t1) / 1000).toFixed(1)} s`]);
  }, 300_000);

  afterAll(async () => {
    try {
      if (daemons) await daemons.stopAll();
    } finally {
      if (lab) await lab.destroy();
      if (tmp && !KEEP) await rm(tmp, { recursive: true, force: true });
    }
    figures.push(['total', `wall time of the file: ${((Date.now() - started) / 1000).toFixed(1)} s`]);
    console.log(['', 'pibake status test figures', ...figures.map(([s, v]) => `  ${s}: ${v}`), KEEP ? `kept: ${tmp}` : ''].join('\n'));
  }, 60_000);

  it('all healthy: exit 0, every node current, done, its services active; replication and backends as they are', async () => {
    const r = await status('healthy');
    expect(r.findings).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect(r.report.verdict.state).toBe('healthy');
    expect(r.text).toMatch(/^pistack {2}HEALTHY {2}4 nodes checked in/);
    for (const n of r.report.nodes) {
      expect(n.reachable, n.name).toBe(true);
      expect(n.card.state).toBe('current');
      expect(n.cloudInit?.status).toBe('done');
      expect(n.units.filter((u) => u.kind === 'service').every((u) => u.active === 'active')).toBe(true);
      expect(n.uptimeSeconds).toBeGreaterThan(0);
    }
    const web1 = r.report.nodes.find((n) => n.name === 'web1');
    expect(web1?.postgresql?.role).toBe('primary');
    expect(web1?.postgresql?.replicas.map((l) => `${l.node} ${l.state}`)).toEqual(['web2 streaming', 'web3 streaming']);
    for (const name of ['web2', 'web3']) {
      const n = r.report.nodes.find((x) => x.name === name);
      expect(n?.replication).toMatchObject({ from: 'web1', state: 'streaming', source: 'primary' });
      expect(r.lines.get(name)).toMatch(/ current +done +3\/3 active +standby of web1, timeline 1, streaming, lag \d+(\.\d)? (B|KiB) \/ \d+\.\d s$/);
    }
    expect(r.lines.get('web1')).toMatch(/ current +done +3\/3 active +primary, timeline 1, standbys web2 web3$/);
    expect(r.lines.get('lb1')).toMatch(/ current +done +1\/1 active +web 3\/3; postgresql-write 1\/1; postgresql-read 2\/2$/);
  });

  it('a web node down (web2\'s nginx and app killed): degraded, and says where', async () => {
    const web2 = node('web2');
    await Promise.all([daemons.stop(web2.daemons.nginx as Daemon, 'SIGKILL'), daemons.stop(web2.daemons.app as Daemon, 'SIGKILL')]);
    await waitServer('web', 'web2', 'DOWN');
    await waitServer('postgresql-read', 'web2', 'DOWN');
    const r = await status('web2 web server down');
    expect(r.exitCode).toBe(1);
    expect(r.findings).toEqual([
      'lb1: HAProxy marks web2 DOWN (web, postgresql-read)',
      'web2: nginx.service failed, pibake-webapp.service failed',
    ]);
    expect(r.lines.get('web2')).toMatch(/ nginx failed, pibake-webapp failed +standby of web1/);
    expect(r.lines.get('lb1')).toMatch(/web 2\/3 \(web2 DOWN\); postgresql-write 1\/1; postgresql-read 1\/2 \(web2 DOWN\)$/);
    expect(r.text).toMatch(/^degraded: 2 findings \(exit 1\)$/m);

    await startWeb(web2);
    await waitServer('web', 'web2', 'UP');
    await waitServer('postgresql-read', 'web2', 'UP');
    await healthyAgain('web2 back');
  });

  it('a replica stopped (web3\'s PostgreSQL): degraded; the primary keeps WAL for its slot', async () => {
    const web3 = node('web3');
    await daemons.stop(web3.daemons.postgres as Daemon, 'SIGINT'); // systemctl stop: a fast shutdown
    await unit(web3, 'postgresql.service', 'stopped');
    await waitServer('postgresql-read', 'web3', 'DOWN');
    await waitServer('web', 'web3', 'DOWN'); // its /healthz needs its database
    const r = await status('web3 PostgreSQL stopped');
    expect(r.exitCode).toBe(1);
    expect(r.findings).toHaveLength(4);
    expect(r.findings[0]).toBe('lb1: HAProxy marks web3 DOWN (web, postgresql-read)');
    expect(r.findings[1]).toMatch(/^web1 keeps \d+(\.\d)? (B|KiB|MiB) of WAL for the inactive replication slot web3$/);
    expect(r.findings[2]).toBe('web3: postgresql.service inactive');
    expect(r.findings[3]).toMatch(/^web3: PostgreSQL does not answer \(psql: error: connection to server on socket "\/var\/run\/postgresql\/\.s\.PGSQL\.5432" failed: No such file or directory\)$/);
    expect(r.lines.get('web3')).toMatch(/ postgresql inactive +PostgreSQL not answering$/);
    expect(r.lines.get('web1')).toMatch(/primary, timeline 1, standbys web2; slot web3 inactive \(\d/);

    await startPostgres(web3);
    await waitServer('postgresql-read', 'web3', 'UP');
    await waitServer('web', 'web3', 'UP');
    await waitFor('web3 streaming again', 30_000, async () => ((await psqlLocal(bin, node('web1').pg as PgDirs,
      "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")) === '2' ? true : undefined));
    await healthyAgain('web3 back');
  });

  it('a stale card: web2 rebuilt after a change says "stale card: reflash web2"', async () => {
    // A second output folder, as the next build after an edit of web2 would leave it.
    const config = path.join(tmp, 'cluster.yaml');
    const original = await readFile(config, 'utf8');
    const edited = original.replace(/- \{ name: web2, role: replica, ip: 10\.0\.0\.12 \}/, '- { name: web2, role: replica, ip: 10.0.0.12, mac: "dc:a6:32:00:00:12" }');
    expect(edited).not.toBe(original);
    const out2 = path.join(tmp, 'out2');
    await mkdir(path.join(out2, 'pistack'), { recursive: true });
    for (const f of ['manifest.json', 'known_hosts']) await copyFile(path.join(tmp, 'out/pistack', f), path.join(out2, 'pistack', f));
    await writeFile(config, edited);
    try {
      await execa('node', [path.join(repo, 'bin/pibake.js'), 'build', '--config', config, '--base', base, '--node', 'web2',
        '--out', out2, '--cache-dir', path.join(tmp, 'cache')], { timeout: 120_000 });
      const r = await status('web2 stale', [], out2);
      expect(r.exitCode).toBe(1);
      expect(r.findings).toEqual(['stale card: reflash web2']);
      expect(r.lines.get('web2')).toMatch(/^web2 +replica +\S+( \S+)? +stale +done /);
      const web2 = r.report.nodes.find((n) => n.name === 'web2');
      expect(web2?.card.digest).not.toBe(web2?.card.expected);
    } finally {
      await writeFile(config, original);
    }
  });

  it('--watch keeps one connection per node and reports each round; --node checks only some', async () => {
    const r = await pibakeStatus(['--watch', '--interval', '1', '--count', '3'], true);
    expect(r.exitCode, r.stderr).toBe(0);
    const rounds = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as StatusReport);
    expect(rounds).toHaveLength(3);
    for (const round of rounds) {
      expect(validate(round), JSON.stringify(validate.errors)).toBe(true);
      expect(round.verdict.findings).toEqual([]);
      // Asked in the first round only; carried while the boot is the same.
      expect(round.nodes.map((n) => n.cloudInit)).toEqual(rounds[0]?.nodes.map((n) => n.cloudInit));
    }
    figures.push(['--watch', `rounds of 4 nodes: ${rounds.map((x) => `${x.seconds.toFixed(2)} s`).join(', ')} (the first logs in, the others ride on the kept connection)`]);
    // Its ssh masters are gone with it (each was its child).
    const left = await execa('pgrep', ['-f', 'pibake-ssh-'], { reject: false });
    expect(left.stdout).toBe('');

    const partial = await status('--node web2', ['--node', 'web2']);
    expect(partial.exitCode).toBe(0);
    expect(partial.report.partial).toBe(true);
    expect(partial.report.nodes.map((n) => n.name)).toEqual(['web2']);
    expect(partial.lines.get('web2')).toMatch(/standby of web1, timeline 1, streaming, lag \d+(\.\d)? (B|KiB) \/ \d+\.\d s$/);
    expect(partial.report.nodes[0]?.replication?.source).toBe('standby');
  });

  it('a node unreachable (web3 powered off): degraded, and the check costs at most its timeout', async () => {
    const web3 = node('web3');
    for (const d of Object.values(web3.daemons)) await daemons.stop(d, 'SIGKILL');
    await daemons.stop(web3.login?.sshd as Daemon, 'SIGKILL');
    await lab.run('web3', 'ip', ['link', 'set', 'eth0', 'down']);
    await waitServer('web', 'web3', 'DOWN');
    await waitServer('postgresql-read', 'web3', 'DOWN');
    const r = await status('web3 powered off');
    expect(r.exitCode).toBe(1);
    expect(r.findings).toHaveLength(3);
    expect(r.findings[0]).toBe('lb1: HAProxy marks web3 DOWN (web, postgresql-read)');
    expect(r.findings[1]).toMatch(/^web1 keeps \d+(\.\d)? (B|KiB|MiB) of WAL for the inactive replication slot web3$/);
    expect(r.findings[2]).toMatch(/^web3 is unreachable: (no answer within \d s|no route to host)$/);
    expect(r.lines.get('web3')).toMatch(/^web3 +replica +down +- +- +- +(no answer within \d s|no route to host)$/);
    // A node that does not answer costs the connect timeout (5 s), never the whole --timeout.
    const web3Record = r.report.nodes.find((n) => n.name === 'web3');
    expect(web3Record?.seconds).toBeLessThanOrEqual(6);
    expect(r.seconds).toBeLessThan(TIMEOUT + 15);
  });

  it('the load balancer down (lb1\'s HAProxy killed): down, exit 2', async () => {
    const lb1 = node('lb1');
    await daemons.stop(lb1.daemons.haproxy as Daemon, 'SIGKILL');
    const r = await status('lb1 HAProxy killed');
    expect(r.exitCode).toBe(2);
    expect(r.report.verdict.state).toBe('down');
    // Down first; web3 is still powered off from the scenario before.
    expect(r.findings).toEqual([
      'no load balancer answers (lb1)',
      'lb1: haproxy.service failed',
      expect.stringMatching(/^lb1: HAProxy does not answer on its stats socket \(\/run\/haproxy\/admin\.sock: \[Errno 111\] Connection refused\)$/),
      expect.stringMatching(/^web1 keeps .* of WAL for the inactive replication slot web3$/),
      expect.stringMatching(/^web3 is unreachable: /),
    ]);
    expect(r.report.verdict.findings.filter((f) => f.level === 'down').map((f) => f.message)).toEqual(['no load balancer answers (lb1)']);
    expect(r.lines.get('lb1')).toMatch(/ haproxy failed +HAProxy not answering$/);
    expect(r.text).toMatch(/^down: 5 findings \(exit 2\)$/m);
    expect(r.text).toMatch(/^ {2}DOWN no load balancer answers \(lb1\)$/m);
  });
});
