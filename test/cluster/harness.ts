/**
 * The pieces of the cluster test: the built images' own files extracted with debugfs, the real
 * daemons (PostgreSQL, nginx, the demo app, HAProxy) run in the foreground inside the nodes'
 * network namespaces as children of the test (each in its own process group, stopped by PID),
 * HAProxy's stats socket, wrk and psql clients.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { partitionOffsets } from '../helpers/oracles.ts';
import { registerCleanup, type NetnsLab } from '../helpers/netns.ts';
import { parseStatCsv, type StatRow } from '../helpers/haproxy-stats.ts';

export { serverRow, type StatRow } from '../helpers/haproxy-stats.ts';

// ---------------------------------------------------------------------------------------------
// Files out of the built images

/** Folders of a node's root filesystem the cluster test needs (whatever the role put there). */
export const EXTRACTED_DIRS = [
  '/etc/pibake', '/usr/local/lib/pibake', '/etc/haproxy', '/etc/nginx', '/etc/keepalived', '/etc/patroni', '/etc/default',
  '/etc/postgresql-common', '/etc/systemd/system',
];

/**
 * Copy `dirs` of the image's root partition under `dest` (dest + same path), with their modes,
 * by debugfs rdump; folders the image lacks are skipped. Returns the folders found.
 */
export async function extractFromImage(image: string, dest: string, dirs = EXTRACTED_DIRS): Promise<string[]> {
  const { root } = await partitionOffsets(image);
  const device = `${image}?offset=${root}`;
  const found: string[] = [];
  for (const dir of dirs) {
    const probe = await execa('debugfs', ['-R', `stat "${dir}"`, device], { reject: false });
    if (!/Type:\s+directory/.test(probe.stdout)) continue;
    const parent = path.join(dest, path.dirname(dir));
    await mkdir(parent, { recursive: true, mode: 0o755 });
    const done = await execa('debugfs', ['-R', `rdump "${dir}" "${parent}"`, device], { all: true });
    // debugfs prints its version banner, and otherwise only complaints.
    if ((done.all ?? '').split('\n').some((line) => line.trim() && !/^debugfs \d/.test(line))) {
      throw new Error(`debugfs rdump ${dir} of ${image}: ${done.all}`);
    }
    found.push(dir);
  }
  return found;
}

/** A symlink of the image (extracted under `root`) resolved inside `root`, not on the host. */
export async function resolveInRoot(root: string, linkPath: string): Promise<string> {
  const target = await readlink(path.join(root, linkPath));
  return path.join(root, path.isAbsolute(target) ? target : path.join(path.dirname(linkPath), target));
}

// ---------------------------------------------------------------------------------------------
// Daemons: foreground children, own process group each, stopped by PID

export interface Daemon {
  node: string;
  what: string;
  pid: number;
  log: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

export class Daemons {
  private readonly running = new Set<Daemon>();

  constructor(private readonly lab: NetnsLab, private readonly logDir: string) {
    registerCleanup(() => this.killAllSync());
  }

  /** Start `command args` in `node`'s namespace; stdout+stderr go to <logDir>/<node>-<what>.log. */
  start(node: string, what: string, command: string, args: string[], env: Record<string, string> = {}): Daemon {
    const log = path.join(this.logDir, `${node}-${what}.log`);
    const fd = openSync(log, 'a');
    const [file, argv] = this.lab.argv(node, command, args);
    // detached: a new session, so the daemon and its children (nginx workers, postgres backends,
    // the app's psql) form one process group whose id is the daemon's PID.
    const child = spawn(file, argv, { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
    closeSync(fd);
    if (child.pid === undefined) throw new Error(`could not start ${what} on ${node}`);
    const exited = new Promise<number | null>((resolve) => {
      child.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null)));
      child.once('error', () => resolve(-1));
    });
    const daemon: Daemon = { node, what, pid: child.pid, log, child, exited };
    this.running.add(daemon);
    void exited.then(() => this.running.delete(daemon));
    return daemon;
  }

  isRunning(daemon: Daemon): boolean {
    return this.running.has(daemon);
  }

  /** Send `signal` to the daemon's process group; wait for it (SIGKILL to the group after `graceMs`). */
  async stop(daemon: Daemon, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
    if (!this.running.has(daemon)) return;
    const group = -daemon.pid;
    signalGroup(group, signal);
    const timer = setTimeout(() => signalGroup(group, 'SIGKILL'), graceMs);
    await daemon.exited;
    clearTimeout(timer);
    // Anything of the group still alive (e.g. nginx workers after the master was killed).
    if (signal !== 'SIGKILL') signalGroup(group, 'SIGKILL');
  }

  /** Only the daemon's own PID (PostgreSQL's postmaster takes its children down itself). */
  async signalLeader(daemon: Daemon, signal: NodeJS.Signals): Promise<void> {
    if (!this.running.has(daemon)) return;
    process.kill(daemon.pid, signal);
    await daemon.exited;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.running].reverse().map((d) => this.stop(d, d.what === 'postgres' ? 'SIGINT' : 'SIGTERM')));
  }

  killAllSync(): void {
    for (const d of this.running) signalGroup(-d.pid, 'SIGKILL');
  }
}

function signalGroup(group: number, signal: NodeJS.Signals): void {
  try {
    process.kill(group, signal);
  } catch {
    // the group is gone already
  }
}


export { sleep, waitFor } from '../helpers/wait.ts';

export async function account(name: string): Promise<{ uid: number; gid: number }> {
  return { uid: Number((await execa('id', ['-u', name])).stdout), gid: Number((await execa('id', ['-g', name])).stdout) };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL in Debian's layout: configuration folder (/etc/postgresql/<v>/main), data folder
// (/var/lib/postgresql/<v>/main) and socket folder (/var/run/postgresql) under the test's mkdtemp

export interface PgDirs {
  conf: string;
  data: string;
  sock: string;
}

/**
 * What postgresql-common leaves behind when the package is installed at first boot: a fresh
 * cluster (initdb) whose postgresql.conf sits in the configuration folder and includes conf.d.
 * The stand-in postgresql.conf sets only the Debian-layout paths.
 */
export async function debianCluster(bin: string, dirs: PgDirs, pg: { uid: number; gid: number }): Promise<void> {
  for (const dir of [dirs.conf, dirs.data, dirs.sock]) {
    await mkdir(dir, { recursive: true });
    await chown(dir, pg.uid, pg.gid);
  }
  await chmod(dirs.data, 0o700);
  const conf = path.join(dirs.conf, 'postgresql.conf');
  await writeFile(conf, [
    '# test stand-in for the postgresql.conf of Debian\'s postgresql-common (paths only)',
    `data_directory = '${dirs.data}'`,
    `hba_file = '${dirs.conf}/pg_hba.conf'`,
    `ident_file = '${dirs.conf}/pg_ident.conf'`,
    `unix_socket_directories = '${dirs.sock}'`,
    "include_dir = 'conf.d'",
    '',
  ].join('\n'));
  await writeFile(path.join(dirs.conf, 'pg_ident.conf'), '');
  await chown(conf, pg.uid, pg.gid);
  await execa('runuser', ['-u', 'postgres', '--', path.join(bin, 'initdb'), '-D', dirs.data, '-U', 'postgres',
    '--auth-local=peer', '--auth-host=scram-sha-256', '--no-sync'], { timeout: 120_000 });
  for (const f of ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf']) await rm(path.join(dirs.data, f));
}

/** psql as postgres over the node's unix socket (peer authentication). */
export async function psqlLocal(bin: string, dirs: PgDirs, sql: string, db = 'postgres'): Promise<string> {
  const { stdout } = await execa('runuser', ['-u', 'postgres', '--', path.join(bin, 'psql'), '-X', '-A', '-t', '-q',
    '-v', 'ON_ERROR_STOP=1', '-h', dirs.sock, '-d', db, '-c', sql], { timeout: 30_000 });
  return stdout.trim();
}

// ---------------------------------------------------------------------------------------------
// HAProxy

export interface Adaptation {
  text: string;
  /** 1-based line numbers that differ from the rendered file. */
  changed: number[];
}

/**
 * A rendered configuration with some lines changed by `rules` (the first matching rule of each
 * line): the smallest change that lets it run in the test, e.g. host paths moved under the test
 * folder. Everything else stays byte for byte; `changed` says which lines moved.
 */
export function adaptConfig(rendered: string, rules: readonly [RegExp, string][]): Adaptation {
  const changed: number[] = [];
  const lines = rendered.split('\n').map((line, i) => {
    for (const [pattern, replacement] of rules) {
      if (pattern.test(line)) {
        changed.push(i + 1);
        return line.replace(pattern, replacement);
      }
    }
    return line;
  });
  return { text: lines.join('\n'), changed };
}

/**
 * haproxy.cfg: host paths only (syslog socket, chroot folder, stats socket) move under `dir`.
 * Addresses, ports, servers, checks, user/group and every other line stay as rendered.
 */
export function adaptHaproxyConfig(rendered: string, dir: string): Adaptation {
  return adaptConfig(rendered, [
    [/^(\s*log\s+)\/dev\/log(\s)/, `$1${dir}/log.sock$2`],
    [/^(\s*chroot\s+)\/var\/lib\/haproxy\s*$/, `$1${dir}/chroot`],
    [/^(\s*stats\s+socket\s+)\/run\/haproxy\/admin\.sock(\s)/, `$1${dir}/admin.sock$2`],
  ]);
}

/** keepalived.conf: only the check script's path moves into the image's extracted root. */
export function adaptKeepalivedConfig(rendered: string, root: string): Adaptation {
  return adaptConfig(rendered, [[/^(\s*script\s+")(\/usr\/local\/lib\/pibake\/[^"]+")/, `$1${root}$2`]]);
}

/**
 * Patroni's config.yml: the data folder, its pgpass file, the socket folder and the
 * post_bootstrap hook move under the test folder / into the extracted root. Names, addresses,
 * ports, etcd hosts, timers, passwords, pg_hba and bin_dir stay as rendered.
 */
export function adaptPatroniConfig(rendered: string, dir: string, root: string): Adaptation {
  return adaptConfig(rendered, [
    [/^(\s+data_dir:\s+)\/var\/lib\/postgresql\/\S+$/, `$1${dir}/pg/data`],
    [/^(\s+pgpass:\s+)\S+$/, `$1${dir}/pg/pgpass`],
    [/^(\s+unix_socket_directories:\s+)\S+$/, `$1${dir}/pg/sock`],
    [/^(\s+post_bootstrap:\s+)(\/usr\/local\/lib\/pibake\/\S+)$/, `$1${root}$2`],
  ]);
}

/** KEY=VALUE lines of an environment file as systemd's EnvironmentFile= reads them (no quoting used here). */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (match) env[match[1] as string] = match[2] as string;
  }
  return env;
}

/** Lines that differ between two texts of the same line count (1-based); throws otherwise. */
export function differingLines(a: string, b: string): number[] {
  const x = a.split('\n');
  const y = b.split('\n');
  if (x.length !== y.length) throw new Error(`line counts differ: ${x.length} vs ${y.length}`);
  return x.flatMap((line, i) => (line === y[i] ? [] : [i + 1]));
}

/** `show stat` over HAProxy's stats socket (a unix socket: reachable from any namespace). */
export function showStat(socketPath: string): Promise<StatRow[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let data = '';
    socket.setTimeout(5_000, () => socket.destroy(new Error('stats socket timeout')));
    socket.on('connect', () => socket.write('show stat\n'));
    socket.on('data', (chunk) => (data += chunk.toString('utf8')));
    socket.on('error', reject);
    socket.on('close', () => {
      try {
        resolve(parseStatCsv(data));
      } catch (error) {
        reject(error as Error);
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Clients

export interface WrkResult {
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  non2xx: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  latencyP50Ms?: number;
  latencyP99Ms?: number;
  /** Responses per node, from the page's title (counted by count-nodes.lua). */
  byNode: Record<string, number>;
  raw: string;
}

function toMs(value: string, unit: string): number {
  const factor: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };
  return Number(value) * (factor[unit] ?? NaN);
}

export function parseWrk(raw: string): WrkResult {
  const requests = /(\d+) requests in ([\d.]+)(\w+)/.exec(raw);
  if (!requests) throw new Error(`unexpected wrk output:\n${raw}`);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw);
  const p50 = /\s50%\s+([\d.]+)(us|ms|s|m)\b/.exec(raw);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s|m)\b/.exec(raw);
  const byNode: Record<string, number> = {};
  for (const match of raw.matchAll(/^node (\S+) (\d+)$/gm)) byNode[match[1] as string] = Number(match[2]);
  return {
    requests: Number(requests[1]),
    seconds: toMs(requests[2] as string, requests[3] as string) / 1000,
    requestsPerSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(raw)?.[1] ?? NaN),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(raw)?.[1] ?? 0),
    socketErrors: {
      connect: Number(errors?.[1] ?? 0), read: Number(errors?.[2] ?? 0), write: Number(errors?.[3] ?? 0), timeout: Number(errors?.[4] ?? 0),
    },
    latencyP50Ms: p50 ? toMs(p50[1] as string, p50[2] as string) : undefined,
    latencyP99Ms: p99 ? toMs(p99[1] as string, p99[2] as string) : undefined,
    byNode,
    raw,
  };
}

export async function readText(file: string): Promise<string> {
  return readFile(file, 'utf8');
}
