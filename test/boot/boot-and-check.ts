/**
 * Boots one node image under qemu and checks, over ssh, that first boot made it the node the
 * expectations describe. The image may be the seeded test base or a pibake-built
 * output/<cluster>/<node>.img: the check only relies on what a real card would show.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Inventory } from '../../builder/inventory/types.ts';
import { QemuVm, ssh, waitForSsh, type BootOptions, type SshTarget, type VmArch } from '../helpers/qemu.ts';

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
  /** How the image first boots: cloud-init seeds (trixie, the test base) or Imager's firstrun.sh (bookworm). */
  firstBoot?: 'cloud-init' | 'firstrun';
  /**
   * A pibake-built card: pibake-firstboot must report done, with no error of pibake's units in the
   * journal, the static address must be NetworkManager's, and these packages installed.
   */
  pibake?: { packages: { name: string; version: RegExp }[] };
  /** The static address must be NetworkManager's (nmcli shows it); implied by `pibake`. */
  networkManager?: boolean;
}

export interface BootReport {
  /** Wall-clock seconds from starting qemu to first boot's end: cloud-init's, or pibake-firstboot's "done". */
  cloudInitSeconds: number;
  /** The guest's own uptime in cloud-init's finished line ("Up N seconds"), when it has one. */
  guestUptimeSeconds: number;
  finishedLine: string;
}

export interface BootAndCheckOptions {
  arch?: VmArch;
  /** How long first boot may take until cloud-init has finished (default 10 min under TCG). */
  bootTimeoutMs?: number;
  /** Copy the serial console log here (kept for CI artefacts and debugging). */
  keepConsoleAs?: string;
  /** More qemu options (guest forwards for a package proxy). */
  vm?: Pick<BootOptions, 'guestForwards' | 'consoleLog'>;
  /** pibake-firstboot may report failed attempts (a test of its retries); otherwise one fails the boot early. */
  allowRetries?: boolean;
}

const FINISHED = /Cloud-init v\. \S+ finished at [^\n]*?Up ([\d.]+) seconds/;
const PIBAKE_DONE = /pibake-firstboot: done: [^\n]*/;
const BOOT_FAILED = /Kernel panic|end Kernel panic|You are in emergency mode|Give root password for maintenance/;

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
    // Bookworm's firstrun.sh reboots; the next boot must read the cmdline.txt it rewrote.
    followReboots: expected.firstBoot === 'firstrun',
    hardTimeoutMs: (options.bootTimeoutMs ?? 10 * 60_000) + 15 * 60_000,
    ...options.vm,
  });
  try {
    const timeout = options.bootTimeoutMs ?? 10 * 60_000;
    const failOn = options.allowRetries ? BOOT_FAILED : new RegExp(`${BOOT_FAILED.source}|pibake-firstboot: (failed|waiting): [^\\n]*`);
    const match = await vm.waitForConsole(expected.pibake ? PIBAKE_DONE : FINISHED, timeout, failOn);
    const report: BootReport = {
      cloudInitSeconds: (Date.now() - vm.startedAt) / 1000,
      guestUptimeSeconds: Number(match[1] ?? Number.NaN),
      finishedLine: match[0].trim(),
    };
    const target: SshTarget = { port: vm.sshPort, user: expected.admin.user, keyFile: expected.admin.keyFile };
    await waitForSsh(target, 120_000);
    if (expected.firstBoot !== 'firstrun') {
      // cloud-init's final stage may still run after pibake-firstboot is done: let it end first.
      await ssh(target, 'sudo -n cloud-init status --wait >/dev/null', 15 * 60_000);
    }
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
  const result = await ssh(target, script, 300_000);
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
export async function checkNode(target: SshTarget, expected: NodeExpectations, guestIp: string): Promise<string[]> {
  const problems: string[] = [];
  const same = (what: string, actual: string, wanted: string) => {
    if (actual !== wanted) problems.push(`${what}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(wanted)}`);
  };
  const cloudInit = expected.firstBoot !== 'firstrun';
  const networkManager = expected.networkManager ?? expected.pibake !== undefined;
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
    machineId: 'cat /etc/machine-id',
    bootMount: 'findmnt -n -o FSTYPE /boot/firmware',
    timezone: 'cat /etc/timezone',
    passwordHash: `sudo -n getent shadow ${expected.admin.user} | cut -d: -f2`,
    passwordFile: 'sudo -n test -e /etc/pibake/admin-password && echo kept || echo removed',
  };
  if (cloudInit) {
    Object.assign(commands, {
      // cloud-init's own verdict, once its final stage is over (it may end after pibake-firstboot).
      status: 'sudo -n cloud-init status --wait --format json 2>/dev/null',
      result: 'cat /var/lib/cloud/data/result.json',
      // The user-data itself must satisfy cloud-init's schema on the node.
      schema: 'sudo -n cloud-init schema --system',
      // Any other warning is a problem. Raspberry Pi OS's own 99_raspberry-pi.cfg (ssh_genkeytypes: [])
      // is "too short" for 22.4's schema; that one warning about the merged system config is known.
      warnings: "grep -E ' (WARNING|ERROR)' /var/log/cloud-init.log | grep -v 'Invalid cloud-config provided: Please run' || true",
    });
  }
  // The address as NetworkManager holds it (trixie: rendered by netplan from network-config;
  // bookworm: pibake's keyfile). -t: one "IP4.ADDRESS[1]:10.0.0.11/24" line per value.
  if (networkManager) commands.nmcli = 'nmcli -t -f GENERAL.STATE,IP4.ADDRESS,IP4.GATEWAY device show eth0';
  if (expected.pibake) {
    Object.assign(commands, {
      firstboot: 'cat /var/lib/pibake/firstboot.status',
      // This boot's errors, to find those of pibake's own units. Filtered here, not with
      // -u 'pibake-*': systemd 257's journalctl fails when no unit matches.
      journal: 'sudo -n journalctl -b -p err -o json --no-pager',
      versions: `dpkg-query -W -f='\${Package} \${Version} \${db:Status-Status}\\n' ${expected.pibake.packages.map((p) => p.name).join(' ')}`,
    });
  }
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

  if (cloudInit) {
    // cloud-init's own verdict: done, the NoCloud seed from the boot partition used, no error of any kind.
    try {
      // recoverable_errors exists from cloud-init 23.4 on (trixie has 25): messages by log level.
      // Bookworm's 22.4 logs them as WARNINGs, which the log check below catches.
      const st = JSON.parse(fact('status').out) as { status?: string; errors?: unknown[]; recoverable_errors?: Record<string, unknown[]> };
      if (st.status !== 'done') problems.push(`cloud-init status is ${st.status}`);
      if ((st.errors ?? []).length > 0) problems.push(`cloud-init errors: ${JSON.stringify(st.errors)}`);
      const recoverable = Object.entries(st.recoverable_errors ?? {}).filter(([, messages]) => messages.length > 0);
      if (recoverable.length > 0) problems.push(`cloud-init recoverable errors: ${JSON.stringify(Object.fromEntries(recoverable))}`);
    } catch {
      problems.push(`no readable cloud-init status --format json: ${fact('status').out}`);
    }
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
  }

  if (networkManager) problems.push(...nmcliProblems(fact('nmcli'), expected));
  if (expected.pibake) {
    if (!/^state=done$/m.test(fact('firstboot').out)) problems.push(`pibake-firstboot is not done: ${fact('firstboot').out.replace(/\n/g, '; ')}`);
    const journal = pibakeJournalErrors(fact('journal'));
    if (journal.length > 0) problems.push(`errors of pibake's units in the journal:\n    ${journal.slice(0, 10).join('\n    ')}`);
    const versions = new Map(fact('versions').out.split('\n').map((l) => l.split(' ')).map(([name, version, state]) => [name, { version, state }]));
    for (const wanted of expected.pibake.packages) {
      const got = versions.get(wanted.name);
      if (got?.state !== 'installed' || !wanted.version.test(got.version ?? '')) {
        problems.push(`package ${wanted.name} is ${got ? `${got.version} (${got.state})` : 'not installed'}, expected ${wanted.version}`);
      }
    }
  }

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
 * Error-level journal entries of pibake's units: logged by one (_SYSTEMD_UNIT) or by systemd about
 * one (UNIT), e.g. "pibake-primary-setup.service: Failed with result 'exit-code'".
 */
function pibakeJournalErrors(journal: { out: string; code: number }): string[] {
  if (journal.code !== 0) return [`journalctl failed: ${journal.out}`];
  const errors: string[] = [];
  for (const line of journal.out.split('\n').filter(Boolean)) {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      errors.push(`not a journal entry: ${line}`);
      continue;
    }
    const unit = [entry._SYSTEMD_UNIT, entry.UNIT].find((u) => typeof u === 'string' && u.startsWith('pibake-'));
    if (unit === undefined) continue;
    const message = typeof entry.MESSAGE === 'string' ? entry.MESSAGE : JSON.stringify(entry.MESSAGE);
    errors.push(`${String(unit)}: ${message}`);
  }
  return errors;
}

/** The static address and gateway as NetworkManager applied them to eth0, which it has connected. */
function nmcliProblems(nmcli: { out: string; code: number }, expected: NodeExpectations): string[] {
  if (nmcli.code !== 0) return [`nmcli cannot show eth0: ${nmcli.out}`];
  const fields = new Map<string, string[]>();
  for (const line of nmcli.out.split('\n')) {
    const [key = '', ...value] = line.split(':');
    const name = key.replace(/\[\d+\]$/, '');
    fields.set(name, [...(fields.get(name) ?? []), value.join(':')]);
  }
  const problems: string[] = [];
  if (!(fields.get('GENERAL.STATE') ?? []).some((s) => s.startsWith('100'))) problems.push(`NetworkManager has not connected eth0: ${nmcli.out}`);
  if (!(fields.get('IP4.ADDRESS') ?? []).includes(expected.address)) problems.push(`NetworkManager has no ${expected.address} on eth0: ${nmcli.out}`);
  if (!(fields.get('IP4.GATEWAY') ?? []).includes(expected.gateway)) problems.push(`NetworkManager's gateway on eth0 is not ${expected.gateway}: ${nmcli.out}`);
  return problems;
}

/**
 * Expectations for a pibake-built node, from the inventory it was built from. The services are
 * the node's role's `services` (roles/<role>.yaml), without the `.service` suffix or with it.
 */
export function expectationsFor(
  inventory: Inventory,
  nodeName: string,
  options: {
    keyFile: string; services: string[]; files?: { path: string; content: string }[];
    firstBoot?: NodeExpectations['firstBoot']; passwordHash?: string; packages?: { name: string; version: RegExp }[];
  },
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
    firstBoot: options.firstBoot ?? 'cloud-init',
    pibake: { packages: options.packages ?? [] },
  };
}
