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

export class QemuVm {
  private exited = false;
  private exitCode: number | null = null;
  private readonly hardTimer: NodeJS.Timeout;

  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    readonly consoleLog: string,
    readonly sshPort: number,
    readonly startedAt: number,
    readonly commandLine: string[],
    hardTimeoutMs: number,
  ) {
    child.once('exit', (code) => {
      this.exited = true;
      this.exitCode = code;
    });
    this.hardTimer = setTimeout(() => child.kill('SIGKILL'), hardTimeoutMs);
    this.hardTimer.unref();
  }

  /** Copies the image, extracts kernel and initrd from its boot partition and starts qemu. */
  static async boot(options: BootOptions): Promise<QemuVm> {
    const arch = options.arch ?? 'amd64';
    const spec = QEMU[arch];
    const dir = await mkdtemp(join(tmpdir(), 'pibake-vm-'));
    try {
      const disk = join(dir, 'disk.img');
      await runTool('cp', ['--reflink=auto', '--sparse=always', options.image, disk]);
      const boot = await readBootPartition(disk);
      const fat = `${disk}@@${boot.offsetBytes}`;
      const kernel = join(dir, 'kernel');
      await runTool('mcopy', ['-n', '-i', fat, `::/${boot.kernel}`, kernel]);
      const initrdArgs: string[] = [];
      if (boot.initrd) {
        await runTool('mcopy', ['-n', '-i', fat, `::/${boot.initrd}`, join(dir, 'initrd')]);
        initrdArgs.push('-initrd', join(dir, 'initrd'));
      }
      const sshPort = await freePort();
      const { cidr, gateway, guestIp } = options.network;
      const consoleLog = options.consoleLog ?? join(dir, 'console.log');
      await writeFile(consoleLog, '');
      const args = [
        '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none',
        ...spec.machine, '-accel', 'tcg',
        '-m', String(options.memoryMiB ?? 1024), '-smp', String(options.cpus ?? 2),
        '-kernel', kernel, ...initrdArgs,
        // Under emulation udev's coldplug can outlast systemd's 90 s device timeout (trixie drops to
        // emergency mode waiting for the boot partition): a longer one, for qemu only, never on a card.
        '-append', `${boot.cmdline} console=${spec.console} systemd.default_device_timeout_sec=900`,
        // cache=unsafe: the disk is a throwaway copy, so its writes need not reach the host disk.
        '-drive', `file=${disk},format=raw,if=virtio,cache=unsafe`,
        '-netdev', `user,id=n0,restrict=on,net=${cidr},host=${gateway},hostfwd=tcp:127.0.0.1:${sshPort}-${guestIp}:22`,
        '-device', 'virtio-net-pci,netdev=n0',
        '-object', 'rng-random,filename=/dev/urandom,id=rng0', '-device', 'virtio-rng-pci,rng=rng0',
        '-chardev', `file,id=ser0,path=${consoleLog}`, '-serial', 'chardev:ser0',
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
      const vm = new QemuVm(child, dir, consoleLog, sshPort, Date.now(), [spec.binary, ...args], options.hardTimeoutMs ?? 15 * 60_000);
      vm.stderrTail = () => stderr;
      return vm;
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

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
    clearTimeout(this.hardTimer);
    if (!this.exited) {
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
