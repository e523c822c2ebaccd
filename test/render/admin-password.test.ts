/**
 * The admin password reaches the node through the root filesystem, not the boot partition: the
 * baked script is run for real (chpasswd, as at first boot) against a copy of /etc, in a private
 * mount namespace so the host's own /etc is never touched (root only).
 */
import { execa } from 'execa';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD_FILE, adminPasswordEntries } from '../../builder/render/admin-password.ts';
import { yescryptHash } from '../../builder/render/crypt.ts';

const root = process.getuid?.() === 0;
let work: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pibake-admin-password-'));
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe('adminPasswordEntries', () => {
  it('bakes a root-only chpasswd line, the script and an enabled unit; nothing without a hash', () => {
    expect(adminPasswordEntries('pi', undefined)).toEqual([]);
    const entries = adminPasswordEntries('pi', '$y$j9T$abc$def');
    expect(entries.map((e) => [e.path, e.kind === 'symlink' ? e.target : e.mode.toString(8), e.uid, e.gid])).toEqual([
      ['/etc/pibake/admin-password', '600', 0, 0],
      ['/usr/local/lib/pibake/admin-password.sh', '755', 0, 0],
      ['/etc/systemd/system/pibake-admin-password.service', '644', 0, 0],
      ['/etc/systemd/system/multi-user.target.wants/pibake-admin-password.service', '/etc/systemd/system/pibake-admin-password.service', 0, 0],
    ]);
  });

  it.skipIf(!root)('sets the hash with chpasswd once the user exists, then deletes it; waits while the user is missing', async () => {
    const hash = (await yescryptHash('first-boot-password')) as string;
    const entries = adminPasswordEntries('cardadmin', hash);
    const text = (p: string) => {
      const entry = entries.find((e) => e.path === p);
      return entry && 'data' in entry ? entry.data.toString('utf8') : '';
    };
    const script = path.join(work, 'admin-password.sh');
    await writeFile(script, text('/usr/local/lib/pibake/admin-password.sh'), { mode: 0o755 });
    const hashLine = path.join(work, 'admin-password');
    await writeFile(hashLine, text(ADMIN_PASSWORD_FILE), { mode: 0o600 });
    // A copy of /etc bound over /etc in a private mount namespace: chpasswd edits the copy's shadow.
    const run = (addUser: boolean) => execa('unshare', ['--mount', '--propagation', 'private', 'bash', '-c', `
      set -e
      etc=$(mktemp -d "$WORK/etc.XXXXXX"); cp -a /etc/. "$etc"; mount --bind "$etc" /etc
      mkdir -p /etc/pibake; cp "$WORK/admin-password" ${ADMIN_PASSWORD_FILE}
      ${addUser ? 'useradd -M cardadmin' : 'true'}
      sh "$WORK/admin-password.sh"
      echo "shadow=$(getent shadow cardadmin | cut -d: -f2)"
      test -e ${ADMIN_PASSWORD_FILE} && echo kept || echo removed`], { env: { WORK: work }, reject: false });
    const before = await run(false);
    expect(before.stderr).toContain('pibake: user cardadmin does not exist yet; its password is set at a later boot');
    expect(before.stdout.split('\n')).toEqual(['shadow=', 'kept']);
    const after = await run(true);
    expect(after.exitCode, after.stderr).toBe(0);
    expect(after.stdout.split('\n')).toEqual([`shadow=${hash}`, 'removed']);
    // The host's /etc is untouched.
    expect(await readFile('/etc/passwd', 'utf8')).not.toContain('cardadmin');
  });
});
