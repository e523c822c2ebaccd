/**
 * Proof on real parts of release images (pibake build --sealed), on the trixie test base under qemu:
 *
 * 1. A sealed lb1 written to a card as it is (never sealed) stops its first boot before cloud-init
 *    or any service starts, says on the console that the card is sealed and what fixes it, and
 *    halts: it never comes up half-configured.
 * 2. The operator's way: `pibake secrets` makes cluster.secrets.yaml (none existed: CI's build
 *    needed none), `pibake seal` adds lb1's secret files, and that card boots offline and comes up:
 *    ssh with the generated admin key (kept in a root-only file, AuthorizedKeysFile) and the host
 *    key the secrets file holds, the password hash set, HAProxy's statistics answering with the
 *    sealed-in password, keepalived holding the floating address; `pibake status` from the client
 *    checks it against the sealed build (no known_hosts: derived from the secrets file).
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { load } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInventory } from '../../builder/inventory/load.ts';
import { loadRoles } from '../../builder/render/roles.ts';
import { GENERATED_KEYS_DIR } from '../../builder/render/seeds.ts';
import { knownHosts, readExistingSecrets } from '../../builder/render/secrets.ts';
import type { StatusReport } from '../../builder/status/types.ts';
import { QemuVm, ssh } from '../helpers/qemu.ts';
import { ensureTestBase, baseFacts, consoleLogPath, ROLE_PACKAGES } from './test-base.ts';
import { VmCluster, type BuiltCluster } from './vm-cluster.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const arch = process.env.PIBAKE_BOOT_ARCH === 'arm64' ? 'arm64' : 'amd64';
const CLUSTER = 'sealtest';
let dir: string;
let base: string;
let config: string;
let out: string;
let cluster: VmCluster | undefined;

const pibake = (args: string[]) => execa(process.execPath, [join(ROOT, 'bin/pibake.js'), ...args], { cwd: dir, stdin: 'ignore', all: true, reject: false });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pibake-boot-sealed-'));
  base = await ensureTestBase(arch, 'trixie');
  config = join(dir, 'cluster.yaml');
  out = join(dir, 'output');
  await writeFile(config, [
    `cluster: { name: ${CLUSTER}, domain: ${CLUSTER}.internal }`,
    'network: { cidr: 10.0.0.0/24, gateway: 10.0.0.1, dns: [10.0.0.1], vip: 10.0.0.9 }',
    `base: { path: ${JSON.stringify(base)} }`,
    // The shipped default: a generated admin key, no key of the operator's; and a generated password.
    'admin: { user: admin, generate_ssh_key: true, password: generate }',
    'locale: { timezone: Europe/London, locale: en_GB.UTF-8, keyboard: gb }',
    'nodes:',
    '  - { name: lb1, role: lb, ip: 10.0.0.10 }',
    // The inventory must hold a database and web node; only lb1 is built and booted here.
    '  - { name: web1, role: db, ip: 10.0.0.11 }',
    '',
  ].join('\n'));
});
afterAll(async () => {
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('a sealed release image of lb1 on the trixie test base', () => {
  it('is built with no secrets file; written as it is, its first boot stops with the fix on the console and halts', async () => {
    const started = Date.now();
    const build = await pibake(['build', '--sealed', '--config', config, '--out', out, '--node', 'lb1']);
    expect(build.exitCode, build.all).toBe(0);
    console.log(`sealed build of lb1: ${((Date.now() - started) / 1000).toFixed(0)} s`);
    await expect(stat(join(dir, 'cluster.secrets.yaml')), 'a sealed build reads and makes no secrets').rejects.toThrow();
    await expect(stat(join(out, CLUSTER, 'known_hosts'))).rejects.toThrow();
    expect(JSON.parse(await readFile(join(out, CLUSTER, 'manifest.json'), 'utf8'))).toMatchObject({ sealed: true });

    const vm = await QemuVm.boot({
      image: join(out, CLUSTER, 'lb1.img'), arch, network: { cidr: '10.0.0.0/24', gateway: '10.0.0.1', guestIp: '10.0.0.10' },
      hardTimeoutMs: 20 * 60_000, consoleLog: consoleLogPath('sealed-unsealed-lb1'),
    });
    try {
      await vm.waitForConsole(/THIS CARD IS SEALED/, 15 * 60_000);
      await vm.waitForConsole(/reboot: System halted/, 3 * 60_000);
      const text = await vm.console();
      console.log(`unsealed card halted ${((Date.now() - vm.startedAt) / 1000).toFixed(0)} s after qemu started`);
      expect(text).toMatch(/pibake flash lb1 --device \/dev\/sdX/);
      expect(text).toMatch(/pibake seal lb1\.img --node lb1 --out lb1-card\.img/);
      // Stopped before cloud-init: nothing of the node was set up from the stand-ins' absence.
      expect(text).not.toMatch(/Cloud-init v\. \S+ (running|finished)/);
      expect(text).not.toMatch(/pibake-firstboot: /);
    } finally {
      await vm.stop();
    }
  });

  it('sealed by the operator (pibake secrets, pibake seal), it boots offline and comes up as lb1', async () => {
    const made = await pibake(['secrets', '--config', config]);
    expect(made.exitCode, made.all).toBe(0);
    expect(made.all).toMatch(/^created \S+cluster\.secrets\.yaml /);
    const cards = join(dir, 'cards', CLUSTER);
    await mkdir(cards, { recursive: true });
    const sealed = await pibake(['seal', join(out, CLUSTER, 'lb1.img'), '--node', 'lb1', '--out', join(cards, 'lb1.img'), '--config', config]);
    expect(sealed.exitCode, sealed.all).toBe(0);
    expect((await stat(join(cards, 'lb1.img'))).mode & 0o777).toBe(0o600);

    // What the booted card must match: the secrets file, never anything the build wrote.
    const roles = await loadRoles(join(ROOT, 'roles'));
    const inventory = await loadInventory(config, roles);
    const secrets = await readExistingSecrets(inventory, roles);
    await writeFile(join(cards, 'known_hosts'), knownHosts(inventory, secrets));
    const file = load(await readFile(join(dir, 'cluster.secrets.yaml'), 'utf8')) as { secrets: Record<string, string>; admin: { password_hash: string } };
    const built: BuiltCluster = {
      name: CLUSTER, config, inventory, roles, out: cards, keyFile: join(dir, `${CLUSTER}-admin`), secrets: file.secrets,
      passwordHash: file.admin.password_hash, base: await baseFacts(base), buildSeconds: 0, buildLog: '',
    };
    cluster = await VmCluster.boot(built, ['lb1'], { arch, logPrefix: 'sealed' });
    const lb1 = cluster.node('lb1');
    await lb1.vm.waitForConsole(/pibake-firstboot: done: /, 40 * 60_000);
    console.log(`sealed lb1: first boot done ${((Date.now() - lb1.vm.startedAt) / 1000).toFixed(0)} s after qemu started`);

    // ssh as the admin with the generated key, held to the host key of the secrets file; every
    // role service running, the password hash set, no failed unit (boot-and-check.ts).
    expect(await cluster.checkNodes(ROLE_PACKAGES.trixie)).toEqual({ lb1: [] });
    // The generated key is authorised from a root-owned file sshd reads (AuthorizedKeysFile), sealed
    // in, never from ~admin/.ssh (cloud-init's user-data, on the boot partition, cannot hold it).
    const publicKey = (await readFile(`${built.keyFile}.pub`, 'utf8')).trim().split(' ').slice(0, 2).join(' ');
    const keys = await ssh(cluster.sshTarget('lb1'), [
      "sudo -n sshd -T | grep -i '^authorizedkeysfile'",
      `stat -c '%a %U' ${GENERATED_KEYS_DIR}/admin; cut -d' ' -f1,2 ${GENERATED_KEYS_DIR}/admin`,
      `grep -c -F '${publicKey.split(' ')[1]}' ~/.ssh/authorized_keys 2>/dev/null || true`,
    ].join('; '));
    expect(keys.stdout).toBe(`authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2 ${GENERATED_KEYS_DIR}/%u\n644 root\n${publicKey}\n0\n`);
    // HAProxy's statistics answer to the password sealed into its config.
    const stats = await cluster.haproxyStats('lb1');
    expect(stats.some((r) => r.pxname === 'web' && r.svname === 'BACKEND')).toBe(true);

    // pibake status from the client: the sealed build has no known_hosts; status derives it.
    const status = await execa('ip', ['netns', 'exec', cluster.clientNs, process.execPath, join(ROOT, 'bin/pibake.js'), 'status', '--config', config,
      '--out', out, '--node', 'lb1', '--timeout', '60', '--json'], { reject: false, cwd: dir });
    expect(status.stderr).toBe('');
    const report = JSON.parse(status.stdout) as StatusReport;
    expect(report.nodes[0]).toMatchObject({ name: 'lb1', reachable: true, hostname: 'lb1', card: { state: 'current' }, cloudInit: { status: 'done' }, holdsVip: true, haproxy: { answering: true } });
    // Alone, lb1 has no web server to send to: that is wrong, and nothing else.
    const findings = report.verdict.findings.map((f) => f.message);
    expect(findings).toContain('lb1: HAProxy backend web has no server UP');
    expect(findings.filter((m) => !m.startsWith('lb1: HAProxy '))).toEqual([]);
  });
});
