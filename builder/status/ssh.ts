/**
 * The thin adapter between `pibake status` and the nodes: the system's ssh client, strict about
 * host keys (only the known_hosts file `pibake build` wrote, never trust on first use), batch
 * mode (never a prompt), short bounded timeouts (a dead node costs at most its deadline), and for
 * --watch one kept-open master connection per node that each round's session rides on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { PibakeError } from '../common/errors.ts';
import type { ReachError } from './types.ts';

export interface SshSettings {
  /** The cluster's admin user. */
  user: string;
  /** The cluster's admin key (<cluster>-admin beside the inventory); else ssh's own identities. */
  identity?: string;
  /** output/<cluster>/known_hosts. */
  knownHosts: string;
  /** Seconds to establish the connection. */
  connectTimeout: number;
  /** Seconds the whole check of one node may take; ssh is killed then. */
  deadline: number;
  /** Folder of the control sockets (--watch): sessions share one connection per node. */
  controlDir?: string;
  /** An ssh config to read instead of ~/.ssh/config (--ssh-config: a jump host, forwarded ports). */
  sshConfig?: string;
}

export interface SshHost {
  name: string;
  ip: string;
}

export interface SshOutcome {
  /** ssh's exit code; 255 is ssh's own failure, anything else the remote shell's. */
  exitCode?: number;
  stdout: string;
  stderr: string;
  /** Killed at the deadline. */
  timedOut: boolean;
  seconds: number;
}

/** Options that hold for every connection, whatever the user's ssh_config says (the command line wins). */
export function sshOptions(host: SshHost, settings: SshSettings): string[] {
  const o = (key: string, value: string | number) => ['-o', `${key}=${value}`];
  return [
    ...(settings.sshConfig ? ['-F', settings.sshConfig] : []),
    '-T', '-x', '-a',
    ...o('BatchMode', 'yes'),
    ...o('StrictHostKeyChecking', 'yes'),
    ...o('UserKnownHostsFile', settings.knownHosts),
    ...o('GlobalKnownHostsFile', '/dev/null'),
    // known_hosts names each key "name,fqdn,ip": check the key under the node's name, so an ssh
    // config that reaches the node another way (a jump host, a forwarded port) is still held to it.
    ...o('HostKeyAlias', host.name),
    ...o('CheckHostIP', 'no'),
    ...o('UpdateHostKeys', 'no'),
    ...o('ConnectTimeout', settings.connectTimeout),
    ...o('ConnectionAttempts', 1),
    ...o('ServerAliveInterval', 2),
    ...o('ServerAliveCountMax', 2),
    ...o('ClearAllForwardings', 'yes'),
    ...o('LogLevel', 'ERROR'),
    ...(settings.identity ? ['-i', settings.identity, ...o('IdentitiesOnly', 'yes')] : []),
    ...(settings.controlDir
      ? [...o('ControlMaster', 'no'), ...o('ControlPath', controlPath(settings.controlDir, host))]
      : o('ControlMaster', 'no')),
    '-l', settings.user,
  ];
}

function controlPath(dir: string, host: SshHost): string {
  return path.join(dir, host.name);
}

/** Runs `sh -s` on the node with `script` on its stdin. Never throws for the node's sake. */
export async function runRemoteScript(host: SshHost, script: string, settings: SshSettings): Promise<SshOutcome> {
  const started = Date.now();
  const result = await execa('ssh', [...sshOptions(host, settings), '--', host.ip, 'sh -s'], {
    input: script,
    reject: false,
    timeout: settings.deadline * 1000,
    forceKillAfterDelay: 1000,
    stripFinalNewline: false,
    env: { LC_ALL: 'C' },
  });
  if ((result as { code?: string }).code === 'ENOENT') {
    throw new PibakeError('ssh is not installed', { hint: 'install the OpenSSH client: apt-get install openssh-client' });
  }
  return {
    exitCode: result.exitCode,
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
    timedOut: result.timedOut === true,
    seconds: (Date.now() - started) / 1000,
  };
}

/**
 * Why ssh did not reach the node's shell, from its exit code and stderr (OpenSSH's own words),
 * or undefined when it did. A check cut off at the deadline after the shell had started is not a
 * reach failure: what arrived is used.
 */
export function reachFailure(
  outcome: SshOutcome,
  context: { user: string; knownHosts: string; connectTimeout: number; deadline: number },
): { kind: ReachError; message: string } | undefined {
  if (outcome.stdout.includes('@@pibake-status begin')) return undefined;
  const err = outcome.stderr;
  if (outcome.timedOut) return { kind: 'unreachable', message: `no answer within ${context.deadline} s` };
  if (outcome.exitCode !== 255) {
    // Logged in, but the account's shell did not run the check (e.g. a nologin shell).
    const said = firstWords(`${outcome.stdout}\n${err}`);
    return { kind: 'ssh', message: `its shell did not run the check (exit ${outcome.exitCode ?? '?'}${said ? `: ${said}` : ''})` };
  }
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/.test(err)) {
    if (/No \S+ host key is known for/.test(err)) {
      return { kind: 'host-key', message: `no host key for it in ${context.knownHosts} (run pibake build, which writes it)` };
    }
    return { kind: 'host-key', message: `its ssh host key does not match ${context.knownHosts}: not a card of this build, or a machine in between` };
  }
  if (/Permission denied/.test(err)) return { kind: 'login', message: `the admin key was refused (${context.user}: permission denied)` };
  const connect = /connect to host \S+ port \d+: (.+)$/m.exec(err)?.[1]?.trim();
  if (connect === 'Connection refused') return { kind: 'refused', message: 'ssh connection refused (the node is up, sshd is not)' };
  if (connect === 'Connection timed out' || /timed out/.test(err)) {
    return { kind: 'unreachable', message: `no answer within ${context.connectTimeout} s` };
  }
  if (connect) return { kind: 'unreachable', message: connect.toLowerCase() };
  if (/Could not resolve hostname/.test(err)) return { kind: 'unreachable', message: 'its address does not resolve' };
  const last = err.split('\n').map((l) => l.trim()).filter(Boolean).pop();
  return { kind: 'ssh', message: last ? `ssh failed: ${last}` : 'ssh failed (exit 255)' };
}

function firstWords(text: string): string {
  const line = text.split('\n').map((l) => l.trim()).find(Boolean) ?? '';
  return line.length > 120 ? `${line.slice(0, 119)}…` : line;
}

/**
 * One master connection per node for --watch: each is a child of this process (`ssh -M -N`),
 * started when missing (a node that was down may come back), stopped by its PID at the end.
 * Sessions use it when its socket exists and connect on their own otherwise.
 */
export class SshMasters {
  private readonly running = new Map<string, ChildProcess>();

  private constructor(readonly dir: string, private readonly settings: SshSettings) {}

  static async create(settings: Omit<SshSettings, 'controlDir'>): Promise<SshMasters> {
    // Socket paths must stay short (108 bytes): a private folder in the system's temp dir.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pibake-ssh-'));
    return new SshMasters(dir, { ...settings, controlDir: dir });
  }

  get sessionSettings(): SshSettings {
    return this.settings;
  }

  ensure(host: SshHost): void {
    if (this.running.has(host.name)) return;
    const args = sshOptions(host, this.settings).map((a) => (a === 'ControlMaster=no' ? 'ControlMaster=yes' : a));
    const child = spawn('ssh', [...args, '-N', '-o', 'ControlPersist=no', '--', host.ip], { stdio: 'ignore' });
    this.running.set(host.name, child);
    const forget = () => {
      if (this.running.get(host.name) === child) this.running.delete(host.name);
    };
    child.once('exit', forget);
    child.once('error', forget);
  }

  async close(): Promise<void> {
    const children = [...this.running.values()];
    this.running.clear();
    await Promise.all(children.map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    })));
    await rm(this.dir, { recursive: true, force: true });
  }

  /** For exit hooks: stop every master now. */
  closeSync(): void {
    for (const child of this.running.values()) child.kill('SIGTERM');
    this.running.clear();
  }
}
