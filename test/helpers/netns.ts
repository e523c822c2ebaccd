/**
 * A private Ethernet segment for tests: a "switch" network namespace holding a bridge, and one
 * network namespace per node joined to it by a veth pair, or a tap device for a VM. Nothing touches the host's root
 * namespace (the veth pairs are created inside the switch namespace and one end is moved straight
 * into the node's), and nothing is routed anywhere: the node namespaces have their address on
 * eth0, lo up, and no default route. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2.
 *
 * Names are `<prefix>-<pid>-<node>`, unique per run. `destroy()` (afterAll) and a process exit
 * hook delete every namespace this run made; `sweepStale()` deletes those of earlier runs whose
 * process is gone (a run killed with SIGKILL cannot clean up after itself).
 */
import { execFileSync } from 'node:child_process';
import { execa } from 'execa';

export interface RunOptions {
  env?: Record<string, string>;
  input?: string;
  timeout?: number;
  /** false: resolve with the exit code instead of rejecting on failure. */
  reject?: boolean;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout and stderr interleaved */
  all: string;
}

export interface NetnsNode {
  name: string;
  /** Name of the network namespace (`ip netns exec <ns> ...`). */
  ns: string;
  /** Address without prefix length, e.g. 10.0.0.11. */
  ip: string;
  /** The switch-side end of its veth pair (its port on the bridge). */
  port: string;
}

/**
 * Synchronous clean-ups run when the process exits or is told to stop by a signal, newest first
 * (so daemons registered after a lab are killed before its namespaces are deleted).
 */
const cleanups: (() => void)[] = [];
let hooked = false;

function runCleanups(): void {
  while (cleanups.length > 0) {
    try {
      cleanups.pop()?.();
    } catch {
      // keep cleaning up
    }
  }
}

export function registerCleanup(fn: () => void): () => void {
  if (!hooked) {
    hooked = true;
    process.on('exit', runCleanups);
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(signal, () => {
        runCleanups();
        process.kill(process.pid, signal); // the default action, now that this listener is gone
      });
    }
  }
  cleanups.push(fn);
  return () => {
    const i = cleanups.indexOf(fn);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

async function ip(args: string[]): Promise<void> {
  await execa('ip', args, { timeout: 10_000 });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function listNamespaces(): Promise<string[]> {
  const { stdout } = await execa('ip', ['netns', 'list']);
  return stdout.split('\n').map((line) => line.split(' ')[0] ?? '').filter(Boolean);
}

/** Delete namespaces named `<prefix>-<pid>-...` whose process no longer exists. */
export async function sweepStale(prefix: string): Promise<string[]> {
  const pattern = new RegExp(`^${prefix}-(\\d+)-`);
  const stale = (await listNamespaces()).filter((ns) => {
    const pid = Number(pattern.exec(ns)?.[1]);
    return Number.isInteger(pid) && pid !== process.pid && !pidAlive(pid);
  });
  for (const ns of stale) await ip(['netns', 'delete', ns]).catch(() => undefined);
  return stale;
}

export class NetnsLab {
  readonly switchNs: string;
  readonly nodes = new Map<string, NetnsNode>();
  private readonly created: string[] = [];
  private readonly prefixLength: number;
  private taps = 0;
  private unregister: () => void = () => undefined;

  private constructor(readonly prefix: string, prefixLength: number) {
    this.switchNs = `${prefix}-${process.pid}-switch`;
    this.prefixLength = prefixLength;
  }

  /** A new segment: the switch namespace with bridge `br0` up, and nothing else yet. */
  static async create(prefix: string, prefixLength = 24): Promise<NetnsLab> {
    if (!/^[a-z][a-z0-9]{0,11}$/.test(prefix)) throw new Error(`netns prefix '${prefix}': 1-12 lowercase letters/digits`);
    const lab = new NetnsLab(prefix, prefixLength);
    lab.unregister = registerCleanup(() => lab.destroySync());
    await lab.addNamespace(lab.switchNs);
    await ip(['-n', lab.switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
    await ip(['-n', lab.switchNs, 'link', 'set', 'br0', 'up']);
    return lab;
  }

  private async addNamespace(ns: string): Promise<void> {
    await ip(['netns', 'add', ns]);
    this.created.push(ns);
    await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  }

  /** A node namespace with `eth0` = `address`/prefixLength, plugged into the bridge. */
  async addNode(name: string, address: string): Promise<NetnsNode> {
    if (this.nodes.has(name)) throw new Error(`node ${name} exists already`);
    const ns = `${this.prefix}-${process.pid}-${name}`;
    // The switch-side end is named after the node's index: interface names are at most 15 bytes.
    const port = `p${this.nodes.size}`;
    await this.addNamespace(ns);
    await ip(['-n', this.switchNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await ip(['-n', this.switchNs, 'link', 'set', port, 'master', 'br0']);
    await ip(['-n', this.switchNs, 'link', 'set', port, 'up']);
    await ip(['-n', ns, 'addr', 'add', `${address}/${this.prefixLength}`, 'dev', 'eth0']);
    await ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
    const node = { name, ns, ip: address, port };
    this.nodes.set(name, node);
    return node;
  }

  /**
   * A tap device `t<n>` on the bridge, up, for a VM: qemu opens it by name, so it must run inside
   * the switch namespace (QemuVm's TapNetwork). Deleted with that namespace.
   */
  async addTap(): Promise<string> {
    const tap = `t${this.taps++}`;
    await ip(['-n', this.switchNs, 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    await ip(['-n', this.switchNs, 'link', 'set', tap, 'master', 'br0']);
    await ip(['-n', this.switchNs, 'link', 'set', tap, 'up']);
    return tap;
  }

  node(name: string): NetnsNode {
    const node = this.nodes.get(name);
    if (!node) throw new Error(`no namespace for node ${name}`);
    return node;
  }

  /** `ip netns exec <ns> command ...args` for the node (ip execs the command: same PID). */
  argv(name: string, command: string, args: string[] = []): [string, string[]] {
    return ['ip', ['netns', 'exec', this.node(name).ns, command, ...args]];
  }

  /** Run a command inside the node's namespace and wait for it. */
  async run(name: string, command: string, args: string[] = [], options: RunOptions = {}): Promise<RunResult> {
    const [file, argv] = this.argv(name, command, args);
    const result = await execa(file, argv, {
      env: options.env, input: options.input, timeout: options.timeout ?? 60_000, reject: options.reject ?? true, all: true,
    });
    return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr, all: result.all ?? '' };
  }

  /**
   * Pull (down) or plug back (up) the node's cable: its switch port goes down, so the node sees
   * its eth0 lose carrier and nothing reaches it, while everything on the node keeps running.
   */
  async setCable(name: string, state: 'up' | 'down'): Promise<void> {
    await ip(['-n', this.switchNs, 'link', 'set', this.node(name).port, state]);
  }

  /** The routes of a node's namespace (for the "nothing is routed anywhere" check). */
  async routes(name: string): Promise<string[]> {
    const { stdout } = await execa('ip', ['-n', this.node(name).ns, 'route', 'show']);
    return stdout.split('\n').filter(Boolean);
  }

  async destroy(): Promise<void> {
    for (const ns of [...this.created].reverse()) await ip(['netns', 'delete', ns]).catch(() => undefined);
    this.created.length = 0;
    this.unregister();
  }

  destroySync(): void {
    for (const ns of [...this.created].reverse()) {
      try {
        execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore', timeout: 10_000 });
      } catch {
        // already gone
      }
    }
    this.created.length = 0;
    this.unregister();
  }
}
