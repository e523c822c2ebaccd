/**
 * The qemu harness's fast parts, on a small image made here (MBR + FAT at sector 16384, as in
 * Raspberry Pi OS). The full boot is test/boot/boot.test.ts (npm run test:boot).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../builder/common/exec.ts';
import { NetnsLab } from './netns.ts';
import { QemuVm, freePort, macForAddress, readBootPartition } from './qemu.ts';
import { waitFor } from './wait.ts';

const isRoot = process.getuid?.() === 0;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pibake-qemu-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A 48 MiB sparse image: p1 FAT32 at sector 16384 holding `files`, p2 empty. */
async function smallImage(name: string, files: Record<string, string | Buffer>): Promise<string> {
  const image = join(dir, name);
  await runTool('truncate', ['-s', '48M', image]);
  await runTool('sfdisk', ['--quiet', image], {
    input: 'label: dos\nlabel-id: 0x1234abcd\nunit: sectors\nstart=16384, size=69632, type=c\nstart=86016, type=83\n',
  });
  await runTool('mkfs.vfat', ['--offset', '16384', '-F', '32', '-s', '1', '-n', 'bootfs', image, String(69632 / 2)]);
  for (const [file, content] of Object.entries(files)) {
    const local = join(dir, `${name}-${file}`);
    await writeFile(local, content);
    await runTool('mcopy', ['-i', `${image}@@${16384 * 512}`, local, `::/${file}`]);
  }
  return image;
}

describe('readBootPartition', () => {
  it('follows config.txt to the kernel and initramfs and flattens cmdline.txt', async () => {
    const image = await smallImage('pi.img', {
      'config.txt': '[all]\n# comment\nkernel=kernel8.img\ninitramfs initramfs8 followkernel\n',
      'cmdline.txt': 'console=serial0,115200 console=tty1\n  root=PARTUUID=1234abcd-02 rootwait\n',
      'kernel8.img': 'k',
      initramfs8: 'i',
    });
    expect(await readBootPartition(image)).toEqual({
      offsetBytes: 16384 * 512,
      kernel: 'kernel8.img',
      initrd: 'initramfs8',
      cmdline: 'console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootwait',
    });
  });

  it('falls back to vmlinuz and leaves out an initrd the partition does not have', async () => {
    const image = await smallImage('plain.img', { 'cmdline.txt': 'root=/dev/vda2\n', vmlinuz: 'k' });
    const boot = await readBootPartition(image);
    expect(boot.kernel).toBe('vmlinuz');
    expect(boot.initrd).toBeUndefined();
  });
});

describe('QemuVm', () => {
  it('reports qemu exiting instead of waiting out the timeout, and never writes the image', async () => {
    const image = await smallImage('broken.img', { 'cmdline.txt': 'root=/dev/vda2\n', vmlinuz: Buffer.alloc(4096, 0x5a) });
    const before = createHash('sha256').update(await readFile(image)).digest('hex');
    const vm = await QemuVm.boot({
      image,
      network: { cidr: '10.0.0.0/24', gateway: '10.0.0.1', guestIp: '10.0.0.10' },
      hardTimeoutMs: 60_000,
    });
    try {
      await expect(vm.waitForConsole(/never printed/, 50_000)).rejects.toThrow(/qemu exited/);
    } finally {
      await vm.stop();
    }
    expect(createHash('sha256').update(await readFile(image)).digest('hex')).toBe(before);
  });
});

/**
 * The smallest x86 kernel qemu boots: a multiboot header (a.out kludge: load at 1 MiB, enter right
 * after the header) followed by `jmp $`. The guest spins forever, so qemu keeps running.
 */
function spinningKernel(): Buffer {
  const magic = 0x1badb002;
  const flags = 0x00010000;
  const header = [magic, flags, (-(magic + flags)) >>> 0, 0x100000, 0x100000, 0, 0, 0x100000 + 32];
  const code = Buffer.from([0xeb, 0xfe]);
  const buffer = Buffer.alloc(header.length * 4 + code.length);
  header.forEach((word, i) => buffer.writeUInt32LE(word, i * 4));
  code.copy(buffer, header.length * 4);
  return buffer;
}

describe.runIf(isRoot)('QemuVm on a tap device of a test network namespace', () => {
  it('runs qemu inside the namespace, holding the tap on the bridge, with its own MAC, until stopped', async () => {
    const lab = await NetnsLab.create('pibakeqt');
    try {
      const tap = await lab.addTap();
      const image = await smallImage('spin.img', { 'cmdline.txt': 'console=ttyS0\n', vmlinuz: spinningKernel() });
      const vm = await QemuVm.boot({
        image, memoryMiB: 64, cpus: 1, hardTimeoutMs: 60_000,
        network: { netns: lab.switchNs, tap, mac: macForAddress('10.0.0.11') },
      });
      const pid = vm.pid as number;
      try {
        // The tap has carrier only while a process holds it open: qemu, from inside the namespace.
        const link = await waitFor('carrier on the tap', 30_000, async () => {
          const { stdout } = await runTool('ip', ['-n', lab.switchNs, '-o', 'link', 'show', 'dev', tap]);
          return stdout.includes('LOWER_UP') ? stdout : undefined;
        }, 200);
        expect(link).toContain('master br0');
        expect((await runTool('ip', ['netns', 'identify', String(pid)])).stdout.trim()).toBe(lab.switchNs);
        expect(vm.commandLine.join(' ')).toContain('mac=52:54:00:00:00:0b');
        expect(await vm.problem()).toBeUndefined();
      } finally {
        await vm.stop();
      }
      expect(() => process.kill(pid, 0)).toThrow();
    } finally {
      await lab.destroy();
    }
  });
});

describe('QemuVm when the test process dies', () => {
  it('takes its qemu with it, even on SIGKILL (no hook runs then; the kernel sends qemu its parent-death signal)', async () => {
    const image = await smallImage('orphan.img', { 'cmdline.txt': 'console=ttyS0\n', vmlinuz: spinningKernel() });
    const script = join(dir, 'boot-one.mts');
    await writeFile(script, [
      `import { QemuVm } from ${JSON.stringify(new URL('./qemu.ts', import.meta.url).pathname)};`,
      `const vm = await QemuVm.boot({ image: ${JSON.stringify(image)}, memoryMiB: 64, cpus: 1,`,
      `  network: { cidr: '10.0.0.0/24', gateway: '10.0.0.1', guestIp: '10.0.0.10' } });`,
      'console.log(vm.pid);',
      'setInterval(() => undefined, 1000);',
    ].join('\n'));
    // The child's VM folder goes under ours (TMPDIR): nothing removes it when the child is killed.
    const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TMPDIR: dir } });
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    const qemu = Number(line.toString().trim());
    expect(qemu).toBeGreaterThan(0);
    expect(() => process.kill(qemu, 0)).not.toThrow();
    child.kill('SIGKILL');
    await waitFor('qemu gone after its parent was killed', 10_000, async () => {
      try {
        process.kill(qemu, 0);
        return undefined;
      } catch {
        return true;
      }
    }, 100);
  });
});

describe('macForAddress', () => {
  it('makes one locally administered MAC per address, in qemu\'s prefix', () => {
    expect(macForAddress('10.0.0.11')).toBe('52:54:00:00:00:0b');
    expect(macForAddress('192.168.17.254')).toBe('52:54:00:a8:11:fe');
    expect(() => macForAddress('10.0.0')).toThrow(/not an IPv4 address/);
  });
});

describe('freePort', () => {
  it('returns a port on 127.0.0.1 that can be bound', async () => {
    const port = await freePort();
    const server = createServer().listen(port, '127.0.0.1');
    await once(server, 'listening');
    server.close();
    await once(server, 'close');
    expect(port).toBeGreaterThan(0);
  });
});
