/**
 * The admin password hash never goes on the boot partition: anyone holding the card (or the image)
 * can read that FAT partition, and a crypt hash can be attacked offline. It is baked into the root
 * filesystem as a chpasswd line readable by root only, and a small one-shot unit applies it once the
 * admin user exists (cloud-init creates the user on trixie, firstrun.sh on bookworm the boot before),
 * then deletes it. Self-contained: it depends on no other pibake unit.
 */
import { GENERATED_SECRET } from './secrets.ts';
import type { RootEntry } from './types.ts';

export const ADMIN_PASSWORD_FILE = '/etc/pibake/admin-password';
const SCRIPT = '/usr/local/lib/pibake/admin-password.sh';
const UNIT = 'pibake-admin-password.service';

const script = `#!/bin/sh
# pibake: set the admin password from the hash baked into the root filesystem (root only, 0600),
# once the admin user exists, then delete the hash. chpasswd reads it from the file: the hash is
# never on a command line. Until the user exists the file stays, and a later boot tries again.
set -eu
FILE=${ADMIN_PASSWORD_FILE}
user=$(cut -d: -f1 "$FILE")
if ! id -u "$user" >/dev/null 2>&1; then
  echo "pibake: user $user does not exist yet; its password is set at a later boot" >&2
  exit 0
fi
chpasswd -e < "$FILE"
rm -f "$FILE"
`;

// cloud-init creates users in its network stage (cloud-init-network.service since 24.3,
// cloud-init.service before); cloud-config.service follows it. Units that do not exist are ignored.
const unit = `[Unit]
Description=pibake: set the admin password (its hash is kept off the boot partition)
After=cloud-init.service cloud-init-network.service cloud-config.service
ConditionPathExists=${ADMIN_PASSWORD_FILE}

[Service]
Type=oneshot
ExecStart=${SCRIPT}

[Install]
WantedBy=multi-user.target
`;

/** Root-filesystem entries that set `user`'s password to `hash` at first boot; none without a hash. */
export function adminPasswordEntries(user: string, hash: string | undefined): RootEntry[] {
  if (hash === undefined) return [];
  const file = (path: string, data: string, mode: number): RootEntry => ({ kind: 'file', path, mode, uid: 0, gid: 0, data: Buffer.from(data) });
  return [
    // Secret-bearing: left out of sealed images like the role secrets.
    { kind: 'file', path: ADMIN_PASSWORD_FILE, mode: 0o600, uid: 0, gid: 0, data: Buffer.from(`${user}:${hash}\n`), secrets: [GENERATED_SECRET.adminPassword] },
    file(SCRIPT, script, 0o755),
    file(`/etc/systemd/system/${UNIT}`, unit, 0o644),
    { kind: 'symlink', path: `/etc/systemd/system/multi-user.target.wants/${UNIT}`, target: `/etc/systemd/system/${UNIT}`, mode: 0o777, uid: 0, gid: 0 },
  ];
}
