/**
 * Proof on real parts: a node image boots (qemu, software emulation), cloud-init reads the NoCloud
 * seeds from the boot partition, and the node comes up as described — reachable over ssh with the
 * admin key at its static address, with its hostname, user, files and services.
 *
 * For now the image is the test base (scripts/make-test-base.sh) with hand-written seeds. To prove
 * a pibake-built image instead, replace `seededTestBase()` below by the path pibake wrote
 * (output/<cluster>/<node>.img) — its seeds are already on it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../builder/common/exec.ts';
import { bootAndCheck, type NodeExpectations } from './boot-and-check.ts';
import { writeSeeds, type SeedNode } from './seed.ts';
import { baseFacts, consoleLogPath, ensureTestBase } from './test-base.ts';

// PIBAKE_BOOT_ARCH=arm64 boots the arm64 base under qemu-system-aarch64 (opt-in: slow here).
const arch = process.env.PIBAKE_BOOT_ARCH === 'arm64' ? 'arm64' : 'amd64';
let dir: string;
let base: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pibake-boot-test-'));
  base = await ensureTestBase(arch);
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A fresh admin key pair for this run only. */
async function adminKey(): Promise<{ keyFile: string; publicKey: string }> {
  const keyFile = join(dir, 'admin_ed25519');
  await runTool('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pibake-boot-test', '-f', keyFile]);
  return { keyFile, publicKey: await readFile(`${keyFile}.pub`, 'utf8') };
}

/** A sparse copy of the test base with the node's seeds on its boot partition. */
async function seededTestBase(node: SeedNode): Promise<string> {
  const image = join(dir, `${node.hostname}.img`);
  execFileSync('cp', ['--reflink=auto', '--sparse=always', base, image]);
  await writeSeeds(image, node);
  return image;
}

describe('first boot of a node image under qemu', () => {
  it('comes up as the node its seeds describe', async () => {
    const key = await adminKey();
    const marker = `node web1 of cluster boottest, ${new Date().toISOString()}\n`;
    const node: SeedNode = {
      hostname: 'web1',
      domain: 'boottest.internal',
      address: '10.0.0.10/24',
      gateway: '10.0.0.1',
      dns: ['10.0.0.1'],
      adminUser: 'admin',
      adminPublicKey: key.publicKey,
      timezone: 'Europe/London',
      locale: 'en_GB.UTF-8',
      files: [{ path: '/etc/pibake/node', content: marker, permissions: '0640' }],
    };
    const expected: NodeExpectations = {
      hostname: 'web1',
      address: '10.0.0.10/24',
      cidr: '10.0.0.0/24',
      gateway: '10.0.0.1',
      admin: { user: 'admin', keyFile: key.keyFile, groups: ['sudo', 'adm'] },
      // The base has no role packages (as Raspberry Pi OS Lite): only its own services.
      services: ['ssh', 'NetworkManager'],
      files: [{ path: '/etc/pibake/node', content: marker }],
      timezone: 'Europe/London',
      // Where the base has NetworkManager (as Raspberry Pi OS does), nmcli must show the address.
      networkManager: (await baseFacts(base)).networkManager,
    };

    const image = await seededTestBase(node);  // ← the one line to change for a pibake-built image
    const report = await bootAndCheck(image, expected, {
      arch,
      bootTimeoutMs: (arch === 'arm64' ? 20 : 10) * 60_000,
      keepConsoleAs: consoleLogPath('seeded-test-base'),
    });
    console.log(`boot test: cloud-init finished ${report.cloudInitSeconds.toFixed(0)} s after qemu started (${report.finishedLine})`);
    expect(report.finishedLine).toMatch(/DataSourceNoCloud/);
  });
});
