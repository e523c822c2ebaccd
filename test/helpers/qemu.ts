/**
 * Boots a Raspberry Pi OS-layout image under qemu for the boot test, the way a Pi's firmware would:
 * kernel, initrd and kernel command line are read out of the image's own boot partition (mtools),
 * so what pibake wrote there (cmdline.txt, config.txt, seeds) is what boots. Software emulation
 * only (TCG); see /work/shared/docs/test-harness-notes.md.
 *
 * Networking is qemu's user-mode network with restrict=on: the guest can reach nothing outside
 * qemu. The slirp network is made equal to the inventory's: its net is the cluster CIDR and its
 * host address the gateway, so a node configured with a static address answers on that address,
 * and an ssh forward on 127.0.0.1 reaches it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool } from '../../builder/common/exec.ts';

export type VmArch = 'amd64' | 'arm64';

export interface VmNetwork {
  /** The cluster network, e.g. 10.0.0.0/24; becomes slirp's net. */
  cidr: string;
  /** The gateway of the inventory; becomes slirp's host address (what the guest routes through). */
  gateway: string;
  /** The node's static address; ssh on 127.0.0.1:<sshPort> is forwarded to it. */
  guestIp: string;
}

export interface BootOptions {
  /** The image to boot. It is never written: qemu runs on a reflink/sparse copy in a temp dir. */
  image: string;
  arch?: VmArch;
  memoryMiB?: number;
  cpus?: number;
  network: VmNetwork;
  /**
   * The only other places the guest may reach: a TCP address inside the guest's network that
   * qemu connects to a port on this machine's 127.0.0.1 (one bridge process per connection).
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
  /** Where the serial console is logged (default: in the VM's temp dir, removed by stop()). */
  consoleLog?: string;
}

/** Where the boot partition is and what the firmware would load from it. */
export interface BootPartitionFiles {
  offsetBytes: number;
  kernel: string;
  initrd?: string;
  cmdline: string;
}

const QEMU: Record<VmArch, { binary: string; console: string; machine: string[] }> = {
  amd64: { binary: 'qemu-system-x86_64', console: 'ttyS0', machine: ['-machine', 'pc', '-cpu', 'max'] },
  // pauth-impdef: pointer authentication emulated cheaply (harness notes: 49 s instead of 125 s).
  arm64: { binary: 'qemu-system-aarch64', console: 'ttyAMA0', machine: ['-machine', 'virt', '-cpu', 'max,pauth-impdef=on'] },
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
  /** Guest reboots qemu followed (followReboots). */
  reboots = 0;

  private constructor(
    private readonly options: BootOptions,
    private readonly dir: string,
    private readonly disk: string,
    readonly consoleLog: string,
    readonly sshPort: number,
    readonly startedAt: number,
  ) {
    this.hardTimer = setTimeout(() => this.child.kill('SIGKILL'), options.hardTimeoutMs ?? 15 * 60_000);
    this.hardTimer.unref();
  }

  /** Copies the image and starts qemu on the copy. */
  static async boot(options: BootOptions): Promise<QemuVm> {
    const dir = await mkdtemp(join(tmpdir(), 'pibake-vm-'));
    try {
      const disk = join(dir, 'disk.img');
      await runTool('cp', ['--reflink=auto', '--sparse=always', options.image, disk]);
      const consoleLog = options.consoleLog ?? join(dir, 'console.log');
      await writeFile(consoleLog, '');
      if (options.guestForwards?.length) await writeFile(join(dir, 'bridge.cjs'), BRIDGE);
      const vm = new QemuVm(options, dir, disk, consoleLog, await freePort(), Date.now());
      await vm.launch();
      return vm;
    } catch (error) {
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
    const { cidr, gateway, guestIp } = this.options.network;
    const forwards = (this.options.guestForwards ?? [])
      .map((f) => `,guestfwd=tcp:${f.guestIp}:${f.guestPort}-cmd:${process.execPath} ${join(this.dir, 'bridge.cjs')} ${f.hostPort}`).join('');
    const args = [
      '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none',
      ...spec.machine, '-accel', 'tcg',
      '-m', String(this.options.memoryMiB ?? 1024), '-smp', String(this.options.cpus ?? 2),
      '-kernel', kernel, ...initrdArgs,
      // Under emulation udev's coldplug can outlast systemd's 90 s device timeout (trixie drops to
      // emergency mode waiting for the boot partition): a longer one, for qemu only, never on a card.
      '-append', `${boot.cmdline} console=${spec.console} systemd.default_device_timeout_sec=900`,
      // cache=unsafe: the disk is a throwaway copy, so its writes need not reach the host disk.
      '-drive', `file=${this.disk},format=raw,if=virtio,cache=unsafe`,
      '-netdev', `user,id=n0,restrict=on,net=${cidr},host=${gateway},hostfwd=tcp:127.0.0.1:${this.sshPort}-${guestIp}:22${forwards}`,
      '-device', 'virtio-net-pci,netdev=n0',
      '-object', 'rng-random,filename=/dev/urandom,id=rng0', '-device', 'virtio-rng-pci,rng=rng0',
      '-chardev', `file,id=ser0,path=${this.consoleLog},append=on`, '-serial', 'chardev:ser0',
      ...(this.options.followReboots ? ['-no-reboot'] : []),
    ];
    const child = spawn(spec.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    // once() rejects when 'error' comes first, e.g. qemu is not installed.
    await once(child, 'spawn').catch((e: Error) => {
      throw new Error(`${spec.binary} did not start: ${e.message} (hint: apt-get install ${arch === 'amd64' ? 'qemu-system-x86' : 'qemu-system-arm'})`);
    });
    this.child = child;
    this.commandLine = [spec.binary, ...args];
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
   * Waits until the console matches `pattern`; fails early when qemu exits, the kernel panics or
   * `failOn` matches, and after `timeoutMs`. Errors carry the console's last lines.
   */
  async waitForConsole(
    pattern: RegExp,
    timeoutMs: number,
    failOn: RegExp = /Kernel panic|end Kernel panic|You are in emergency mode|Give root password for maintenance/,
  ): Promise<RegExpMatchArray> {
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
        const tail = () => text.split('\n').slice(-25).join('\n');
        if (failOn.test(text)) throw new Error(`boot failed (${failOn.exec(text)?.[0]}); console tail:\n${tail()}`);
        if (this.exited) throw new Error(`qemu exited (${this.exitCode}) before ${pattern}: ${this.stderrTail()}\nconsole tail:\n${tail()}`);
        if (Date.now() > deadline) throw new Error(`no ${pattern} on the console after ${timeoutMs / 1000} s; console tail:\n${tail()}`);
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
  }
}

export interface SshTarget {
  port: number;
  user: string;
  /** Private key file (0600). */
  keyFile: string;
}

/** Runs one command on the guest over the 127.0.0.1 forward; never asks anything interactively. */
export async function ssh(target: SshTarget, command: string, timeoutMs = 60_000) {
  return runTool(
    'ssh',
    [
      '-i', target.keyFile, '-p', String(target.port),
      '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
      '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR',
      `${target.user}@127.0.0.1`, command,
    ],
    { reject: false, timeout: timeoutMs, stdin: 'ignore' },
  );
}

/** Retries a trivial ssh command until the guest's sshd accepts the key. */
export async function waitForSsh(target: SshTarget, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const result = await ssh(target, 'true', 20_000);
    if (result.exitCode === 0) return;
    last = `${result.stderr ?? ''}`.trim();
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  throw new Error(`ssh ${target.user}@127.0.0.1:${target.port} not accepted after ${timeoutMs / 1000} s: ${last}`);
}
