/**
 * Boots one node image under qemu and checks, over ssh, that first boot made it the node the
 * expectations describe. The image may be the seeded test base or a pibake-built
 * output/<cluster>/<node>.img: the check only relies on what a real card would show.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
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

/** Everything that differs from the expectations, one line each (empty: the node is right). */
async function checkNode(target: SshTarget, expected: NodeExpectations, guestIp: string): Promise<string[]> {
  const problems: string[] = [];
  const run = async (command: string) => {
    const result = await ssh(target, command);
    return { out: `${result.stdout ?? ''}`.trim(), code: result.exitCode, err: `${result.stderr ?? ''}`.trim() };
  };
  const same = (what: string, actual: string, wanted: string) => {
    if (actual !== wanted) problems.push(`${what}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(wanted)}`);
  };

  same('hostname', (await run('hostname')).out, expected.hostname);
  same('login user', (await run('id -un')).out, expected.admin.user);
  const groups = (await run('id -nG')).out.split(/\s+/);
  for (const group of expected.admin.groups) {
    if (!groups.includes(group)) problems.push(`${expected.admin.user} is not in group ${group} (groups: ${groups.join(' ')})`);
  }
  const sudo = await run('sudo -n true');
  if (sudo.code !== 0) problems.push(`sudo without password fails for ${expected.admin.user}: ${sudo.err}`);

  const addresses = (await run('ip -4 -o addr show dev eth0')).out;
  if (!addresses.includes(`inet ${expected.address} `)) problems.push(`eth0 has no ${expected.address}: ${addresses}`);
  const route = (await run('ip -4 route show default')).out;
  if (!route.includes(`via ${expected.gateway} `)) problems.push(`default route is not via ${expected.gateway}: ${route}`);
  const listening = (await run(`ss -Htln 'sport = :22'`)).out;
  if (!listening.includes('0.0.0.0:22') && !listening.includes(`${guestIp}:22`)) problems.push(`sshd does not listen on ${guestIp}: ${listening}`);

  const services = await run(`systemctl is-active ${expected.services.join(' ')}`);
  const states = services.out.split('\n');
  expected.services.forEach((service, i) => {
    if (states[i] !== 'active') problems.push(`service ${service} is ${states[i] ?? 'unknown'}`);
  });
  const failed = (await run('systemctl list-units --failed --plain --no-legend')).out;
  if (failed) problems.push(`failed units: ${failed.replace(/\n/g, '; ')}`);

  // cloud-init's own verdict: the NoCloud seed from the boot partition was used, with no errors.
  const result = await run('cat /var/lib/cloud/data/result.json');
  try {
    const v1 = (JSON.parse(result.out) as { v1: { datasource: string | null; errors: string[] } }).v1;
    if (!/NoCloud/.test(v1.datasource ?? '')) problems.push(`cloud-init used datasource ${v1.datasource}, not NoCloud`);
    if (v1.errors.length > 0) problems.push(`cloud-init errors: ${v1.errors.join('; ')}`);
  } catch {
    problems.push(`no readable /var/lib/cloud/data/result.json: ${result.out || result.err}`);
  }
  // The user-data itself must satisfy cloud-init's schema on the node.
  const schema = await run('sudo -n cloud-init schema --system');
  if (schema.code !== 0) problems.push(`user-data fails cloud-init's schema: ${schema.out} ${schema.err}`);
  // Any other warning is a problem. Raspberry Pi OS's own 99_raspberry-pi.cfg (ssh_genkeytypes: [])
  // is "too short" for 22.4's schema; that one warning about the merged system config is known.
  const warnings = (await run(`grep -E ' (WARNING|ERROR)' /var/log/cloud-init.log | grep -v 'Invalid cloud-config provided: Please run' || true`)).out;
  if (warnings) problems.push(`cloud-init.log has warnings:\n    ${warnings.split('\n').slice(0, 10).join('\n    ')}`);

  // First boot made this card its own machine.
  const machineId = (await run('cat /etc/machine-id')).out;
  if (!/^[0-9a-f]{32}$/.test(machineId)) problems.push(`/etc/machine-id is ${JSON.stringify(machineId)}, not a fresh id`);
  const bootMount = (await run('findmnt -n -o FSTYPE /boot/firmware')).out;
  same('/boot/firmware file system', bootMount, 'vfat');

  if (expected.timezone) same('timezone', (await run('cat /etc/timezone')).out, expected.timezone);
  for (const file of expected.files ?? []) {
    const content = await run(`sudo -n cat ${file.path}`);
    if (content.code !== 0) problems.push(`${file.path} is missing: ${content.err}`);
    else same(file.path, content.out, file.content.trim());
  }
  return problems;
}
