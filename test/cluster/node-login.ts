/**
 * What `pibake status` meets when it logs in to a node of the cluster test: an OpenSSH server in
 * the node's network namespace with the node's own host key and admin key, both taken from its
 * built image, and a login whose view of the file system is the node's where status looks:
 *
 * - sshd runs in a private mount namespace (`unshare --mount`) in which
 *   - /etc is an overlay: the host's /etc below, above it the image's /etc/pibake (manifest,
 *     admin_authorized_keys), /etc/haproxy, /etc/ssh host key and /etc/sudoers.d rule, and an
 *     /etc/passwd, /etc/group and /etc/shadow (every password field `*`) with the admin user added;
 *   - /run is a fresh tmpfs holding sshd's privilege-separation folder, the node's sockets
 *     (bind mounts of the test's PostgreSQL socket folder on /run/postgresql and HAProxy's on
 *     /run/haproxy) and cloud-init's state of a finished first boot (/run/cloud-init);
 *   - /usr/local/bin (first in the admin's PATH) holds the one stand-in: `systemctl`, because the
 *     test's daemons are its own children, not systemd's. It answers the three questions status
 *     asks from a state file per unit that the test writes (unitState below), e.g. `pid 1234`:
 *     active while that process lives, failed once it is gone.
 * - Nothing of the host is changed: every mount lives and dies with that sshd.
 */
import { chmod, chown, cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Daemon, Daemons } from './harness.ts';

export interface NodeLogin {
  node: string;
  ip: string;
  dir: string;
  sshd: Daemon;
}

export type UnitState = { pid: number } | 'stopped' | 'done' | 'failed';

/** The state the stand-in systemctl reports for `unit` on the node (its file under <dir>/units). */
export async function unitState(login: Pick<NodeLogin, 'dir'>, unit: string, state: UnitState): Promise<void> {
  const text = typeof state === 'object' ? `pid ${state.pid}` : state;
  await writeFile(path.join(login.dir, 'units', unit), `${text}\n`);
}

const SYSTEMCTL = `#!/bin/sh
# Stand-in for systemctl in the pibake status test (test/cluster/node-login.ts): the daemons are
# the test's children, not systemd's. One file per unit in UNITS, written by the test:
#   pid N     a service run as process N: active (running) while N lives, failed (signal) after
#   stopped   a unit that was stopped or never started: inactive (dead)
#   done      a one-shot set-up unit that ran: active (exited)
#   failed    failed (exit-code)
# A unit without a file is not installed: LoadState=not-found, as systemctl says.
UNITS=@UNITS@
state() {
  load=loaded; active=inactive; sub=dead; result=success
  [ -f "$UNITS/$1" ] || { load=not-found; return; }
  read -r word pid < "$UNITS/$1"
  case "$word" in
    pid) if [ -d "/proc/$pid" ]; then active=active; sub=running; else active=failed; sub=failed; result=signal; fi ;;
    done) active=active; sub=exited ;;
    failed) active=failed; sub=failed; result=exit-code ;;
  esac
}
case "$1" in
  show)
    shift
    while [ $# -gt 0 ]; do case "$1" in --) shift; break ;; -*) shift ;; *) break ;; esac; done
    first=1
    for unit in "$@"; do
      [ $first = 1 ] || echo
      first=0
      state "$unit"
      printf 'Id=%s\\nLoadState=%s\\nActiveState=%s\\nSubState=%s\\nResult=%s\\n' "$unit" "$load" "$active" "$sub" "$result"
    done ;;
  list-units)
    for file in "$UNITS"/*; do
      [ -f "$file" ] || continue
      unit=\${file##*/}
      state "$unit"
      [ "$active" = failed ] && printf '%s loaded failed failed %s\\n' "$unit" "$unit"
    done
    exit 0 ;;
  is-system-running)
    for file in "$UNITS"/*; do
      [ -f "$file" ] || continue
      state "\${file##*/}"
      [ "$active" = failed ] && { echo degraded; exit 1; }
    done
    echo running ;;
  *) echo "systemctl stand-in: $* is not answered here" >&2; exit 1 ;;
esac
`;

/** cloud-init's state after a first boot that finished without errors (what `cloud-init status` reads). */
function cloudInitState(): { status: string; result: string } {
  const now = Date.now() / 1000;
  const stage = (start: number, end: number) => ({ errors: [], start: now - start, finished: now - end });
  const datasource = 'DataSourceNoCloud [seed=/dev/mmcblk0p1][dsmode=net]';
  return {
    status: JSON.stringify({ v1: {
      datasource, stage: null,
      'init-local': stage(60, 58), init: stage(57, 50), 'modules-config': stage(49, 45), 'modules-final': stage(44, 30),
    } }),
    result: JSON.stringify({ v1: { datasource, errors: [] } }),
  };
}

/** A uid for the admin user that no account of this machine has. */
function freeUid(passwd: string): number {
  const used = new Set(passwd.split('\n').map((l) => Number(l.split(':')[2])));
  let uid = 4200;
  while (used.has(uid)) uid++;
  return uid;
}

/**
 * Starts sshd for `node` as described above. `root` holds the node's files taken out of its
 * image (at least /etc/pibake and /etc/ssh); `runs` maps host folders to /run/<name> on the node.
 */
export async function startNodeLogin(options: {
  daemons: Daemons;
  node: string;
  ip: string;
  root: string;
  dir: string;
  admin: string;
  runs?: Record<string, string>;
}): Promise<NodeLogin> {
  const { daemons, node, ip, root, dir, admin } = options;
  await rm(dir, { recursive: true, force: true });
  const upper = path.join(dir, 'etc');
  for (const sub of ['etc', 'etc-work', 'units', 'bin', 'home', 'cloud-init']) await mkdir(path.join(dir, sub), { recursive: true });
  await chmod(dir, 0o755);

  // The image's files where status reads them (the manifest, haproxy.cfg), its host key and
  // admin key, and its sudo rule for the admin user.
  for (const sub of ['pibake', 'haproxy', 'ssh', 'sudoers.d']) {
    await cp(path.join(root, 'etc', sub), path.join(upper, sub), { recursive: true, preserveTimestamps: true }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }
  const hostKey = path.join(upper, 'ssh/ssh_host_ed25519_key');
  await readFile(hostKey).catch(() => {
    throw new Error(`${node}: no /etc/ssh/ssh_host_ed25519_key in its image`);
  });
  const passwd = await readFile('/etc/passwd', 'utf8');
  const uid = freeUid(passwd);
  const home = path.join(dir, 'home');
  await chown(home, uid, uid);
  await writeFile(path.join(upper, 'passwd'), `${passwd.trimEnd()}\n${admin}:x:${uid}:${uid}:pibake cluster administrator:${home}:/bin/bash\n`);
  await writeFile(path.join(upper, 'group'), `${(await readFile('/etc/group', 'utf8')).trimEnd()}\n${admin}:x:${uid}:\n`);
  const shadow = passwd.split('\n').filter(Boolean).map((l) => `${l.split(':')[0]}:*:19000:0:99999:7:::`);
  await writeFile(path.join(upper, 'shadow'), `${[...shadow, `${admin}:*:19000:0:99999:7:::`].join('\n')}\n`, { mode: 0o640 });
  for (const f of ['passwd', 'group']) await chmod(path.join(upper, f), 0o644);

  const systemctl = path.join(dir, 'bin/systemctl');
  await writeFile(systemctl, SYSTEMCTL.replace('@UNITS@', path.join(dir, 'units')), { mode: 0o755 });
  const state = cloudInitState();
  await writeFile(path.join(dir, 'cloud-init/status.json'), state.status);
  await writeFile(path.join(dir, 'cloud-init/result.json'), state.result);

  const config = path.join(dir, 'sshd_config');
  await writeFile(config, [
    '# sshd of the pibake status test: the node\'s address, host key and admin key from its image',
    // The card's own sshd settings first (first value wins): pibake bakes key-only logins there.
    'Include /etc/ssh/sshd_config.d/*.conf',
    `ListenAddress ${ip}`,
    'HostKey /etc/ssh/ssh_host_ed25519_key',
    'AuthorizedKeysFile /etc/pibake/admin_authorized_keys',
    'PubkeyAuthentication yes', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'PermitRootLogin no',
    // No PAM on this machine's side; the shadow entry `*` (no password) does not lock the account.
    'UsePAM no', 'PidFile none', 'StrictModes yes', 'MaxStartups 100', '',
  ].join('\n'));

  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const runs = Object.entries(options.runs ?? {});
  const setup = [
    'set -e',
    'mount -t tmpfs -o mode=755 pibake-run /run',
    'mkdir -p /run/sshd /run/cloud-init',
    `cp ${q(path.join(dir, 'cloud-init'))}/*.json /run/cloud-init/`,
    ...runs.flatMap(([hostDir, name]) => [`mkdir -p /run/${name}`, `mount --bind ${q(hostDir)} /run/${name}`]),
    `mount -t overlay pibake-etc -o ${q(`lowerdir=/etc,upperdir=${upper},workdir=${path.join(dir, 'etc-work')}`)} /etc`,
    `mount --bind ${q(path.join(dir, 'bin'))} /usr/local/bin`,
    `exec /usr/sbin/sshd -D -e -f ${q(config)}`,
  ].join('\n');
  const sshd = daemons.start(node, 'sshd', 'unshare', ['--mount', '--propagation', 'private', 'sh', '-c', setup]);
  return { node, ip, dir, sshd };
}

/** Waits until sshd listens (its log says so) or fails with the log. */
export async function waitListening(daemons: Daemons, login: NodeLogin, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = await readFile(login.sshd.log, 'utf8').catch(() => '');
    if (log.includes('Server listening on')) return;
    if (!daemons.isRunning(login.sshd) || Date.now() > deadline) throw new Error(`sshd of ${login.node} did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
