/**
 * pibake-built nodes booted together under qemu and checked the way their user would check them:
 * from a client machine on the same switch (curl, psql, ssh), never by a unit being `active` alone.
 *
 *   <prefix>-<pid>-switch   bridge br0 ── t0 t1 t2 …  one tap per VM (qemu runs in this namespace)
 *                                     └── p0 ─ <prefix>-<pid>-client  the client, e.g. 10.0.0.250
 *
 * The bridge has no uplink and no namespace has a route anywhere: the VMs reach each other and the
 * client and nothing else (no mirror, no internet), so first boot must work from what is on the
 * card. Names carry the test's PID; exit and signal hooks delete them, and a later run sweeps
 * those of a run that was killed (test/helpers/netns.ts).
 *
 * Used by the boot test (lb1 + web1, test/boot/pibake-build.test.ts) and the VM cluster test
 * (lb1, web1, web2, test/vm-cluster/). See docs/testing.md.
 */
import { execa } from 'execa';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { load } from 'js-yaml';
import { loadInventory } from '../../builder/inventory/load.ts';
import type { Inventory } from '../../builder/inventory/types.ts';
import { loadRoles, type RoleCatalog } from '../../builder/render/roles.ts';
import { parseStatCsv, serverRows, type StatRow } from '../helpers/haproxy-stats.ts';
import { NetnsLab, sweepStale } from '../helpers/netns.ts';
import { QemuVm, macForAddress, ssh, type SshTarget, type VmArch } from '../helpers/qemu.ts';
import { sleep } from '../helpers/wait.ts';
import { checkNode, expectationsFor } from './boot-and-check.ts';
import { buildCluster, type TestNode } from './boot-cluster.ts';
import { baseFacts, consoleLogPath, type BaseFacts } from './test-base.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A cluster built by the real command line, and what its user gets besides the images. */
export interface BuiltCluster {
  name: string;
  inventory: Inventory;
  roles: RoleCatalog;
  /** output/<cluster>: <node>.img, known_hosts, manifest.json. */
  out: string;
  /** The admin's private key (made by ssh-keygen for the run). */
  keyFile: string;
  /** cluster.secrets.yaml's role secrets (passwords), as the operator reads them. */
  secrets: Record<string, string>;
  /** The admin password's crypt hash (cluster.secrets.yaml), which every node must have set at first boot. */
  passwordHash: string;
  base: BaseFacts;
  buildSeconds: number;
  /** What `pibake build` printed (stdout and stderr). */
  buildLog: string;
  config: string;
}

/**
 * `pibake build` of `nodes` on the test base (boot-cluster.ts, the real command line, plus
 * `extraArgs`), with an admin key made for the run, and what its user reads besides the images.
 */
export async function buildTestCluster(dir: string, base: string, name: string, nodes: TestNode[], extraArgs: string[] = []): Promise<BuiltCluster> {
  const keyFile = join(dir, 'admin_ed25519');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `pibake-${name}`, '-f', keyFile]);
  const build = await buildCluster(dir, base, { name, nodes, keyFile }, extraArgs);
  const roles = await loadRoles(join(ROOT, 'roles'));
  const secretsFile = load(await readFile(join(dir, 'cluster.secrets.yaml'), 'utf8')) as { secrets: Record<string, string>; admin: { password_hash: string } };
  return {
    name,
    config: build.config,
    inventory: await loadInventory(build.config, roles),
    roles,
    out: join(build.out, name),
    keyFile,
    secrets: secretsFile.secrets,
    passwordHash: secretsFile.admin.password_hash,
    base: await baseFacts(base),
    buildSeconds: build.seconds,
    buildLog: build.log,
  };
}

export interface VmClusterOptions {
  arch?: VmArch;
  /** Namespace name prefix, own to this test (default pibakevm). */
  prefix?: string;
  /** The client's address on the cluster network; must be free in the inventory. */
  clientIp?: string;
  memoryMiB?: number;
  cpus?: number;
  /** qemu is killed after this long whatever happens. */
  hardTimeoutMs?: number;
  /** Console logs are kept as <PIBAKE_BOOT_LOGS>/<logPrefix>-<node>.console.log. */
  logPrefix?: string;
}

interface BootedNode {
  name: string;
  ip: string;
  tags: string[];
  vm: QemuVm;
}

export interface HttpAnswer {
  status: number;
  body: string;
}

/** Per node: seconds from its qemu start to cloud-init finished, to pibake-firstboot done, and to serving. */
export interface ServingReport {
  nodes: Record<string, { cloudInitSeconds?: number; firstBootSeconds?: number; servingSeconds: number }>;
  /** From the first qemu start until every node served (the cluster serving). */
  clusterSeconds: number;
}

/** Console lines that mark first boot's progress (pibake-firstboot writes its states there). */
const CLOUD_INIT_FINISHED = /Cloud-init v\. \S+ finished at /;
const FIRST_BOOT_DONE = /pibake-firstboot: done: /;
/** A role install that failed from the card would only fail again: no network will come. */
const BOOT_FAILED = /Kernel panic|end Kernel panic|You are in emergency mode|Give root password for maintenance|pibake-firstboot: (failed|waiting): [^\n]*/;
/** How long the nodes may take to serve once every first boot is done, before the test gives up. */
const AFTER_FIRST_BOOT_MS = 5 * 60_000;

export class VmCluster {
  readonly nodes = new Map<string, BootedNode>();
  readonly clientNs: string;

  private constructor(readonly built: BuiltCluster, readonly lab: NetnsLab) {
    this.clientNs = lab.node('client').ns;
  }

  /** Makes the segment and the client, then starts a VM per named node, all at once. */
  static async boot(built: BuiltCluster, names: string[], options: VmClusterOptions = {}): Promise<VmCluster> {
    const prefix = options.prefix ?? 'pibakevm';
    await sweepStale(prefix);
    const clientIp = options.clientIp ?? '10.0.0.250';
    if (built.inventory.nodes.some((n) => n.ip === clientIp) || built.inventory.network.gateway === clientIp) {
      throw new Error(`client address ${clientIp} is taken in the inventory`);
    }
    const lab = await NetnsLab.create(prefix, built.inventory.network.prefixLength);
    try {
      await lab.addNode('client', clientIp);
    } catch (error) {
      await lab.destroy();
      throw error;
    }
    const cluster = new VmCluster(built, lab);
    try {
      for (const name of names) {
        const spec = built.inventory.nodes.find((n) => n.name === name);
        if (!spec) throw new Error(`no node ${name} in the inventory`);
        const tap = await lab.addTap();
        const vm = await QemuVm.boot({
          image: join(built.out, `${name}.img`),
          arch: options.arch,
          memoryMiB: options.memoryMiB,
          cpus: options.cpus,
          network: { netns: lab.switchNs, tap, mac: macForAddress(spec.ip) },
          // Bookworm's firstrun.sh reboots; the next boot must read the cmdline.txt it rewrote.
          followReboots: !built.base.cloudInit,
          hardTimeoutMs: options.hardTimeoutMs ?? 60 * 60_000,
          consoleLog: consoleLogPath(`${options.logPrefix ?? built.name}-${name}`),
        });
        cluster.nodes.set(name, { name, ip: spec.ip, tags: built.roles.get(spec.role)?.tags ?? [], vm });
      }
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  node(name: string): BootedNode {
    const node = this.nodes.get(name);
    if (!node) throw new Error(`node ${name} is not booted`);
    return node;
  }

  private withTag(tag: string): BootedNode[] {
    return [...this.nodes.values()].filter((n) => n.tags.includes(tag));
  }

  /** An HTTP request from the client (curl); status 0 when nothing answered. */
  async http(url: string, options: { auth?: { user: string; password: string }; timeoutSeconds?: number } = {}): Promise<HttpAnswer> {
    // Credentials go through curl's config on stdin, not its command line (which ps shows).
    const auth = options.auth ? ['-K', '-'] : [];
    const r = await execa('ip', ['netns', 'exec', this.clientNs, 'curl', '-sS', '-m', String(options.timeoutSeconds ?? 10),
      ...auth, '-o', '-', '-w', '\n%{http_code}', url], {
      reject: false,
      input: options.auth ? `user = "${options.auth.user}:${options.auth.password}"\n` : '',
    });
    const cut = r.stdout.lastIndexOf('\n');
    return { status: Number(r.stdout.slice(cut + 1)) || 0, body: cut >= 0 ? r.stdout.slice(0, cut) : '' };
  }

  /** One SQL statement from the client with psql; throws with psql's message when it fails. */
  async psql(target: { host: string; port: number; user: string; password: string }, sql: string): Promise<string> {
    const database = this.built.inventory.roles.postgresql.database;
    const r = await execa('ip', ['netns', 'exec', this.clientNs, 'psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
      `host=${target.host} port=${target.port} dbname=${database} user=${target.user} connect_timeout=5`, '-c', sql], {
      reject: false, timeout: 30_000, env: { PGPASSWORD: target.password }, extendEnv: false,
    });
    if (r.exitCode !== 0) throw new Error(`psql ${target.user}@${target.host}:${target.port}: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
    return r.stdout.trim();
  }

  /** The load balancer's statistics page as CSV, with the stats user and its generated password. */
  async haproxyStats(lb: string): Promise<StatRow[]> {
    const { lb: settings } = this.built.inventory.roles;
    const password = this.built.secrets.haproxy_stats_password;
    if (!password) throw new Error('cluster.secrets.yaml has no haproxy_stats_password');
    const answer = await this.http(`http://${this.node(lb).ip}:${settings.statsPort}/;csv`, { auth: { user: settings.statsUser, password } });
    if (answer.status !== 200) throw new Error(`stats page of ${lb} answered ${answer.status}`);
    return parseStatCsv(answer.body);
  }

  /** The node named by a demo app page (its title is "<cluster>: <node>"). */
  static pageNode(body: string): string | undefined {
    return /<title>[^<]*?:\s*([^<\s]+)\s*<\/title>/.exec(body)?.[1];
  }

  /**
   * Why `name` is not serving yet, or undefined when it is.
   * - web node: `/healthz` answers 200 and a query through the app (`/status`) returns a row;
   * - load balancer: HTTP through it answers 200 when a web node is booted, and its statistics
   *   show every server UP that is a booted node (the others cannot be).
   */
  async notServing(name: string): Promise<string | undefined> {
    const node = this.node(name);
    const port = this.built.inventory.roles.web.port;
    if (node.tags.includes('web')) {
      const health = await this.http(`http://${node.ip}:${port}/healthz`);
      if (health.status !== 200) return `GET /healthz answered ${health.status}: ${health.body.slice(0, 200)}`;
      const status = await this.http(`http://${node.ip}:${port}/status`);
      if (status.status !== 200) return `GET /status answered ${status.status}: ${status.body.slice(0, 200)}`;
      const row = (JSON.parse(status.body) as { row?: unknown }).row;
      if (!row) return `GET /status returned no row: ${status.body.slice(0, 200)}`;
    }
    if (node.tags.includes('load-balancer')) {
      const rows = await this.haproxyStats(name).catch((e: Error) => e);
      if (rows instanceof Error) return rows.message;
      const booted = serverRows(rows).filter((r) => this.nodes.has(r.svname ?? ''));
      if (booted.length === 0) return 'its statistics list none of the booted nodes';
      // Every booted web server UP; a PostgreSQL server is down on the port its Patroni role
      // keeps it from (a replica on the write port), so there each port needs one server UP.
      const down = booted.filter((r) => r.pxname === 'web' && r.status !== 'UP');
      const backends = rows.filter((r) => r.svname === 'BACKEND' && r.status !== 'UP');
      if (down.length + backends.length > 0) {
        return `not UP: ${[...down, ...backends].map((r) => `${r.pxname}/${r.svname} ${r.status} (${r.check_desc ?? r.last_chk ?? ''})`).join(', ')}`;
      }
      if (this.withTag('web').length > 0) {
        const page = await this.http(`http://${node.ip}:${port}/`);
        if (page.status !== 200) return `GET / through it answered ${page.status}`;
      }
    }
    return undefined;
  }

  /**
   * Polls every node until each serves (see notServing); fails early when a VM dies, drops to an
   * emergency shell or reports a failed role setup, when not serving AFTER_FIRST_BOOT_MS after
   * pibake-firstboot was done on every node, and after `timeoutMs`. Failures carry every waiting
   * node's last reason, its failed units, warnings and console tail.
   */
  async waitUntilServing(timeoutMs: number, everyMs = 5_000): Promise<ServingReport> {
    const first = Math.min(...[...this.nodes.values()].map((n) => n.vm.startedAt));
    const deadline = Date.now() + timeoutMs;
    const report: ServingReport = { nodes: {}, clusterSeconds: 0 };
    const cloudInit: Record<string, number> = {};
    const firstBoot: Record<string, number> = {};
    const reasons = new Map<string, string>();
    for (;;) {
      for (const node of this.nodes.values()) {
        const problem = await node.vm.problem(BOOT_FAILED);
        if (problem) throw new Error(`${node.name}: ${problem}`);
        const text = await node.vm.console();
        const seconds = (Date.now() - node.vm.startedAt) / 1000;
        if (cloudInit[node.name] === undefined && CLOUD_INIT_FINISHED.test(text)) cloudInit[node.name] = seconds;
        if (firstBoot[node.name] === undefined && FIRST_BOOT_DONE.test(text)) firstBoot[node.name] = seconds;
      }
      const pending = [...this.nodes.values()].filter((n) => report.nodes[n.name] === undefined);
      await Promise.all(pending.map(async (node) => {
        const reason = await this.notServing(node.name).catch((e: Error) => e.message);
        if (reason === undefined) {
          report.nodes[node.name] = {
            cloudInitSeconds: cloudInit[node.name],
            firstBootSeconds: firstBoot[node.name],
            servingSeconds: (Date.now() - node.vm.startedAt) / 1000,
          };
        } else {
          reasons.set(node.name, reason);
        }
      }));
      if (Object.keys(report.nodes).length === this.nodes.size) {
        report.clusterSeconds = (Date.now() - first) / 1000;
        return report;
      }
      const done = [...this.nodes.values()].map((n) => n.vm.startedAt + (firstBoot[n.name] ?? NaN) * 1000);
      const late = done.every(Number.isFinite) && Date.now() > Math.max(...done) + AFTER_FIRST_BOOT_MS;
      if (Date.now() > deadline || late) {
        const why = late ? `not serving ${AFTER_FIRST_BOOT_MS / 1000} s after pibake-firstboot was done on every node` : `not serving after ${timeoutMs / 1000} s`;
        const lines = await Promise.all(pending.filter((n) => report.nodes[n.name] === undefined).map(async (n) =>
          `${n.name}: ${reasons.get(n.name)}\n${await this.diagnose(n.name)}`));
        throw new Error(`${why}:\n${lines.join('\n')}`);
      }
      await sleep(everyMs);
    }
  }

  /** What a stuck node says about itself: failed units, recent warnings, the console's tail. */
  async diagnose(name: string): Promise<string> {
    const r = await ssh(this.sshTarget(name),
      'systemctl --failed --no-legend --plain; cat /var/lib/pibake/firstboot.status; sudo -n journalctl -b -p warning -n 30 --no-pager -q; cloud-init status 2>/dev/null', 60_000)
      .catch((e: Error) => ({ stdout: '', stderr: e.message }));
    const console = (await this.node(name).vm.console()).split('\n').slice(-15).join('\n');
    return `  over ssh:\n${`${r.stdout}${r.stderr}`.trim()}\n  console tail:\n${console}`;
  }

  /** ssh from the client to the node, holding it to the host key pibake baked (known_hosts). */
  sshTarget(name: string): SshTarget {
    return {
      user: this.built.inventory.admin.user,
      keyFile: this.built.keyFile,
      host: this.node(name).ip,
      netns: this.clientNs,
      knownHosts: join(this.built.out, 'known_hosts'),
    };
  }

  /**
   * Every node's problems (boot-and-check.ts: first boot, address, services, journal, and the
   * packages `packages` names for its role); empty when the node is right.
   */
  async checkNodes(packages: Record<string, { name: string; version: RegExp }[]> = {}): Promise<Record<string, string[]>> {
    const results = await Promise.all([...this.nodes.values()].map(async (node) => {
      const spec = this.built.inventory.nodes.find((n) => n.name === node.name);
      const role = this.built.roles.get(spec?.role ?? '');
      // etcd runs on the members only (roles.etcd.members); another database node uses theirs.
      const etcdMember = this.built.inventory.roles.etcd.members.includes(node.name);
      const services = (role?.services ?? []).map((s) => s.replace(/\.service$/, '')).filter((s) => s !== 'etcd' || etcdMember);
      const expected = expectationsFor(this.built.inventory, node.name, {
        keyFile: this.built.keyFile,
        services,
        firstBoot: this.built.base.cloudInit ? 'cloud-init' : 'firstrun',
        passwordHash: this.built.passwordHash,
        packages: packages[spec?.role ?? ''] ?? [],
      });
      return [node.name, await checkNode(this.sshTarget(node.name), expected, node.ip)] as const;
    }));
    return Object.fromEntries(results);
  }

  /** Stops every VM (by PID) and deletes the namespaces. */
  async stop(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((n) => n.vm.stop()));
    await this.lab.destroy();
  }
}
