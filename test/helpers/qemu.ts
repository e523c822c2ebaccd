/**
 * Boots a Raspberry Pi OS-layout image under qemu for the boot test, the way a Pi's firmware would:
 * kernel, initrd and kernel command line are read out of the image's own boot partition (mtools),
 * so what pibake wrote there (cmdline.txt, config.txt, seeds) is what boots. Software emulation
 * only (TCG); see /work/shared/docs/test-harness-notes.md.
 *
 * Networking, one of two kinds, and neither reaches anything outside this machine:
 * - user-mode (slirp) with restrict=on, for one VM: the slirp network is made equal to the
 *   inventory's (its net is the cluster CIDR, its host address the gateway), so a node configured
 *   with a static address answers on that address, and an ssh forward on 127.0.0.1 reaches it;
 * - a tap device on a bridge inside a network namespace the test made (NetnsLab.addTap), for
 *   several VMs that talk to each other and to client namespaces on the same bridge. qemu runs
 *   inside that namespace; the bridge has no uplink, so there is no route anywhere.
 *
 * qemu is started under `setpriv --pdeathsig KILL`: if the test process dies, even by SIGKILL,
 * the kernel kills its VMs. Exit and signal hooks (registerCleanup) stop them otherwise.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { access, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { runTool } from '../../builder/common/exec.ts';
import { registerCleanup } from './netns.ts';

export type VmArch = 'amd64' | 'arm64';

/** qemu's user-mode network, restricted: one VM, reached through an ssh forward on 127.0.0.1. */
export interface UserNetwork {
  /** The cluster network, e.g. 10.0.0.0/24; becomes slirp's net. */
  cidr: string;
  /** The gateway of the inventory; becomes slirp's host address (what the guest routes through). */
  gateway: string;
  /** The node's static address; ssh on 127.0.0.1:<sshPort> is forwarded to it. */
  guestIp: string;
}

/** A tap device on a bridge in a network namespace (NetnsLab.addTap); qemu runs in that namespace. */
export interface TapNetwork {
  /** The namespace holding the bridge and the tap. */
  netns: string;
  /** The tap device's name in that namespace. */
  tap: string;
  /** The NIC's MAC address: unique per VM on one bridge (qemu gives every VM the same default). */
  mac: string;
}

export type VmNetwork = UserNetwork | TapNetwork;

const isTap = (network: VmNetwork): network is TapNetwork => 'tap' in network;

/** A locally administered MAC derived from an IPv4 address (52:54:00 is qemu's prefix). */
export function macForAddress(ip: string): string {
  const octets = ip.split('.').map(Number);
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) throw new Error(`not an IPv4 address: ${ip}`);
  return ['52', '54', '00', ...octets.slice(1).map((o) => o.toString(16).padStart(2, '0'))].join(':');
}

export interface BootOptions {
  /** The image to boot. It is never written: qemu runs on a reflink/sparse copy in a temp dir. */
  image: string;
  arch?: VmArch;
  memoryMiB?: number;
  cpus?: number;
  network: VmNetwork;
  /**
   * User-mode network only: the only other places the guest may reach, a TCP address inside the
   * guest's network that qemu connects to a port on this machine's 127.0.0.1 (one bridge process
   * per connection).
   */
  guestForwards?: { guestIp: string; guestPort: number; hostPort: number }[];
  /**
   * When the guest reboots, start it again from the same disk, reading kernel, initrd and
   * cmdline.txt afresh (a Pi's firmware does; qemu's direct kernel boot would reuse the old
   * command line). Bookworm's firstrun.sh reboots once.
   */
  followReboots?: boolean;
  /** qemu is killed after this long whatever happens (default 15 min). */
  hardTimeoutMs?: number;
  /** Where the serial console is logged (default: in the VM's temp dir, removed by stop()); a path
   * outside that dir is kept, also when the test is killed. */
  consoleLog?: string;
}

/** Where the boot partition is and what the firmware would load from it. */
export interface BootPartitionFiles {
  offsetBytes: number;
  kernel: string;
  initrd?: string;
  cmdline: string;
}

const QEMU: Record<VmArch, { binary: string; console: string; machine: string[]; append: string[] }> = {
  // no_timer_check: on a host this loaded the emulated clock can miss the x86 kernel's early
  // IO-APIC timer check, which then panics ("IO-APIC + timer doesn't work!"; seen at load 10-15).
  amd64: { binary: 'qemu-system-x86_64', console: 'ttyS0', machine: ['-machine', 'pc', '-cpu', 'max'], append: ['no_timer_check'] },
  // pauth-impdef: pointer authentication emulated cheaply (harness notes: 49 s instead of 125 s).
  arm64: { binary: 'qemu-system-aarch64', console: 'ttyAMA0', machine: ['-machine', 'virt', '-cpu', 'max,pauth-impdef=on'], append: [] },
};

/** Reads the partition table and the boot partition's config.txt and cmdline.txt. */
export async function readBootPartition(image: string): Promise<BootPartitionFiles> {
  const { stdout } = await runTool('sfdisk', ['--json', image]);
  const table = JSON.parse(stdout) as { partitiontable: { sectorsize?: number; partitions: { start: number; type: string }[] } };
  const sector = table.partitiontable.sectorsize ?? 512;
  const first = table.partitiontable.partitions[0];
  if (!first) throw new Error(`${image}: no partitions`);
  const offsetBytes = first.start * sector;
  const fat = `${image}@@${offsetBytes}`;
  const config = (await runTool('mtype', ['-i', fat, '::/config.txt'], { reject: false })).stdout ?? '';
  let kernel = 'vmlinuz';
  let initrd: string | undefined = 'initrd.img';
  for (const line of config.split('\n').map((l) => l.trim())) {
    const k = /^kernel=(\S+)/.exec(line);
    if (k?.[1]) kernel = k[1];
    const i = /^initramfs\s+(\S+)/.exec(line);
    if (i?.[1]) initrd = i[1];
  }
  if ((await runTool('mdir', ['-i', fat, `::/${initrd}`], { reject: false })).exitCode !== 0) initrd = undefined;
  const cmdline = (await runTool('mtype', ['-i', fat, '::/cmdline.txt'])).stdout.replace(/\s+/g, ' ').trim();
  return { offsetBytes, kernel, initrd, cmdline };
}

/** Whether `program` is an executable in $PATH. */
async function onPath(program: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    if (await access(join(dir, program), constants.X_OK).then(() => true, () => false)) return true;
  }
  return false;
}

/** A free TCP port on 127.0.0.1 (asked of the kernel, then released for qemu to bind). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** Console lines after which a boot goes nowhere. */
const BOOT_FAILED = /Kernel panic|end Kernel panic|You are in emergency mode|Give root password for maintenance/;

/** Joins a guest connection (stdin/stdout, as qemu's guestfwd cmd: gives it) to 127.0.0.1:<port>. */
const BRIDGE = `const s = require('net').connect(Number(process.argv[2]), '127.0.0.1');
process.stdin.pipe(s); s.pipe(process.stdout); s.on('error', () => process.exit(0)); s.on('close', () => process.exit(0));
`;

export class QemuVm {
  private exited = false;
  private exitCode: number | null = null;
  private stopping = false;
  private child!: ChildProcess;
  private readonly hardTimer: NodeJS.Timeout;
  private readonly unregister: () => void;
  /** Guest reboots qemu followed (followReboots). */
  reboots = 0;

  private constructor(
    private readonly options: BootOptions,
    private readonly dir: string,
    private readonly disk: string,
    readonly consoleLog: string,
    /** The 127.0.0.1 port forwarded to the guest's ssh (user-mode networking only). */
    readonly sshPort: number | undefined,
    readonly startedAt: number,
  ) {
    this.hardTimer = setTimeout(() => this.child.kill('SIGKILL'), options.hardTimeoutMs ?? 15 * 60_000);
    this.hardTimer.unref();
    // On exit or a signal: qemu by its PID (the current one: a followed reboot starts a new qemu),
    // and its temp dir (a disk copy of several hundred MB).
    this.unregister = registerCleanup(() => {
      this.stopping = true;
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });
  }

  /** Copies the image and starts qemu on the copy. */
  static async boot(options: BootOptions): Promise<QemuVm> {
    const arch = options.arch ?? 'amd64';
    if (!(await onPath(QEMU[arch].binary))) {
      throw new Error(`${QEMU[arch].binary} is not installed (hint: apt-get install ${arch === 'amd64' ? 'qemu-system-x86' : 'qemu-system-arm'})`);
    }
    if (isTap(options.network) && options.guestForwards?.length) throw new Error('guestForwards need the user-mode network');
    const dir = await mkdtemp(join(tmpdir(), 'pibake-vm-'));
    let vm: QemuVm | undefined;
    try {
      const disk = join(dir, 'disk.img');
      await runTool('cp', ['--reflink=auto', '--sparse=always', options.image, disk]);
      const consoleLog = options.consoleLog ?? join(dir, 'console.log');
      await mkdir(dirname(consoleLog), { recursive: true });
      await writeFile(consoleLog, '');
      if (options.guestForwards?.length) await writeFile(join(dir, 'bridge.cjs'), BRIDGE);
      const sshPort = isTap(options.network) ? undefined : await freePort();
      vm = new QemuVm(options, dir, disk, consoleLog, sshPort, Date.now());
      await vm.launch();
      return vm;
    } catch (error) {
      vm?.unregister();
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Extracts kernel and initrd from the disk's boot partition as it is now, and starts qemu. */
  private async launch(): Promise<void> {
    const arch = this.options.arch ?? 'amd64';
    const spec = QEMU[arch];
    const boot = await readBootPartition(this.disk);
    const fat = `${this.disk}@@${boot.offsetBytes}`;
    const kernel = join(this.dir, 'kernel');
    await rm(kernel, { force: true });
    await runTool('mcopy', ['-n', '-i', fat, `::/${boot.kernel}`, kernel]);
    const initrdArgs: string[] = [];
    if (boot.initrd) {
      await rm(join(this.dir, 'initrd'), { force: true });
      await runTool('mcopy', ['-n', '-i', fat, `::/${boot.initrd}`, join(this.dir, 'initrd')]);
      initrdArgs.push('-initrd', join(this.dir, 'initrd'));
    }
    const network = this.options.network;
    const forwards = (this.options.guestForwards ?? [])
      .map((f) => `,guestfwd=tcp:${f.guestIp}:${f.guestPort}-cmd:${process.execPath} ${join(this.dir, 'bridge.cjs')} ${f.hostPort}`).join('');
    const nic = isTap(network)
      ? [
        '-netdev', `tap,id=n0,ifname=${network.tap},script=no,downscript=no`,
        '-device', `virtio-net-pci,netdev=n0,mac=${network.mac}`,
      ]
      : [
        '-netdev', `user,id=n0,restrict=on,net=${network.cidr},host=${network.gateway},hostfwd=tcp:127.0.0.1:${this.sshPort}-${network.guestIp}:22${forwards}`,
        '-device', 'virtio-net-pci,netdev=n0',
      ];
    const args = [
      '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none',
      ...spec.machine, '-accel', 'tcg',
      '-m', String(this.options.memoryMiB ?? 1024), '-smp', String(this.options.cpus ?? 2),
      '-kernel', kernel, ...initrdArgs,
      // Under emulation udev's coldplug can outlast systemd's 90 s device timeout (trixie drops to
      // emergency mode waiting for the boot partition): a longer one, for qemu only, never on a card.
      '-append', [boot.cmdline, `console=${spec.console}`, 'systemd.default_device_timeout_sec=900', ...spec.append].join(' '),
      // cache=unsafe: the disk is a throwaway copy, so its writes need not reach the host disk.
      '-drive', `file=${this.disk},format=raw,if=virtio,cache=unsafe`,
      ...nic,
      '-object', 'rng-random,filename=/dev/urandom,id=rng0', '-device', 'virtio-rng-pci,rng=rng0',
      '-chardev', `file,id=ser0,path=${this.consoleLog},append=on`, '-serial', 'chardev:ser0',
      ...(this.options.followReboots ? ['-no-reboot'] : []),
    ];
    // `ip netns exec` and setpriv both exec: the child's PID is qemu's.
    const inNetns = isTap(network) ? ['ip', 'netns', 'exec', network.netns] : [];
    const argv = [...inNetns, 'setpriv', '--pdeathsig', 'KILL', spec.binary, ...args];
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    // once() rejects when 'error' comes first, e.g. ip or setpriv is missing.
    await once(child, 'spawn').catch((e: Error) => {
      throw new Error(`${argv[0]} did not start: ${e.message} (hint: apt-get install iproute2 util-linux)`);
    });
    this.child = child;
    if (this.stopping) child.kill('SIGKILL'); // stop() came while a followed reboot was starting
    this.commandLine = argv;
    this.stderrTail = () => stderr;
    this.exited = false;
    child.once('exit', (code) => {
      // -no-reboot: a guest reboot ends qemu with 0; start the next boot from the same disk.
      if (code === 0 && this.options.followReboots && !this.stopping) {
        this.reboots++;
        this.launch().catch((error: Error) => {
          stderr += `\nrestart after the guest rebooted failed: ${error.message}`;
          this.exited = true;
          this.exitCode = code;
        });
        return;
      }
      this.exited = true;
      this.exitCode = code;
    });
  }

  commandLine: string[] = [];
  stderrTail: () => string = () => '';

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The console so far. */
  async console(): Promise<string> {
    return readFile(this.consoleLog, 'utf8');
  }

  /**
   * What went wrong with this VM so far, or undefined: qemu exited, or the console shows a kernel
   * panic or an emergency shell. For callers that poll something else (a service) meanwhile.
   */
  async problem(failOn: RegExp = BOOT_FAILED): Promise<string | undefined> {
    return this.failure(await this.console(), failOn);
  }

  private failure(text: string, failOn: RegExp): string | undefined {
    const tail = () => text.split('\n').slice(-25).join('\n');
    if (failOn.test(text)) return `boot failed (${failOn.exec(text)?.[0]}); console tail:\n${tail()}`;
    if (this.exited) return `qemu exited (${this.exitCode}): ${this.stderrTail()}\nconsole tail:\n${tail()}`;
    return undefined;
  }

  /**
   * Waits until the console matches `pattern`; fails early when qemu exits, the kernel panics or
   * `failOn` matches, and after `timeoutMs`. Errors carry the console's last lines.
   */
  async waitForConsole(pattern: RegExp, timeoutMs: number, failOn: RegExp = BOOT_FAILED): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    const handle = await open(this.consoleLog, 'r');
    try {
      let text = '';
      for (;;) {
        const { size } = await handle.stat();
        if (size > Buffer.byteLength(text)) {
          const buffer = Buffer.alloc(size - Buffer.byteLength(text));
          await handle.read(buffer, 0, buffer.length, Buffer.byteLength(text));
          text += buffer.toString('latin1');
        }
        const match = pattern.exec(text);
        if (match) return match;
        const failure = this.failure(text, failOn);
        if (failure) throw new Error(`${failure}\n(while waiting for ${pattern})`);
        if (Date.now() > deadline) {
          throw new Error(`no ${pattern} on the console after ${timeoutMs / 1000} s; console tail:\n${text.split('\n').slice(-25).join('\n')}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    } finally {
      await handle.close();
    }
  }

  /** Stops qemu by its PID (SIGTERM, then SIGKILL) and removes the VM's temp dir. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.hardTimer);
    if (!this.exited && this.child.exitCode === null && this.child.signalCode === null) {
      const exit = once(this.child, 'exit');
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    }
    await rm(this.dir, { recursive: true, force: true });
    this.unregister();
  }
}

export interface SshTarget {
  user: string;
  /** Private key file (0600). */
  keyFile: string;
  /** Default 127.0.0.1 (the user-mode network's forward). */
  host?: string;
  /** Default 22. */
  port?: number;
  /** Run ssh inside this network namespace (a client on the VMs' bridge). */
  netns?: string;
  /**
   * known_hosts to hold the guest to (e.g. the one `pibake build` writes): the guest must present
   * the host key baked for it. Without it, any host key is accepted.
   */
  knownHosts?: string;
}

/**
 * Runs one command on the guest; never asks anything interactively. A connection that fails before
 * the command ran (sshd of an emulated guest on a busy host can miss the banner exchange) is tried
 * again, up to `attempts` times.
 */
export async function ssh(target: SshTarget, command: string, timeoutMs = 60_000, attempts = 3) {
  const hostKeys = target.knownHosts
    ? ['-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${target.knownHosts}`]
    : ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'];
  const argv = [
    'ssh', '-i', target.keyFile, '-p', String(target.port ?? 22), ...hostKeys, '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=30', '-o', 'LogLevel=ERROR',
    `${target.user}@${target.host ?? '127.0.0.1'}`, command,
  ];
  const [file, ...args] = target.netns ? ['ip', 'netns', 'exec', target.netns, ...argv] : argv;
  for (let attempt = 1; ; attempt++) {
    const result = await runTool(file as string, args, { reject: false, timeout: timeoutMs, stdin: 'ignore' });
    const unconnected = result.exitCode === 255 && !result.stdout &&
      /timed out|Connection refused|Connection reset|banner exchange|Connection closed/.test(`${result.stderr ?? ''}`);
    if (!unconnected || attempt >= attempts) return result;
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

/** Retries a trivial ssh command until the guest's sshd accepts the key. */
export async function waitForSsh(target: SshTarget, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const result = await ssh(target, 'true', 45_000, 1);
    if (result.exitCode === 0) return;
    last = `${result.stderr ?? ''}`.trim();
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  throw new Error(`ssh ${target.user}@${target.host ?? '127.0.0.1'}:${target.port ?? 22} not accepted after ${timeoutMs / 1000} s: ${last}`);
}
