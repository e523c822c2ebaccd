/**
 * The ssh adapter against a real OpenSSH server on loopback (root only: sshd needs its privilege
 * separation). It runs in a private mount namespace with its own /run and an /etc/shadow whose
 * entries are all `*`, so nothing of this machine changes. Each way a login can fail is produced
 * for real, and reachFailure must name it from OpenSSH's own words; --watch's kept connection
 * must carry every later session (sshd logs one login only).
 */
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reachFailure, runRemoteScript, SshMasters, sshOptions, type SshSettings } from '../../builder/status/ssh.ts';
import { waitFor } from '../helpers/wait.ts';

const isRoot = process.getuid?.() === 0;
const hasSshd = await execa('test', ['-x', '/usr/sbin/sshd'], { reject: false }).then((r) => r.exitCode === 0);

describe('sshOptions', () => {
  it('holds every connection to the build\'s known_hosts, strictly, without prompts or forwarding', () => {
    const settings: SshSettings = { user: 'pi', identity: '/c/pistack-admin', knownHosts: '/o/known_hosts', connectTimeout: 5, deadline: 10 };
    const args = sshOptions({ name: 'web2', ip: '10.0.0.12' }, settings).join(' ');
    for (const option of ['BatchMode=yes', 'StrictHostKeyChecking=yes', 'UserKnownHostsFile=/o/known_hosts', 'GlobalKnownHostsFile=/dev/null',
      'HostKeyAlias=web2', 'UpdateHostKeys=no', 'ConnectTimeout=5', 'IdentitiesOnly=yes', 'ControlMaster=no', 'ClearAllForwardings=yes']) {
      expect(args).toContain(`-o ${option}`);
    }
    expect(args).toContain('-i /c/pistack-admin');
    expect(args).toContain('-l pi');
    expect(args).not.toContain('ControlPath');
    expect(sshOptions({ name: 'web2', ip: '10.0.0.12' }, { ...settings, identity: undefined, controlDir: '/t/s' }).join(' '))
      .toMatch(/-o ControlMaster=no -o ControlPath=\/t\/s\/web2 /);
  });
});

describe('reachFailure on what OpenSSH says', () => {
  const context = { user: 'pi', knownHosts: 'output/pistack/known_hosts', connectTimeout: 5, deadline: 10 };
  const outcome = (stderr: string, extra: Partial<{ exitCode: number; timedOut: boolean; stdout: string }> = {}) =>
    ({ exitCode: 255, stdout: '', stderr, timedOut: false, seconds: 1, ...extra });
  it('names timeouts, refusals, routes and names that do not resolve', () => {
    expect(reachFailure(outcome('ssh: connect to host 10.0.0.13 port 22: Connection timed out\r\n'), context))
      .toEqual({ kind: 'unreachable', message: 'no answer within 5 s' });
    expect(reachFailure(outcome('ssh: connect to host 10.0.0.13 port 22: No route to host\r\n'), context))
      .toEqual({ kind: 'unreachable', message: 'no route to host' });
    expect(reachFailure(outcome('ssh: Could not resolve hostname web9: Name or service not known\r\n'), context))
      .toEqual({ kind: 'unreachable', message: 'its address does not resolve' });
    expect(reachFailure(outcome('', { exitCode: undefined, timedOut: true }), context)).toEqual({ kind: 'unreachable', message: 'no answer within 10 s' });
  });
  it('is undefined once the probe ran, even when cut off at the deadline', () => {
    expect(reachFailure(outcome('', { exitCode: 0, stdout: '@@pibake-status begin host\nweb1\n' }), context)).toBeUndefined();
    expect(reachFailure(outcome('', { exitCode: undefined, timedOut: true, stdout: '@@pibake-status begin host\n' }), context)).toBeUndefined();
  });
  it('says when the account\'s shell would not run it', () => {
    expect(reachFailure(outcome('', { exitCode: 1, stdout: 'This account is currently not available.\n' }), context))
      .toEqual({ kind: 'ssh', message: 'its shell did not run the check (exit 1: This account is currently not available.)' });
  });
});

describe.skipIf(!isRoot || !hasSshd)('the ssh adapter against a real sshd on loopback', () => {
  let dir: string;
  let port: number;
  let sshd: ResultPromise;
  let log: string;
  let settings: SshSettings;
  const host = { name: 'node1', ip: '127.0.0.1' };

  const freePort = () => new Promise<number>((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
  const keygen = (file: string, comment: string) => execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
  /** known_hosts lines as pibake build writes them: name,fqdn,ip. */
  const knownHostsFor = async (keyFile: string) => `node1,node1.lab,127.0.0.1 ${(await readFile(`${keyFile}.pub`, 'utf8')).split(' ').slice(0, 2).join(' ')}\n`;
  const script = 'echo "@@pibake-status begin host"; hostname; echo "@@pibake-status end host 0"\n';

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pibake-ssh-test-'));
    await chmod(dir, 0o755);
    port = await freePort();
    await keygen(path.join(dir, 'host_key'), 'host');
    await keygen(path.join(dir, 'other_host_key'), 'other');
    await keygen(path.join(dir, 'admin'), 'admin');
    await keygen(path.join(dir, 'stranger'), 'stranger');
    await writeFile(path.join(dir, 'authorized_keys'), await readFile(path.join(dir, 'admin.pub')));
    const passwd = await readFile('/etc/passwd', 'utf8');
    await writeFile(path.join(dir, 'shadow'), passwd.split('\n').filter(Boolean).map((l) => `${l.split(':')[0]}:*:19000:0:99999:7:::\n`).join(''));
    await writeFile(path.join(dir, 'sshd_config'), [
      `ListenAddress 127.0.0.1:${port}`, `HostKey ${dir}/host_key`, `AuthorizedKeysFile ${dir}/authorized_keys`,
      'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no',
      'StrictModes no', 'PidFile none', 'LogLevel VERBOSE', '',
    ].join('\n'));
    await writeFile(path.join(dir, 'ssh_config'), `Host 127.0.0.1\n  Port ${port}\n`);
    await writeFile(path.join(dir, 'known_hosts'), await knownHostsFor(path.join(dir, 'host_key')));
    log = path.join(dir, 'sshd.log');
    sshd = execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', [
      'set -e', 'mount -t tmpfs -o mode=755 tmpfs /run', 'mkdir /run/sshd', `mount --bind ${dir}/shadow /etc/shadow`,
      `exec /usr/sbin/sshd -D -e -f ${dir}/sshd_config`,
    ].join('\n')], { reject: false, stdout: 'ignore', stderr: { file: log } });
    await waitFor('sshd listening', 10_000, async () => ((await readFile(log, 'utf8')).includes('Server listening') ? true : undefined));
    // The port comes from an ssh config (--ssh-config), as an operator's jump host or forward
    // would; the host key is still checked under the node's name.
    settings = {
      user: 'root', identity: path.join(dir, 'admin'), knownHosts: path.join(dir, 'known_hosts'), connectTimeout: 5, deadline: 15,
      sshConfig: path.join(dir, 'ssh_config'),
    };
  }, 30_000);

  afterAll(async () => {
    sshd?.kill('SIGTERM');
    await sshd;
    await rm(dir, { recursive: true, force: true });
  });

  it('runs the script when key and host key agree', async () => {
    const run = await runRemoteScript(host, script, settings);
    expect(run.stderr).toBe('');
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toMatch(/^@@pibake-status begin host\n\S+\n@@pibake-status end host 0\n$/);
    expect(reachFailure(run, { ...settings })).toBeUndefined();
  });

  it('refuses a host key other than known_hosts says, and a node known_hosts does not name', async () => {
    await writeFile(path.join(dir, 'wrong_known_hosts'), await knownHostsFor(path.join(dir, 'other_host_key')));
    const wrong = await runRemoteScript(host, script, { ...settings, knownHosts: path.join(dir, 'wrong_known_hosts') });
    expect(wrong.stdout).toBe('');
    expect(reachFailure(wrong, settings)).toEqual({ kind: 'host-key', message: `its ssh host key does not match ${settings.knownHosts}: not a card of this build, or a machine in between` });
    const unknown = await runRemoteScript({ name: 'node2', ip: '127.0.0.1' }, script, settings);
    expect(unknown.stdout).toBe('');
    expect(reachFailure(unknown, settings)).toEqual({ kind: 'host-key', message: `no host key for it in ${settings.knownHosts} (run pibake build, which writes it)` });
  });

  it('says when the admin key is refused, and when nothing listens', async () => {
    const stranger = await runRemoteScript(host, script, { ...settings, identity: path.join(dir, 'stranger') });
    expect(reachFailure(stranger, settings)).toEqual({ kind: 'login', message: 'the admin key was refused (root: permission denied)' });
    await writeFile(path.join(dir, 'closed_config'), `Host 127.0.0.1\n  Port ${await freePort()}\n`);
    const closed = await runRemoteScript(host, script, { ...settings, sshConfig: path.join(dir, 'closed_config') });
    expect(reachFailure(closed, settings)).toEqual({ kind: 'refused', message: 'ssh connection refused (the node is up, sshd is not)' });
  });

  it('--watch: later sessions ride on the one kept connection; the master ends with close()', async () => {
    const masters = await SshMasters.create(settings);
    const logins = async () => ((await readFile(log, 'utf8')).match(/Accepted publickey for root/g) ?? []).length;
    const before = await logins();
    try {
      masters.ensure(host);
      await waitFor('the control socket', 10_000, async () => ((await stat(path.join(masters.dir, host.name))).isSocket() ? true : undefined));
      for (let i = 0; i < 3; i++) {
        const run = await runRemoteScript(host, script, masters.sessionSettings);
        expect(run.exitCode, run.stderr).toBe(0);
      }
      expect(await logins()).toBe(before + 1);
    } finally {
      await masters.close();
    }
    await expect(stat(masters.dir)).rejects.toThrow();
  });
});
