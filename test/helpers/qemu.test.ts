/**
 * The qemu harness's fast parts, on a small image made here (MBR + FAT at sector 16384, as in
 * Raspberry Pi OS). The full boot is test/boot/boot.test.ts (npm run test:boot).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../builder/common/exec.ts';
import { QemuVm, freePort, readBootPartition } from './qemu.ts';

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
