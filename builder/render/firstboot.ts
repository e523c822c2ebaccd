/**
 * pibake-firstboot: the one baked unit that brings a card's role up on its first boot, the same
 * on both generations (cloud-init's `packages:`/`runcmd` are not used: they run once, and a
 * failure there is never retried). It
 *  1. finishes a dpkg run a power cut interrupted (`dpkg --configure -a`);
 *  2. installs the role's packages — from the card's local repository (no network at all) or,
 *     with `--packages online`, from the image's own apt sources — keeping the baked files
 *     (conffiles: --force-confold; ucf-managed ones such as postgresql-common's:
 *     UCF_FORCE_CONFFOLD) and keeping every service from starting on its own (policy-rc.d exit 101:
 *     a PostgreSQL or etcd that starts at install time forms state before the role configures it);
 *     a failure is retried with backoff until it succeeds;
 *  3. only then sets the role up: daemon-reload, enable the role's services, start its first-boot
 *     units in order, then queue a restart of its services (each retries by its own Restart=);
 *  4. records where it is in /var/lib/pibake/firstboot.status and the journal (and the console).
 * Every step is idempotent, so a power cut anywhere only means it runs again on the next boot.
 * Type=exec: boot (and cloud-init's final stage) never waits for it, and a unit it starts may
 * be ordered after anything without deadlocking.
 */
import type { RootEntry } from './types.ts';

export type PackageSource = 'card' | 'online';

export interface FirstBootPlan {
  node: string;
  /** Role packages the base lacks, sorted; installed before the role setup. */
  packages: string[];
  source: PackageSource;
  /** Units to enable and (re)start, in role order. */
  services: string[];
  /** One-shot units to start once, in role order. */
  firstboot: string[];
}

export const FIRSTBOOT_UNIT = 'pibake-firstboot.service';
export const FIRSTBOOT_STATUS = '/var/lib/pibake/firstboot.status';
const FIRSTBOOT_DONE = '/var/lib/pibake/firstboot.done';
const SCRIPT = '/usr/local/lib/pibake/firstboot.sh';
/** The card's local repository (builder/carry/carry.ts writes it). */
export const CARD_REPO = '/var/lib/pibake/packages';

/** Shell quoting: words of safe characters stay bare, anything else is single-quoted. */
export function sq(value: string): string {
  return /^[A-Za-z0-9@%+=:,./_-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

const words = (list: string[]) => list.map(sq).join(' ');

export function firstBootUnit(): string {
  return `# Baked by pibake: installs the role's packages, then sets the role up (${SCRIPT}).
# State: ${FIRSTBOOT_STATUS} and \`journalctl -u ${FIRSTBOOT_UNIT}\`.
[Unit]
Description=pibake first boot: role packages, then role setup
Wants=network-online.target
# After cloud-init's config stage (trixie): hostname, users, locale and time zone are in place.
After=network-online.target cloud-config.service
ConditionPathExists=!${FIRSTBOOT_DONE}

[Service]
Type=exec
ExecStart=${SCRIPT}
RemainAfterExit=yes
TimeoutStartSec=infinity
# The script retries the installation itself; systemd restarts it if the role setup failed.
Restart=on-failure
RestartSec=60
StandardOutput=journal
StandardError=journal

[Install]
WantedBy=multi-user.target
`;
}

export function firstBootScript(plan: FirstBootPlan): string {
  const install = plan.packages.length === 0 ? '' : plan.source === 'card' ? `
# From the card's local repository only: the packages apt resolved for this image when it was
# built, checked here against the archive's SHA-256 in the carried index.
apt_card() {
  mkdir -p "$RUN/lists/partial" "$RUN/sources.d"
  echo "deb [trusted=yes] file:$REPO ./" > "$RUN/sources.d/pibake.list"
  apt-get -q -o Dir::Etc::SourceList="$RUN/sources.d/pibake.list" -o Dir::Etc::SourceParts="$RUN/sources.d" \\
    -o Dir::State::Lists="$RUN/lists" -o APT::Sandbox::User=root "$@"
}
fetch_and_install() {
  apt_card update && apt_card "\${APT_INSTALL[@]}" "\${PACKAGES[@]}"
}
` : `
# From the image's own apt sources (--packages online).
fetch_and_install() {
  apt-get -q update && apt-get -q "\${APT_INSTALL[@]}" "\${PACKAGES[@]}"
}
`;
  return `#!/bin/bash
# pibake first boot of ${plan.node} (see ${FIRSTBOOT_UNIT}). Baked by pibake; idempotent.
set -u
PACKAGES=(${words(plan.packages)})
SERVICES=(${words(plan.services)})
FIRSTBOOT=(${words(plan.firstboot)})
SOURCE=${plan.source}
# PIBAKE_FIRSTBOOT_* move the files and the first retry delay (tests run this script as it is).
ROOT=\${PIBAKE_FIRSTBOOT_ROOT:-}
STATUS=$ROOT${FIRSTBOOT_STATUS}
DONE=$ROOT${FIRSTBOOT_DONE}
POLICY=$ROOT/usr/sbin/policy-rc.d
REPO=$ROOT${CARD_REPO}
RUN=$ROOT/run/pibake-firstboot
CONSOLE=\${PIBAKE_FIRSTBOOT_CONSOLE:-/dev/console}
export DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1
APT_INSTALL=(-o DPkg::Lock::Timeout=600 -o APT::Install-Recommends=false -o APT::Install-Suggests=false
  -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef install -y --fix-broken)

# One line per step in the status file (state, attempt, time, detail) and in the journal; the
# state changes also go to the console, for whoever watches a screen or a serial line.
attempt=0
status() {
  local state=$1 detail=$2 level=\${3:-6}
  mkdir -p "\${STATUS%/*}"
  printf 'state=%s\\nsource=%s\\nattempt=%s\\nupdated=%s\\ndetail=%s\\n' \\
    "$state" "$SOURCE" "$attempt" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$detail" > "$STATUS.tmp" && mv "$STATUS.tmp" "$STATUS"
  echo "<$level>pibake-firstboot: $state: $detail"
  { echo "pibake-firstboot: $state: $detail" > "$CONSOLE"; } 2>/dev/null
  return 0
}
${install}
packages_present() {
  local p
  for p in "\${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='\${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || return 1
  done
}

# Services must not start themselves while their packages install: the role setup starts them,
# configured. Any policy-rc.d the image has is kept aside and put back.
hold_services() {
  mkdir -p "\${POLICY%/*}"
  if [ -e "$POLICY" ] && ! grep -q 'pibake-firstboot' "$POLICY"; then mv "$POLICY" "$POLICY.pibake-saved"; fi
  printf '#!/bin/sh\\n# pibake-firstboot: no service starts during the role package installation.\\nexit 101\\n' > "$POLICY"
  chmod 755 "$POLICY"
}
release_services() {
  if grep -qs 'pibake-firstboot' "$POLICY"; then rm -f "$POLICY"; fi
  if [ -e "$POLICY.pibake-saved" ]; then mv "$POLICY.pibake-saved" "$POLICY"; fi
}

install_packages() {
  # A power cut during an earlier attempt may have left dpkg half-way.
  dpkg --configure -a || return 1
  packages_present && return 0
  fetch_and_install && packages_present
}

setup_role() {
  local unit
  systemctl daemon-reload || { status failed "systemctl daemon-reload failed" 3; return 1; }
  if [ \${#SERVICES[@]} -gt 0 ] && ! systemctl enable "\${SERVICES[@]}"; then
    status failed "systemctl enable \${SERVICES[*]} failed" 3; return 1
  fi
  for unit in "\${FIRSTBOOT[@]}"; do
    status setting-up "starting $unit"
    systemctl start "$unit" || { status failed "$unit failed (journalctl -u $unit); systemd runs the setup again" 3; return 1; }
  done
  # Queued, not waited for: a role's services may need other nodes before they can run (the web
  # app its database through the load balancers, Patroni etcd's quorum), and each retries by its
  # own Restart= policy. A unit that cannot even be queued (missing, masked) fails the setup.
  if [ \${#SERVICES[@]} -gt 0 ] && ! systemctl restart --no-block "\${SERVICES[@]}"; then
    status failed "systemctl restart \${SERVICES[*]} failed; systemd runs the setup again" 3; return 1
  fi
}

if [ \${#PACKAGES[@]} -gt 0 ]; then
  status installing "\${PACKAGES[*]} (from $SOURCE)"
  hold_services
  trap release_services EXIT
  delay=\${PIBAKE_FIRSTBOOT_DELAY:-15}
  until install_packages; do
    attempt=$((attempt + 1))
    status waiting "installing \${PACKAGES[*]} failed (attempt $attempt); next try in \${delay}s" 4
    sleep "$delay"
    delay=$((delay * 2 > 600 ? 600 : delay * 2))
    status installing "\${PACKAGES[*]} (from $SOURCE, attempt $((attempt + 1)))"
  done
  release_services
  trap - EXIT
${plan.source === 'card' ? `  # Installed: the carried .debs have done their job (the index stays, as the record).
  rm -f "$REPO"/*.deb
` : ''}fi
status setting-up "\${SERVICES[*]:-no services}"
setup_role || exit 1
mkdir -p "\${DONE%/*}" && touch "$DONE"
status done "role set up, starting: \${SERVICES[*]:-no services}"
`;
}

/** The unit, its script and the link that enables it. */
export function firstBootEntries(plan: FirstBootPlan): RootEntry[] {
  const file = (path: string, data: string, mode: number): RootEntry => ({ kind: 'file', path, mode, uid: 0, gid: 0, data: Buffer.from(data) });
  return [
    file(SCRIPT, firstBootScript(plan), 0o755),
    file(`/etc/systemd/system/${FIRSTBOOT_UNIT}`, firstBootUnit(), 0o644),
    { kind: 'symlink', path: `/etc/systemd/system/multi-user.target.wants/${FIRSTBOOT_UNIT}`, target: `/etc/systemd/system/${FIRSTBOOT_UNIT}`, mode: 0o777, uid: 0, gid: 0 },
  ];
}
