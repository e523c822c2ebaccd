/**
 * Proof on real parts, end to end: `pibake build` bakes a cluster from the test base, and a node
 * image it wrote boots under qemu and comes up as the inventory says — hostname, static address,
 * the admin key, its role's services. pibake wrote every seed; the test only reads the result.
 *
 * One VM: web1, the PostgreSQL primary with nginx and the web app (the richest node). lb1 is in
 * the inventory because validation wants a load balancer; it is built but not booted.
 */
import { execa } from 'execa';
import { load } from 'js-yaml';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRaspiosImage } from '../../builder/image/raspios.ts';
import { loadInventory } from '../../builder/inventory/load.ts';
import { loadRoles } from '../../builder/render/roles.ts';
import { bootAndCheck, expectationsFor } from './boot-and-check.ts';
import { consoleLogPath, ensureTestBase } from './test-base.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let dir: string;
let base: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pibake-boot-build-'));
  base = await ensureTestBase('amd64');
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('a pibake-built node image', () => {
  it('boots and comes up as its inventory entry describes', async () => {
    // The base is Debian bookworm (os-release) with the Trixie kind of first boot (cloud-init,
    // 99_raspberry-pi.cfg). pibake must pick cloud-init seeds for it (docs/testing.md).
    const generation = (await openRaspiosImage(base)).generation;
    expect(generation, 'pibake must give a base with cloud-init and 99_raspberry-pi.cfg cloud-init seeds (generation trixie)').toBe('trixie');
    const keyFile = join(dir, 'admin_ed25519');
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pibake-boot-test', '-f', keyFile]);
    const config = join(dir, 'cluster.yaml');
    await writeFile(config, [
      'cluster: { name: boottest, domain: boottest.internal }',
      'network: { cidr: 10.0.0.0/24, gateway: 10.0.0.1, dns: [10.0.0.1] }',
      `base: { path: ${JSON.stringify(base)} }`,
      'admin:',
      '  user: admin',
      `  ssh_keys: [${JSON.stringify(`${keyFile}.pub`)}]`,
      // Generated, hashed with yescrypt, kept off the boot partition and set at first boot.
      '  password: generate',
      'locale: { timezone: Europe/London, locale: en_GB.UTF-8, keyboard: gb }',
      // The test base is Debian bookworm: PostgreSQL 15, whatever generation pibake files it under.
      'roles: { postgresql: { version: 15 } }',
      'nodes:',
      '  - { name: lb1, role: lb, ip: 10.0.0.10 }',
      '  - { name: web1, role: primary, ip: 10.0.0.11 }',
      '',
    ].join('\n'));
    const out = join(dir, 'output');
    // The real command line, with its own cache so the machine's cache is not touched.
    await execa('node', [join(ROOT, 'bin/pibake.js'), 'build', '--config', config, '--base', base, '--out', out,
      '--node', 'web1', '--node', 'lb1', '--cache-dir', join(dir, 'cache')], { cwd: dir, stdin: 'ignore', stderr: 'inherit' });

    const roles = await loadRoles(join(ROOT, 'roles'));
    const inventory = await loadInventory(config, roles);
    const services = [...(roles.get('primary')?.services ?? [])].map((s) => s.replace(/\.service$/, ''));
    expect(services.length).toBeGreaterThan(0);
    const passwordHash = (load(await readFile(join(dir, 'cluster.secrets.yaml'), 'utf8')) as { admin: { password_hash: string } }).admin.password_hash;
    expect(passwordHash).toMatch(/^\$y\$/);
    const report = await bootAndCheck(join(out, 'boottest', 'web1.img'), expectationsFor(inventory, 'web1', { keyFile, services, passwordHash }), {
      keepConsoleAs: consoleLogPath('pibake-web1'),
    });
    console.log(`pibake-built web1: cloud-init finished ${report.cloudInitSeconds.toFixed(0)} s after qemu started`);
    expect(await readFile(`${keyFile}.pub`, 'utf8')).toMatch(/^ssh-ed25519 /);
  });
});
