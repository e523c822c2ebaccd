/**
 * The running cluster of the cluster test: each node's daemons started from the files of its own
 * image (etcd, Patroni with the PostgreSQL it runs, nginx and the demo app, HAProxy, keepalived),
 * and the operations the scenarios need: who is primary, who holds the floating address, kill a
 * node's database, pull its cable, write and count rows. Each daemon runs in its node's network
 * namespace as a child of the test (harness.ts Daemons), except the postmasters, which Patroni
 * starts in a session of their own; those are killed by PID at the end.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { load } from 'js-yaml';
import { expect } from 'vitest';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { NetnsLab, registerCleanup, sweepStale, type RunResult } from '../helpers/netns.ts';
import { credentialsFolder } from '../helpers/roles.ts';
import {
  EXTRACTED_DIRS, account, adaptHaproxyConfig, adaptKeepalivedConfig, adaptPatroniConfig, differingLines, extractFromImage, parseEnvFile, parseWrk,
  resolveInRoot, serverRow, showStat, sleep, waitFor, type Daemon, type Daemons, type StatRow, type WrkResult,
} from './harness.ts';

export interface ClusterNode {
  name: string;
  role: string;
  /** The role's tags, from the image's /etc/pibake/node.json (load-balancer, web, postgresql). */
  tags: string[];
  ip: string;
  /** The image's extracted files. */
  root: string;
  /** Scratch folder of the node (data, logs, adapted configs). */
  dir: string;
  daemons: Record<string, Daemon>;
}

export interface WriteRecord {
  t: number;
  seq: number;
  ok: boolean;
  error?: string;
}

export interface Writer {
  label: string;
  /** Stops the writer (SIGTERM) and returns every attempt it made. */
  stop(): Promise<WriteRecord[]>;
}

const here = path.dirname(new URL(import.meta.url).pathname);

export class Cluster {
  readonly vip: string;
  private readonly postmasters = new Set<number>();

  constructor(
    readonly lab: NetnsLab,
    readonly daemons: Daemons,
    readonly nodes: Map<string, ClusterNode>,
    /** The PostgreSQL binaries the images name (bin_dir of Patroni's config). */
    readonly bin: string,
    /** cluster.secrets.yaml's role secrets (the operator's copy). */
    readonly secrets: Record<string, string>,
    readonly client: string,
  ) {
    const keepalived = readFileSync(path.join(this.lbs[0]?.root ?? '', 'etc/keepalived/keepalived.conf'), 'utf8');
    const vip = /^\s+(\d+\.\d+\.\d+\.\d+)\/\d+ dev eth0$/m.exec(keepalived)?.[1];
    if (!vip) throw new Error('no virtual_ipaddress in the load balancer\'s keepalived.conf');
    this.vip = vip;
    registerCleanup(() => this.killPostmastersSync());
  }

  node(name: string): ClusterNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  get lbs(): ClusterNode[] {
    return [...this.nodes.values()].filter((n) => n.tags.includes('load-balancer'));
  }

  get dbs(): ClusterNode[] {
    return [...this.nodes.values()].filter((n) => n.tags.includes('postgresql'));
  }

  get webs(): ClusterNode[] {
    return [...this.nodes.values()].filter((n) => n.tags.includes('web'));
  }

  /** A first-boot script of the node's image, run as root in the node's namespace. */
  runScript(n: ClusterNode, script: string, env: Record<string, string>, timeout = 120_000): Promise<RunResult> {
    return this.lab.run(n.name, path.join(n.root, 'usr/local/lib/pibake', script), [], { env, reject: false, timeout });
  }

  curl(args: string[], from = this.client): Promise<RunResult> {
    return this.lab.run(from, 'curl', ['-s', '--max-time', '3', ...args], { reject: false, timeout: 20_000 });
  }

  // -------------------------------------------------------------------------------------- etcd

  etcdPaths(n: ClusterNode): { data: string; joinEnv: string } {
    return { data: path.join(n.dir, 'etcd'), joinEnv: path.join(n.dir, 'etcd-join.env') };
  }

  /** pibake-etcd-setup as at first boot: decides how the member starts (writes join.env). */
  async etcdSetup(n: ClusterNode): Promise<RunResult> {
    const { data, joinEnv } = this.etcdPaths(n);
    return this.runScript(n, 'etcd-setup.sh', { PIBAKE_ETCD_DATA_DIR: data, PIBAKE_ETCD_JOIN_ENV: joinEnv }, 60_000);
  }

  /**
   * etcd as Debian's etcd.service with pibake's drop-in runs it: the environment of the image's
   * /etc/default/etcd, then join.env; only the data folder moves under the test folder.
   */
  async startEtcd(n: ClusterNode): Promise<Daemon> {
    const { data, joinEnv } = this.etcdPaths(n);
    const etcdUser = await account('etcd');
    await mkdir(data, { recursive: true, mode: 0o700 });
    await chown(data, etcdUser.uid, etcdUser.gid);
    const env = {
      ...parseEnvFile(await readFile(path.join(n.root, 'etc/default/etcd'), 'utf8')),
      ...parseEnvFile(await readFile(joinEnv, 'utf8')),
      ETCD_DATA_DIR: data,
    };
    n.daemons.etcd = this.daemons.start(n.name, 'etcd', 'setpriv', ['--reuid=etcd', '--regid=etcd', '--init-groups', '/usr/bin/etcd'], env);
    return n.daemons.etcd;
  }

  /** etcdctl against every member's client address (any one answering is enough). */
  etcdctl(args: string[], from = this.dbs[0]?.name ?? ''): Promise<RunResult> {
    const endpoints = this.dbs.map((n) => `http://${n.ip}:2379`).join(',');
    return this.lab.run(from, 'etcdctl', [`--endpoints=${endpoints}`, '--dial-timeout=2s', '--command-timeout=5s', ...args], {
      env: { ETCDCTL_API: '3' }, reject: false, timeout: 30_000,
    });
  }

  /** "name ran|new" of every member, sorted: a member that ran has published its client URLs. */
  async etcdMembers(from?: string): Promise<string[]> {
    const r = await this.etcdctl(['member', 'list', '-w', 'simple'], from);
    if (r.exitCode !== 0) throw new Error(`etcdctl member list: ${r.all}`);
    return r.stdout.trim().split('\n').map((line) => line.split(', ')).map((f) => `${f[2] || '(unnamed)'} ${f[4] ? 'ran' : 'new'}`).sort();
  }

  // ----------------------------------------------------------------------------------- Patroni

  /** The image's config.yml with host paths moved under the test folder, as postgres reads it. */
  async writePatroniConfig(n: ClusterNode): Promise<string> {
    const rendered = await readFile(path.join(n.root, 'etc/patroni/config.yml'), 'utf8');
    const adapted = adaptPatroniConfig(rendered, n.dir, n.root);
    expect(differingLines(rendered, adapted.text)).toEqual(adapted.changed);
    expect(adapted.changed.map((i) => rendered.split('\n')[i - 1]?.trim().split(':')[0]))
      .toEqual(['post_bootstrap', 'data_dir', 'pgpass', 'unix_socket_directories']);
    const file = path.join(n.dir, 'patroni.yml');
    const pg = await account('postgres');
    await writeFile(file, adapted.text, { mode: 0o600 });
    await chown(file, pg.uid, pg.gid);
    for (const dir of [path.join(n.dir, 'pg'), path.join(n.dir, 'pg/sock')]) {
      await mkdir(dir, { recursive: true });
      await chown(dir, pg.uid, pg.gid);
    }
    return file;
  }

  /** `patroni --validate-config` (bookworm's Patroni 3.0) on the node, as postgres. */
  validatePatroni(n: ClusterNode): Promise<RunResult> {
    return this.lab.run(n.name, 'setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '/usr/bin/patroni', '--validate-config',
      path.join(n.dir, 'patroni.yml')], { reject: false, timeout: 60_000 });
  }

  /** Patroni as patroni.service runs it; the post_bootstrap hook reads the image's SQL. */
  startPatroni(n: ClusterNode): Daemon {
    n.daemons.patroni = this.daemons.start(n.name, 'patroni', 'setpriv',
      ['--reuid=postgres', '--regid=postgres', '--init-groups', '/usr/bin/patroni', path.join(n.dir, 'patroni.yml')],
      { PIBAKE_BOOTSTRAP_SQL: path.join(n.root, 'etc/pibake/postgresql/db-bootstrap.sql'), HOME: '/var/lib/postgresql' });
    return n.daemons.patroni;
  }

  /** GET (or another method) of Patroni's REST API on the node; status 0 when it does not answer. */
  async patroniApi(n: ClusterNode, urlPath: string, method = 'GET'): Promise<{ status: number; body: string }> {
    const r = await this.curl(['-X', method, '-o', '-', '-w', '\n%{http_code}', `http://${n.ip}:8008${urlPath}`]);
    const lines = r.stdout.split('\n');
    return { status: Number(lines.pop()) || 0, body: lines.join('\n') };
  }

  /** The member Patroni calls leader, asked of the nodes in `among` that answer. */
  async leader(among = this.dbs): Promise<ClusterNode | undefined> {
    for (const n of among) {
      const r = await this.patroniApi(n, '/cluster');
      if (r.status !== 200) continue;
      const members = (JSON.parse(r.body) as { members: { name: string; role: string; state: string }[] }).members;
      const leader = members.find((m) => m.role === 'leader' && m.state === 'running');
      if (leader) return this.node(leader.name);
    }
    return undefined;
  }

  /** Waits until a leader other than `not` answers OPTIONS /primary (the check HAProxy makes). */
  async waitLeader(timeoutMs: number, not?: ClusterNode): Promise<ClusterNode> {
    return waitFor(`a Patroni leader${not ? ` other than ${not.name}` : ''}`, timeoutMs, async () => {
      const leader = await this.leader(this.dbs.filter((n) => n !== not));
      if (!leader || leader === not) return undefined;
      return (await this.patroniApi(leader, '/primary', 'OPTIONS')).status === 200 ? leader : undefined;
    }, 200);
  }

  /** psql as postgres over the node's socket folder (peer authentication). */
  async psql(n: ClusterNode, sql: string, db = 'postgres'): Promise<string> {
    const { stdout } = await execa('runuser', ['-u', 'postgres', '--', path.join(this.bin, 'psql'), '-X', '-A', '-t', '-q',
      '-v', 'ON_ERROR_STOP=1', '-h', path.join(n.dir, 'pg/sock'), '-d', db, '-c', sql], { timeout: 30_000 });
    return stdout.trim();
  }

  /** "name:state:sync_state" of the leader's pg_stat_replication, sorted. */
  async replication(leader: ClusterNode): Promise<string[]> {
    const rows = await this.psql(leader, "SELECT application_name || ':' || state || ':' || sync_state FROM pg_stat_replication ORDER BY 1");
    return rows ? rows.split('\n') : [];
  }

  /** Waits until every other database node streams from the leader. */
  async waitStreaming(leader: ClusterNode, timeoutMs: number, members = this.dbs): Promise<string[]> {
    const others = members.filter((n) => n !== leader).map((n) => n.name).sort();
    return waitFor(`${others.join(', ')} streaming from ${leader.name}`, timeoutMs, async () => {
      const rows = await this.replication(leader);
      const streaming = rows.filter((r) => r.split(':')[1] === 'streaming').map((r) => r.split(':')[0]);
      return others.every((name) => streaming.includes(name)) ? rows : undefined;
    }, 200);
  }

  /** Patroni's view of the cluster and the last lines `n`'s Patroni logged (no etcd chatter): for failure messages. */
  async diagnose(n: ClusterNode): Promise<string> {
    const views = await Promise.all(this.dbs.map(async (d) => `${d.name}: /cluster ${(await this.patroniApi(d, '/cluster')).body.slice(0, 600)}`));
    const log = n.daemons.patroni ? (await readFile(n.daemons.patroni.log, 'utf8')).split('\n') : [];
    const lines = log.filter((l) => /^\d{4}-\d\d-\d\d [\d:,]+ (INFO|WARNING|ERROR):/.test(l) && !/Request to server|Failed to get list|Retrying on|Reconnection allowed/.test(l));
    return [...views, `last lines of ${n.name}'s Patroni:`, ...lines.slice(-25)].join('\n');
  }

  /** Waits until the leader has one synchronous standby (synchronous_mode), every other one streaming. */
  waitSync(leader: ClusterNode, timeoutMs: number): Promise<string[]> {
    return waitFor(`a synchronous standby of ${leader.name}`, timeoutMs, async () => {
      const rows = await this.replication(leader);
      return rows.filter((r) => r.endsWith(':streaming:sync')).length === 1 ? rows : undefined;
    }, 200);
  }

  postmasterPid(n: ClusterNode): number | undefined {
    try {
      const pid = Number(readFileSync(path.join(n.dir, 'pg/data/postmaster.pid'), 'utf8').split('\n')[0]);
      if (Number.isInteger(pid) && pid > 0) this.postmasters.add(pid);
      return pid;
    } catch {
      return undefined;
    }
  }

  /** kill -9 of the node's Patroni and its postmaster together (a crash of the database service). */
  async killDatabase(n: ClusterNode): Promise<void> {
    const pm = this.postmasterPid(n);
    const patroni = n.daemons.patroni;
    if (!patroni) throw new Error(`no Patroni on ${n.name}`);
    process.kill(patroni.pid, 'SIGKILL');
    if (pm) signal(pm, 'SIGKILL');
    await patroni.exited;
  }

  /** Switch synchronous_mode (or any dynamic setting) through the leader's REST API, as patronictl edit-config does. */
  async setDynamicConfig(leader: ClusterNode, patch: Record<string, unknown>): Promise<void> {
    const r = await this.curl(['-u', `pibake:${this.secrets.patroni_rest_password}`, '-X', 'PATCH', '-H', 'Content-Type: application/json',
      '-d', JSON.stringify(patch), '-o', '/dev/null', '-w', '%{http_code}', `http://${leader.ip}:8008/config`]);
    if (r.stdout !== '200') throw new Error(`PATCH /config on ${leader.name}: HTTP ${r.stdout} ${r.stderr}`);
  }

  /** A planned switchover (POST /switchover on the leader, as `patronictl switchover` does); waits for the new leader. */
  async switchover(leader: ClusterNode, candidate: ClusterNode): Promise<void> {
    const r = await this.curl(['-u', `pibake:${this.secrets.patroni_rest_password}`, '-X', 'POST', '-H', 'Content-Type: application/json',
      '-d', JSON.stringify({ leader: leader.name, candidate: candidate.name }), '-o', '-', '-w', '\n%{http_code}', `http://${leader.ip}:8008/switchover`]);
    if (!r.stdout.endsWith('\n200')) throw new Error(`switchover ${leader.name} → ${candidate.name}: ${r.stdout}`);
    await waitFor(`${candidate.name} as leader`, 60_000, async () => ((await this.leader()) === candidate ? true : undefined), 200);
  }

  // ------------------------------------------------------------------------------- web tier

  /**
   * The demo app as its unit runs it: as nobody, its passwords (the image's files) in a credentials
   * folder made the way trixie's systemd 257 makes it (root, 0440 with an ACL for the service's
   * user). Like the unit (Type=notify) it is up once it answers /healthz: it logs in to its read
   * endpoint, the load balancers' read port on the floating address, at start.
   */
  async startApp(n: ClusterNode): Promise<void> {
    const cred = path.join(n.dir, 'credentials');
    if (!(await stat(cred).catch(() => undefined))) {
      const users = ['pibake_web', 'pibake_app'];
      const files = Object.fromEntries(await Promise.all(users.map(async (u) => [u, await readFile(path.join(n.root, `etc/pibake/web/${u}.password`), 'utf8')])));
      await credentialsFolder(cred, files, await account('nobody'), 'acl');
    }
    n.daemons.app = this.daemons.start(n.name, 'app', 'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '/usr/bin/python3', path.join(n.root, 'usr/local/lib/pibake/webapp.py')], {
        PIBAKE_WEB_CONFIG: path.join(n.root, 'etc/pibake/web/app.json'), CREDENTIALS_DIRECTORY: cred,
        PIBAKE_LOCAL_HOST: path.join(n.dir, 'pg/sock'), // stands in for /var/run/postgresql; read and write stay as rendered
      });
    const port = (JSON.parse(await readFile(path.join(n.root, 'etc/pibake/web/app.json'), 'utf8')) as { port: number }).port;
    await waitFor(`the app of ${n.name}`, 30_000, async () => {
      const app = n.daemons.app as Daemon;
      if (!this.daemons.isRunning(app)) throw new Error(`the app of ${n.name} exited: ${await readFile(app.log, 'utf8')}`);
      const r = await this.lab.run(n.name, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', `http://127.0.0.1:${port}/healthz`], { reject: false });
      return r.stdout === '200' ? true : undefined;
    }, 200);
  }

  /** nginx with a stand-in for Debian's nginx.conf that includes the site enabled in the image. */
  async startNginx(n: ClusterNode): Promise<void> {
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
      '  access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/tmp/${t};`),
      `  include ${site};`,
      '}', '',
    ].join('\n'));
    const args = ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf];
    await this.lab.run(n.name, 'nginx', [...args, '-t', '-q']);
    n.daemons.nginx = this.daemons.start(n.name, 'nginx', 'nginx', [...args, '-g', 'daemon off;']);
  }

  // ------------------------------------------------------------------------- load balancers

  statsSocket(n: ClusterNode): string {
    return path.join(n.dir, 'haproxy/admin.sock');
  }

  stats(n: ClusterNode): Promise<StatRow[]> {
    return showStat(this.statsSocket(n));
  }

  async waitStatus(lb: ClusterNode, proxy: string, server: string, status: 'UP' | 'DOWN', timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    await waitFor(`${lb.name}: ${proxy}/${server} ${status}`, timeoutMs, async () => {
      const row = serverRow(await this.stats(lb), proxy, server);
      return row.status === status ? true : undefined;
    }, 50);
    return Date.now() - t0;
  }

  /** HAProxy with the image's haproxy.cfg, host paths moved under the test folder (four lines). */
  async startHaproxy(n: ClusterNode): Promise<string> {
    const hdir = path.join(n.dir, 'haproxy');
    await mkdir(path.join(hdir, 'chroot'), { recursive: true });
    const rendered = await readFile(path.join(n.root, 'etc/haproxy/haproxy.cfg'), 'utf8');
    const adapted = adaptHaproxyConfig(rendered, hdir);
    expect(differingLines(rendered, adapted.text)).toEqual(adapted.changed);
    const changedText = adapted.changed.map((i) => rendered.split('\n')[i - 1]?.trim().split(/\s+/).slice(0, 2).join(' '));
    expect(changedText).toEqual(['log /dev/log', 'log /dev/log', 'chroot /var/lib/haproxy', 'stats socket']);
    const cfg = path.join(hdir, 'haproxy.cfg');
    await writeFile(cfg, adapted.text, { mode: 0o600 });
    await this.lab.run(n.name, 'haproxy', ['-c', '-q', '-f', cfg]);
    await rm(this.statsSocket(n), { force: true });
    n.daemons.haproxy = this.daemons.start(n.name, 'haproxy', 'haproxy', ['-db', '-f', cfg]);
    await waitFor(`${n.name}: HAProxy stats socket`, 20_000, async () => ((await this.stats(n)).length > 0 ? true : undefined));
    return rendered;
  }

  /** keepalived.conf of the image with the check script's path in the extracted root; `keepalived -t` first. */
  async writeKeepalivedConfig(n: ClusterNode): Promise<{ file: string; test: RunResult }> {
    const rendered = await readFile(path.join(n.root, 'etc/keepalived/keepalived.conf'), 'utf8');
    const adapted = adaptKeepalivedConfig(rendered, n.root);
    expect(differingLines(rendered, adapted.text)).toEqual(adapted.changed);
    expect(adapted.changed).toHaveLength(1);
    const kdir = path.join(n.dir, 'keepalived');
    await mkdir(kdir, { recursive: true });
    const file = path.join(kdir, 'keepalived.conf');
    await writeFile(file, adapted.text, { mode: 0o600 });
    const log = path.join(kdir, 'config-test.log');
    const test = await this.lab.run(n.name, 'keepalived', [`--config-test=${log}`, '-f', file], { reject: false });
    test.all += await readFile(log, 'utf8').catch(() => '');
    return { file, test };
  }

  /** keepalived in the foreground, its pid files under the test folder (two share this PID namespace). */
  startKeepalived(n: ClusterNode): Daemon {
    const kdir = path.join(n.dir, 'keepalived');
    n.daemons.keepalived = this.daemons.start(n.name, 'keepalived', 'keepalived', [
      '--dont-fork', '--log-console', '--log-detail', '-f', path.join(kdir, 'keepalived.conf'),
      '-p', path.join(kdir, 'keepalived.pid'), '-r', path.join(kdir, 'vrrp.pid'), '-c', path.join(kdir, 'checkers.pid'),
    ]);
    return n.daemons.keepalived;
  }

  /** The load balancers that have the floating address on eth0 right now. */
  async vipHolders(): Promise<string[]> {
    const holders: string[] = [];
    for (const n of this.lbs) {
      const { stdout } = await execa('ip', ['-n', this.lab.node(n.name).ns, '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
      if (stdout.includes(` ${this.vip}/`)) holders.push(n.name);
    }
    return holders;
  }

  /** Waits until the address is on exactly one load balancer other than `from`; which one, and after how long. */
  async waitVipMoved(from: ClusterNode, timeoutMs: number): Promise<{ to: ClusterNode; ms: number }> {
    const t0 = Date.now();
    const to = await waitFor(`${this.vip} on one load balancer other than ${from.name}`, timeoutMs, async () => {
      const holders = await this.vipHolders();
      return holders.length === 1 && holders[0] !== from.name ? this.node(holders[0] as string) : undefined;
    }, 50);
    return { to, ms: Date.now() - t0 };
  }

  // ------------------------------------------------------------------------------- bring-up

  /**
   * First boot of every node, as pibake's first-boot sequence runs it: the ownership hand-over,
   * pibake-etcd-setup and etcd, Patroni (its config checked by `patroni --validate-config` first),
   * nginx and the app, HAProxy and keepalived (`keepalived -t` first). Waits until a leader has a
   * synchronous standby, the address is on one load balancer and every load balancer sees every
   * backend in the state it should be. Returns the first leader.
   */
  async bringUp(figure: (metric: string, value: string) => void): Promise<ClusterNode> {
    const t0 = Date.now();
    for (const n of this.nodes.values()) {
      const list = (await readFile(path.join(n.root, 'etc/pibake/ownership.list'), 'utf8')).split('\n')
        .filter((l) => l.trim() && !l.startsWith('#')).map((l) => `${n.root}${l}`);
      const file = path.join(n.dir, 'ownership.list');
      await writeFile(file, `${list.join('\n')}\n`);
      const applied = await execa(path.join(n.root, 'usr/local/lib/pibake/apply-ownership.sh'), [file], { reject: false, all: true });
      expect(applied.exitCode, applied.all).toBe(0);
    }
    // The images keep Debian's default PostgreSQL cluster from being made, and etcd from starting before pibake-etcd-setup.
    for (const n of this.dbs) {
      expect(await readFile(path.join(n.root, 'etc/postgresql-common/createcluster.d/50-pibake.conf'), 'utf8')).toMatch(/^create_main_cluster = false$/m);
      expect(await readFile(path.join(n.root, 'etc/systemd/system/etcd.service.d/50-pibake.conf'), 'utf8'))
        .toMatch(/^ConditionPathExists=\/var\/lib\/pibake\/etcd\/join.env$/m);
    }

    // etcd: each member's first-boot step finds no running cluster and founds it.
    await Promise.all(this.dbs.map(async (n) => {
      const setup = await this.etcdSetup(n);
      expect(setup.exitCode, setup.all).toBe(0);
      expect(setup.all).toContain('starting as a founding member');
      await this.startEtcd(n);
    }));
    const healthy = await waitFor('etcd healthy on every member', 60_000, async () => {
      const r = await this.etcdctl(['endpoint', 'health']);
      return r.exitCode === 0 && (r.all.match(/is healthy/g) ?? []).length === this.dbs.length ? Date.now() - t0 : undefined;
    }, 200);
    figure('etcd: members started → healthy', seconds(healthy));
    expect(await this.etcdMembers()).toEqual(this.dbs.map((n) => `${n.name} ran`).sort());

    // Patroni: the image's config passes Patroni's own validator, then all start together.
    for (const n of this.dbs) {
      await this.writePatroniConfig(n);
      const valid = await this.validatePatroni(n);
      expect(valid.exitCode, `${n.name}: patroni --validate-config\n${valid.all}`).toBe(0);
    }
    const t1 = Date.now();
    for (const n of this.dbs) this.startPatroni(n);
    const leader = await this.waitLeader(90_000);
    figure('Patroni start → a leader answers /primary (initdb + post_bootstrap)', `${seconds(Date.now() - t1)} (${leader.name})`);
    await this.waitStreaming(leader, 120_000);
    figure('Patroni start → every replica streaming (pg_basebackup)', seconds(Date.now() - t1));
    const replication = await this.waitSync(leader, 30_000); // synchronous_mode: Patroni names one sync standby
    figure(`pg_stat_replication on ${leader.name}`, replication.join(', '));
    // post_bootstrap made the database, the roles and the demo row once, on the first leader.
    expect(await this.psql(leader, 'SELECT message FROM pibake_demo', 'pibake')).toMatch(new RegExp(`: the first primary was ${leader.name}$`));
    expect(await this.psql(leader, "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'pibake%' OR rolname = 'replicator'"))
      .toBe('pibake_app,pibake_rewind,pibake_web,replicator');

    // Load balancers: HAProxy, then keepalived (its config checked by keepalived -t first).
    const t2 = Date.now();
    for (const n of this.lbs) {
      await this.startHaproxy(n);
      const { test } = await this.writeKeepalivedConfig(n);
      expect(test.exitCode, `${n.name}: keepalived -t\n${test.all}`).toBe(0);
      this.startKeepalived(n);
    }
    const holder = await waitFor('the floating address on one load balancer', 30_000, async () => {
      const holders = await this.vipHolders();
      return holders.length === 1 ? holders[0] : undefined;
    }, 100);
    figure(`keepalived start → the address ${this.vip} on one load balancer`, `${seconds(Date.now() - t2)} (${holder})`);
    // The apps read through the address (on a node systemd restarts them until they can log in).
    for (const n of this.webs) {
      await this.startApp(n);
      await this.startNginx(n);
    }
    for (const lb of this.lbs) {
      for (const n of this.webs) await this.waitStatus(lb, 'web', n.name, 'UP', 60_000);
      await this.waitStatus(lb, 'postgresql-write', leader.name, 'UP', 30_000);
      for (const n of this.dbs.filter((d) => d !== leader)) await this.waitStatus(lb, 'postgresql-read', n.name, 'UP', 30_000);
      const rows = await this.stats(lb);
      for (const n of this.dbs.filter((d) => d !== leader)) expect(serverRow(rows, 'postgresql-write', n.name).status).toBe('DOWN');
    }
    figure('whole bring-up (after the build)', seconds(Date.now() - t0));
    return leader;
  }

  // -------------------------------------------------------------------------------- clients

  /**
   * A writer through the floating address's write port (pg-writer.py), running until stop(). Like
   * any client that must notice a dead load balancer, it keeps TCP keepalives short: a reply that
   * never comes from a Pi whose cable is gone is otherwise waited for until TCP gives up (minutes).
   */
  startWriter(label: string, maxSeconds = 300): Writer {
    const dsn = `host=${this.vip} port=5000 dbname=pibake user=pibake_app keepalives=1 keepalives_idle=1 keepalives_interval=1 keepalives_count=2`;
    const [file, argv] = this.lab.argv(this.client, '/usr/bin/python3', [path.join(here, 'pg-writer.py'), dsn, label, String(maxSeconds)]);
    const child = execa(file, argv, { env: { PGPASSWORD: this.secrets.app_db_password ?? '' }, reject: false, timeout: (maxSeconds + 30) * 1000 });
    return {
      label,
      stop: async () => {
        (child as unknown as ChildProcess).kill('SIGTERM');
        const done = await child;
        return String(done.stdout).split('\n').filter(Boolean).map((line) => {
          const [t, seq, ok, error] = JSON.parse(line) as [number, number, number, string?];
          return { t, seq, ok: ok === 1, error };
        });
      },
    };
  }

  /** Messages of `label`'s rows present on the node (through its socket, as postgres). */
  async rowsOf(n: ClusterNode, label: string): Promise<Set<number>> {
    const out = await this.psql(n, `SELECT message FROM pibake_demo WHERE message LIKE '${label} %'`, 'pibake');
    return new Set(out ? out.split('\n').map((m) => Number(m.slice(label.length + 1))) : []);
  }

  /** A digest of every demo row (id, message, time) of the node: equal digests, equal tables. */
  rowsDigest(n: ClusterNode): Promise<string> {
    return this.psql(n, "SELECT count(*) || ' ' || md5(string_agg(id || '|' || message || '|' || created_at, ',' ORDER BY id)) FROM pibake_demo", 'pibake');
  }

  /** http-probe.py from the client: one GET after the other, fresh connection each. */
  probe(url: string, seconds: number, timeoutSeconds = 1): Promise<[number, number, string][]> {
    return this.lab.run(this.client, '/usr/bin/python3', [path.join(here, 'http-probe.py'), url, String(seconds), String(timeoutSeconds)],
      { timeout: (seconds + 30) * 1000 }).then((r) => r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as [number, number, string]));
  }

  wrk(seconds: number, url = `http://${this.vip}/`): Promise<WrkResult> {
    return this.lab.run(this.client, 'wrk', ['-t2', '-c16', `-d${seconds}s`, '--timeout', '10s', '--latency',
      '-s', path.join(here, 'count-nodes.lua'), url], { timeout: (seconds + 30) * 1000 }).then((r) => parseWrk(r.stdout));
  }

  // ------------------------------------------------------------------------------- figures

  /** Resident memory of a process and its descendants, in MB ("parent + children"). */
  rssOf(pid: number): { self: number; children: number } {
    const kb = (p: number): number => {
      try {
        return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
      } catch {
        return 0; // a child (a backend, a check script) that ended meanwhile
      }
    };
    const childrenOf = (p: number): number[] => {
      try {
        return readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      } catch {
        return [];
      }
    };
    const all: number[] = [];
    const walk = (p: number): void => {
      for (const c of childrenOf(p)) {
        all.push(c);
        walk(c);
      }
    };
    walk(pid);
    return { self: kb(pid) / 1024, children: all.reduce((sum, p) => sum + kb(p), 0) / 1024 };
  }

  /** "etcd 37.4 MB, patroni 49.5 MB, ..." for the node's running agents (keepalived and postgres with their children). */
  agentMemory(n: ClusterNode): string {
    const parts: string[] = [];
    for (const what of ['etcd', 'patroni', 'keepalived', 'haproxy']) {
      const d = n.daemons[what];
      if (!d || !this.daemons.isRunning(d)) continue;
      const rss = this.rssOf(d.pid);
      parts.push(what === 'keepalived' ? `keepalived ${rss.self.toFixed(1)} + ${rss.children.toFixed(1)} (children) MB` : `${what} ${rss.self.toFixed(1)} MB`);
    }
    const pm = n.tags.includes('postgresql') ? this.postmasterPid(n) : undefined;
    if (pm) {
      const rss = this.rssOf(pm);
      parts.push(`postgres ${rss.self.toFixed(1)} + ${rss.children.toFixed(1)} (children, shared buffers counted in each) MB`);
    }
    return parts.join(', ');
  }

  /** Postmasters live in sessions of their own (Patroni starts them so): stop them by PID. */
  killPostmastersSync(): void {
    for (const n of this.dbs) this.postmasterPid(n);
    for (const pid of this.postmasters) signal(pid, 'SIGKILL');
  }

  async stopAll(): Promise<void> {
    for (const n of this.dbs) this.postmasterPid(n);
    await this.daemons.stopAll();
    for (const pid of this.postmasters) signal(pid, 'SIGQUIT');
    await sleep(200);
    this.killPostmastersSync();
  }
}

/** The programs the cluster tests drive; a missing one is named with where it comes from. */
export async function requireTools(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the cluster test needs root (network namespaces, runuser): run `sudo npm run test:cluster`');
  for (const tool of ['ip', 'haproxy', 'nginx', 'wrk', 'curl', 'setpriv', 'runuser', 'debugfs', 'sfdisk', 'etcd', 'etcdctl', 'patroni', 'keepalived']) {
    const found = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
    if (found.exitCode !== 0) throw new Error(`${tool} is missing (scripts/install-debian-deps.sh installs it)`);
  }
}

/** The segment: one namespace per node with its inventory address, and the client's. */
export async function labFor(nodes: Map<string, ClusterNode>, prefix: string, clientIp: string): Promise<NetnsLab> {
  await sweepStale(prefix);
  const lab = await NetnsLab.create(prefix);
  for (const n of nodes.values()) await lab.addNode(n.name, n.ip);
  await lab.addNode('client', clientIp);
  return lab;
}

/** afterAll of a cluster test: every daemon stopped, the namespaces and (unless kept) the scratch folder gone, then `report`. */
export async function tearDown(parts: { cluster?: Cluster; lab?: NetnsLab; tmp?: string; keep: boolean }, report: () => void): Promise<void> {
  try {
    if (parts.cluster) await parts.cluster.stopAll();
  } finally {
    if (parts.lab) await parts.lab.destroy();
    if (parts.tmp && !parts.keep) await rm(parts.tmp, { recursive: true, force: true });
  }
  report();
}

export const seconds = (ms: number | undefined): string => (ms === undefined ? 'never' : `${(ms / 1000).toFixed(1)} s`);

/**
 * `pibake build` of `inventory` (text of a cluster.yaml) on a synthesized bookworm-layout base —
 * PostgreSQL 15, Patroni 3.0, etcd 3.4, keepalived 2.2, HAProxy 2.6: this machine's versions —
 * then every node's files out of its own image (debugfs rdump). The images are deleted after.
 */
export async function buildAndExtract(tmp: string, inventory: string, repo: string, options: {
  /** Folders to take out of each image besides EXTRACTED_DIRS. */
  extraDirs?: string[];
  /** Keep <tmp>/base.img for later builds. */
  keepBase?: boolean;
} = {}): Promise<{
  nodes: Map<string, ClusterNode>; secrets: Record<string, string>; bin: string; buildMs: number; output: string;
}> {
  const t0 = Date.now();
  await writeFile(path.join(tmp, 'cluster.yaml'), inventory);
  const base = path.join(tmp, 'base.img');
  await synthesizeRaspiosImage({ path: base, generation: 'bookworm', sizeMiB: 400, bootMiB: 64 });
  const build = await execa('node', [path.join(repo, 'bin/pibake.js'), 'build', '--config', path.join(tmp, 'cluster.yaml'), '--base', base,
    '--out', path.join(tmp, 'out'), '--cache-dir', path.join(tmp, 'cache'), '--jobs', '2', '--packages', 'online'], { timeout: 240_000, all: true });
  if (!options.keepBase) await rm(base);
  const buildMs = Date.now() - t0;
  const cluster = /^cluster:\s*\{?\s*name:\s*([a-z0-9-]+)/m.exec(inventory)?.[1] ?? '';
  const outDir = path.join(tmp, 'out', cluster);
  const manifest = JSON.parse(await readFile(path.join(outDir, 'manifest.json'), 'utf8')) as { nodes: Record<string, { role: string; ip: string }> };
  const nodes = new Map<string, ClusterNode>();
  for (const [name, spec] of Object.entries(manifest.nodes).sort(([a], [b]) => a.localeCompare(b))) {
    const dir = path.join(tmp, name);
    const root = path.join(dir, 'root');
    await extractFromImage(path.join(outDir, `${name}.img`), root, [...EXTRACTED_DIRS, ...(options.extraDirs ?? [])]);
    await rm(path.join(outDir, `${name}.img`)); // the files are out; keep the disk use small
    const { tags } = JSON.parse(await readFile(path.join(root, 'etc/pibake/node.json'), 'utf8')) as { tags: string[] };
    nodes.set(name, { name, role: spec.role, tags, ip: spec.ip, root, dir, daemons: {} });
  }
  const db = [...nodes.values()].find((n) => n.tags.includes('postgresql'));
  const bin = /^\s+bin_dir:\s+(\S+)$/m.exec(await readFile(path.join(db?.root ?? '', 'etc/patroni/config.yml'), 'utf8'))?.[1] ?? '';
  await execa('test', ['-x', path.join(bin, 'postgres')]).catch(() => {
    throw new Error(`${bin}/postgres is missing: the image's PostgreSQL version must be installed here (apt-get install postgresql)`);
  });
  const secrets = (load(await readFile(path.join(tmp, 'cluster.secrets.yaml'), 'utf8')) as { secrets: Record<string, string> }).secrets;
  return { nodes, secrets, bin, buildMs, output: build.all ?? '' };
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

/** ms from `from` to the first acknowledged write after it; undefined when none came. */
export function firstAckAfter(records: WriteRecord[], from: number): number | undefined {
  const ack = records.find((r) => r.ok && r.t >= from);
  return ack ? ack.t - from : undefined;
}

