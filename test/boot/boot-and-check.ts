/**
 * Boots one node image under qemu and checks, over ssh, that first boot made it the node the
 * expectations describe. The image may be the seeded test base or a pibake-built
 * output/<cluster>/<node>.img: the check only relies on what a real card would show.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Inventory } from '../../builder/inventory/types.ts';
import { QemuVm, ssh, waitForSsh, type SshTarget, type VmArch } from '../helpers/qemu.ts';

export interface NodeExpectations {
  hostname: string;
  /** Static address with prefix length, e.g. 10.0.0.10/24; also the address qemu forwards ssh to. */
  address: string;
  /** The cluster network (slirp's net) and its gateway (slirp's host). */
  cidr: string;
  gateway: string;
  admin: { user: string; keyFile: string; groups: string[] };
  /** systemd units that must be active once cloud-init has finished. */
  services: string[];
  /** Files that must exist on the node with this exact content. */
  files?: { path: string; content: string }[];
  timezone?: string;
  /** The crypt hash the admin user's password must have (set at first boot from the root filesystem). */
  passwordHash?: string;
}

export interface BootReport {
  /** Wall-clock seconds from starting qemu to "Cloud-init v. ... finished" on the console. */
  cloudInitSeconds: number;
  /** The guest's own uptime in that line ("Up N seconds"). */
  guestUptimeSeconds: number;
  finishedLine: string;
}

export interface BootAndCheckOptions {
  arch?: VmArch;
  /** How long first boot may take until cloud-init has finished (default 10 min under TCG). */
  bootTimeoutMs?: number;
  /** Copy the serial console log here (kept for CI artefacts and debugging). */
  keepConsoleAs?: string;
}

const FINISHED = /Cloud-init v\. \S+ finished at [^\n]*?Up ([\d.]+) seconds/;

export async function bootAndCheck(
  imagePath: string,
  expected: NodeExpectations,
  options: BootAndCheckOptions = {},
): Promise<BootReport> {
  const guestIp = expected.address.split('/')[0] ?? expected.address;
  const vm = await QemuVm.boot({
    image: imagePath,
    arch: options.arch,
    network: { cidr: expected.cidr, gateway: expected.gateway, guestIp },
  });
  try {
    const match = await vm.waitForConsole(FINISHED, options.bootTimeoutMs ?? 10 * 60_000);
    const report: BootReport = {
      cloudInitSeconds: (Date.now() - vm.startedAt) / 1000,
      guestUptimeSeconds: Number(match[1]),
      finishedLine: match[0].trim(),
    };
    const target: SshTarget = { port: vm.sshPort, user: expected.admin.user, keyFile: expected.admin.keyFile };
    await waitForSsh(target, 120_000);
    const problems = await checkNode(target, expected, guestIp);
    if (problems.length > 0) {
      throw new Error(`${imagePath} booted, but the node is not as expected:\n- ${problems.join('\n- ')}`);
    }
    return report;
  } finally {
    if (options.keepConsoleAs) {
      await mkdir(dirname(options.keepConsoleAs), { recursive: true });
      await copyFile(vm.consoleLog, options.keepConsoleAs).catch(() => undefined);
    }
    await vm.stop();
  }
}

/** Runs several commands in one ssh session (each round trip costs seconds under TCG). */
async function gather(target: SshTarget, commands: Record<string, string>): Promise<Record<string, { out: string; code: number }>> {
  const names = Object.keys(commands);
  const script = names.map((name) => `echo '@@begin ${name}'; ( ${commands[name]} ) 2>&1; echo "@@end $?"`).join('\n');
  const result = await ssh(target, script, 120_000);
  if (result.exitCode !== 0 && !`${result.stdout}`.includes('@@end')) {
    throw new Error(`ssh to the node failed: ${`${result.stderr ?? ''}`.trim()}`);
  }
  const facts: Record<string, { out: string; code: number }> = {};
  const pattern = /^@@begin (\S+)\n([\s\S]*?)^@@end (\d+)$/gm;
  for (const m of `${result.stdout}`.matchAll(pattern)) facts[m[1] ?? ''] = { out: (m[2] ?? '').trim(), code: Number(m[3]) };
  for (const name of names) if (!facts[name]) throw new Error(`no answer for ${name} from the node: ${result.stdout}`);
  return facts;
}

/** Everything that differs from the expectations, one line each (empty: the node is right). */
async function checkNode(target: SshTarget, expected: NodeExpectations, guestIp: string): Promise<string[]> {
  const problems: string[] = [];
  const same = (what: string, actual: string, wanted: string) => {
    if (actual !== wanted) problems.push(`${what}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(wanted)}`);
  };
  const commands: Record<string, string> = {
    hostname: 'hostname',
    user: 'id -un',
    groups: 'id -nG',
    sudo: 'sudo -n true',
    addresses: 'ip -4 -o addr show dev eth0',
    route: 'ip -4 route show default',
    listening: "ss -Htln 'sport = :22'",
    services: `systemctl is-active ${expected.services.join(' ')}`,
    failed: 'systemctl list-units --failed --plain --no-legend',
    result: 'cat /var/lib/cloud/data/result.json',
    // The user-data itself must satisfy cloud-init's schema on the node.
    schema: 'sudo -n cloud-init schema --system',
    // Any other warning is a problem. Raspberry Pi OS's own 99_raspberry-pi.cfg (ssh_genkeytypes: [])
    // is "too short" for 22.4's schema; that one warning about the merged system config is known.
    warnings: "grep -E ' (WARNING|ERROR)' /var/log/cloud-init.log | grep -v 'Invalid cloud-config provided: Please run' || true",
    machineId: 'cat /etc/machine-id',
    bootMount: 'findmnt -n -o FSTYPE /boot/firmware',
    timezone: 'cat /etc/timezone',
    passwordHash: `sudo -n getent shadow ${expected.admin.user} | cut -d: -f2`,
    passwordFile: 'sudo -n test -e /etc/pibake/admin-password && echo kept || echo removed',
  };
  (expected.files ?? []).forEach((file, i) => {
    commands[`file${i}`] = `sudo -n cat ${file.path}`;
  });
  const f = await gather(target, commands);
  const fact = (name: string) => f[name] ?? { out: '', code: -1 };

  same('hostname', fact('hostname').out, expected.hostname);
  same('login user', fact('user').out, expected.admin.user);
  const groups = fact('groups').out.split(/\s+/);
  for (const group of expected.admin.groups) {
    if (!groups.includes(group)) problems.push(`${expected.admin.user} is not in group ${group} (groups: ${groups.join(' ')})`);
  }
  if (fact('sudo').code !== 0) problems.push(`sudo without password fails for ${expected.admin.user}: ${fact('sudo').out}`);

  if (!fact('addresses').out.includes(`inet ${expected.address} `)) problems.push(`eth0 has no ${expected.address}: ${fact('addresses').out}`);
  if (!fact('route').out.includes(`via ${expected.gateway} `)) problems.push(`default route is not via ${expected.gateway}: ${fact('route').out}`);
  const listening = fact('listening').out;
  if (!listening.includes('0.0.0.0:22') && !listening.includes(`${guestIp}:22`)) problems.push(`sshd does not listen on ${guestIp}: ${listening}`);

  const states = fact('services').out.split('\n');
  expected.services.forEach((service, i) => {
    if (states[i] !== 'active') problems.push(`service ${service} is ${states[i] ?? 'unknown'}`);
  });
  if (fact('failed').out) problems.push(`failed units: ${fact('failed').out.replace(/\n/g, '; ')}`);

  // cloud-init's own verdict: the NoCloud seed from the boot partition was used, with no errors.
  try {
    const v1 = (JSON.parse(fact('result').out) as { v1: { datasource: string | null; errors: string[] } }).v1;
    if (!/NoCloud/.test(v1.datasource ?? '')) problems.push(`cloud-init used datasource ${v1.datasource}, not NoCloud`);
    if (v1.errors.length > 0) problems.push(`cloud-init errors: ${v1.errors.join('; ')}`);
  } catch {
    problems.push(`no readable /var/lib/cloud/data/result.json: ${fact('result').out}`);
  }
  if (fact('schema').code !== 0) problems.push(`user-data fails cloud-init's schema: ${fact('schema').out}`);
  const warnings = fact('warnings').out;
  if (warnings) problems.push(`cloud-init.log has warnings:\n    ${warnings.split('\n').slice(0, 10).join('\n    ')}`);

  // First boot made this card its own machine.
  if (!/^[0-9a-f]{32}$/.test(fact('machineId').out)) problems.push(`/etc/machine-id is ${JSON.stringify(fact('machineId').out)}, not a fresh id`);
  same('/boot/firmware file system', fact('bootMount').out, 'vfat');

  if (expected.timezone) same('timezone', fact('timezone').out, expected.timezone);
  if (expected.passwordHash) {
    same('admin password hash', fact('passwordHash').out, expected.passwordHash);
    same('baked hash file after first boot', fact('passwordFile').out, 'removed');
  }
  (expected.files ?? []).forEach((file, i) => {
    const content = fact(`file${i}`);
    if (content.code !== 0) problems.push(`${file.path} is missing: ${content.out}`);
    else same(file.path, content.out, file.content.trim());
  });
  return problems;
}

/**
 * Expectations for a pibake-built node, from the inventory it was built from. The services are
 * the node's role's `services` (roles/<role>.yaml), without the `.service` suffix or with it.
 */
export function expectationsFor(
  inventory: Inventory,
  nodeName: string,
  options: { keyFile: string; services: string[]; files?: { path: string; content: string }[]; passwordHash?: string },
): NodeExpectations {
  const node = inventory.nodes.find((n) => n.name === nodeName);
  if (!node) throw new Error(`no node ${nodeName} in ${inventory.file}`);
  return {
    hostname: node.name,
    address: `${node.ip}/${inventory.network.prefixLength}`,
    cidr: inventory.network.cidr,
    gateway: inventory.network.gateway,
    admin: { user: inventory.admin.user, keyFile: options.keyFile, groups: ['sudo'] },
    services: ['ssh', ...options.services],
    files: options.files,
    timezone: inventory.locale.timezone,
    passwordHash: options.passwordHash,
  };
}
