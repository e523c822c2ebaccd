/**
 * The guard of a sealed card: a unit baked into every card (sealed or not, so sealing only ever
 * adds files) that runs early in the first boot, before cloud-init's units and every pibake
 * first-boot unit, and checks that the node's secret-bearing files are there. On a card written
 * from a sealed image whose secrets were never added (`pibake flash` and `pibake seal` add them)
 * it stops the boot at once: a message on the console and in the journal, then the machine halts
 * (`systemctl halt` from the script: FailureAction=halt needs systemd 254, bookworm has 252),
 * before cloud-init has created a user or any service has started half-configured. Once the check
 * passes it records so, and later boots skip it (first boot itself removes some of those files,
 * such as the admin password line).
 */
import type { Generation } from '../inventory/types.ts';
import type { RootEntry } from './types.ts';

export const GUARD_UNIT = 'pibake-secrets-check.service';
const GUARD_SCRIPT = '/usr/local/lib/pibake/secrets-check.sh';
export const GUARD_DONE = '/var/lib/pibake/secrets-checked';

export interface GuardInput {
  node: string;
  cluster: string;
  generation: Generation;
  /** Root-filesystem paths of the node's secret-bearing files. */
  secretFiles: string[];
}

/**
 * The files the guard checks: every secret-bearing file, except, on bookworm, the host keys in
 * /etc/ssh: Raspberry Pi OS's init=firstboot (before systemd, hence before the guard) deletes them
 * and makes new ones; their copies in /etc/pibake/ssh, which firstrun.sh puts back, are checked.
 */
export function guardedFiles(input: GuardInput): string[] {
  return input.secretFiles.filter((p) => !(input.generation === 'bookworm' && p.startsWith('/etc/ssh/')));
}

/** Where the guard records success, writes its message and how it halts; tests point these elsewhere. */
export interface GuardHost {
  done: string;
  console: string;
  halt: string;
}

const CARD_HOST: GuardHost = { done: GUARD_DONE, console: '/dev/console', halt: 'systemctl --no-block halt' };

export function guardScript(input: GuardInput, host: GuardHost = CARD_HOST): string {
  const files = guardedFiles(input);
  const doneDir = host.done.replace(/\/[^/]+$/, '');
  return `#!/bin/sh
# pibake: is this card sealed (written from a release image) without its secrets added?
# Node ${input.node} of cluster ${input.cluster}. See ${GUARD_UNIT}.
missing=0
first=
for f in ${files.map(shellQuote).join(' ')}; do
  if [ ! -e "$f" ]; then
    missing=$((missing + 1))
    [ -n "$first" ] || first=$f
  fi
done
if [ "$missing" -eq 0 ]; then
  mkdir -p ${doneDir} && : > ${host.done} ||
    echo "pibake: could not record that this card's secrets are present; the next boot checks again" >&2
  exit 0
fi
# A splash screen would hide the console.
command -v plymouth >/dev/null 2>&1 && plymouth quit 2>/dev/null
say() {
  echo "<2>pibake: $*"
  echo "pibake: $*" >> ${host.console} 2>/dev/null
}
say "THIS CARD IS SEALED: it was written from a release image, and the secrets of node ${input.node} (cluster ${input.cluster}) were never added."
say "$missing of ${files.length} secret files are missing, such as $first."
say "Nothing has been set up. Where cluster.yaml and cluster.secrets.yaml are, write the card again with"
say "  pibake flash ${input.node} --device /dev/sdX    (it adds the secrets as it writes), or make an image with"
say "  pibake seal ${input.node}.img --node ${input.node} --out ${input.node}-card.img    for Imager, Etcher or dd."
say "Halting now."
${host.halt}
exit 1
`;
}

/** A POSIX shell word for any path (overlay paths are the role author's choice). */
function shellQuote(text: string): string {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

/**
 * DefaultDependencies=no with explicit ordering: after the root filesystem is writable and the
 * journal is on disk (so the message is kept), before sysinit.target (every ordinary unit) and
 * before cloud-init's early units, which order themselves before sysinit.target on their own.
 */
export function guardUnit(): string {
  return `# Baked by pibake: stops the first boot of a card whose secrets were never added.
[Unit]
Description=pibake: check that this card's secrets were added
DefaultDependencies=no
After=systemd-remount-fs.service local-fs.target systemd-journal-flush.service
Before=sysinit.target cloud-init-local.service cloud-init-main.service cloud-init-network.service cloud-init.service shutdown.target
Conflicts=shutdown.target
ConditionPathExists=!${GUARD_DONE}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${GUARD_SCRIPT}
StandardOutput=journal
StandardError=journal

[Install]
WantedBy=sysinit.target
`;
}

export function guardEntries(input: GuardInput): RootEntry[] {
  const file = (path: string, data: string, mode: number): RootEntry => ({ kind: 'file', path, mode, uid: 0, gid: 0, data: Buffer.from(data) });
  return [
    file(GUARD_SCRIPT, guardScript(input), 0o755),
    file(`/etc/systemd/system/${GUARD_UNIT}`, guardUnit(), 0o644),
    { kind: 'symlink', path: `/etc/systemd/system/sysinit.target.wants/${GUARD_UNIT}`, target: `/etc/systemd/system/${GUARD_UNIT}`, mode: 0o777, uid: 0, gid: 0 },
  ];
}
