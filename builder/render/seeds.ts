/**
 * First-boot configuration per generation.
 * - trixie: cloud-init NoCloud seeds on the boot partition (meta-data, user-data, network-config)
 *   plus ` ds=nocloud;i=<instance-id>` on cmdline.txt, as Raspberry Pi Imager does.
 * - bookworm (no cloud-init): Imager-1.x style `firstrun.sh` run once through systemd.run, the
 *   `ssh` flag file, a NetworkManager keyfile baked into the rootfs.
 * Role packages and role setup are not the seeds' business on either generation: the baked
 * pibake-firstboot unit does both (firstboot.ts).
 * The boot partition is FAT and world-readable: nothing secret is ever written to it, not even the
 * admin password hash (admin-password.ts bakes it into the root filesystem for both generations).
 */
import { createHash, pbkdf2Sync } from 'node:crypto';
import { dump } from 'js-yaml';
import { PibakeError } from '../common/errors.ts';
import type { Inventory } from '../inventory/types.ts';
import { adminPasswordEntries } from './admin-password.ts';
import { GENERATED_SECRET } from './secrets.ts';
import type { NodeView } from './context.ts';
import { sq } from './firstboot.ts';
import type { BootEdit, BootFile, RootEntry } from './types.ts';

/** What the seed writers need to know about the node being rendered. */
export interface NodeFacts {
  inventory: Inventory;
  node: NodeView;
  nodes: NodeView[];
  /** The inventory's admin keys: public, so they may go on the boot partition. */
  adminKeys: string[];
  /** The generated cluster admin key (public half), kept in cluster.secrets.yaml: baked in the root filesystem only. */
  generatedAdminKey?: string;
  passwordHash?: string;
  /** The Wi-Fi passphrase (from ClusterSecrets, so a sealed rendering sees a stand-in). */
  wifiPassphrase?: string;
}

export interface Seeds { bootFiles: BootFile[]; bootEdits: BootEdit[]; rootEntries: RootEntry[] }

/** The cloud-init instance-id of a node's card: its name and the first 12 digits of the build id. */
export function instanceId(node: string, buildId: string): string {
  if (!/^[0-9a-f]{12,}$/.test(buildId)) {
    throw new PibakeError(`build id "${buildId}" is not a lowercase hex digest of at least 12 digits`);
  }
  return `${node}-${buildId.slice(0, 12)}`;
}

/**
 * WPA-PSK as wpa_passphrase computes it: PBKDF2-HMAC-SHA1(passphrase, ssid, 4096 rounds, 32 bytes),
 * hex. 64 hex digits are already a PSK (the inventory accepts one, like wpa_supplicant's psk=).
 */
export function wifiPsk(ssid: string, passphrase: string): string {
  if (/^[0-9a-fA-F]{64}$/.test(passphrase)) return passphrase.toLowerCase();
  return pbkdf2Sync(Buffer.from(passphrase, 'utf8'), Buffer.from(ssid, 'utf8'), 4096, 32, 'sha1').toString('hex');
}

const file = (path: string, data: string | Buffer, mode = 0o644, secrets?: string[]): RootEntry => ({
  kind: 'file', path, mode, uid: 0, gid: 0, data: Buffer.isBuffer(data) ? data : Buffer.from(data), ...(secrets ? { secrets } : {}),
});
const yamlDump = (value: unknown) => dump(value, { lineWidth: -1, noRefs: true });
/** Groups of the admin user (a group list, not a command: pibake itself never runs privileged tools). */
const ADMIN_GROUPS = 'adm sudo users systemd-journal'.split(' ');

/**
 * The cluster part of /etc/hosts, by IP, fqdn and short name: the nodes this node works with —
 * itself, the load balancers and the PostgreSQL primary; a load balancer names every node. Listing
 * every node everywhere would make adding a node rebuild (and reflash) every card for a hosts line.
 */
export function hostsLines(facts: NodeFacts): string {
  const everyone = facts.node.tags.includes('load-balancer');
  const peers = facts.nodes.filter(
    (n) => everyone || n.name === facts.node.name || n.tags.includes('load-balancer') || n.tags.includes('postgresql-primary'),
  );
  return peers.map((n) => `${n.ip}\t${n.fqdn} ${n.name}\n`).join('');
}

function hostsFile(facts: NodeFacts, header: string): string {
  return `${header}127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n\n` +
    `# cluster ${facts.inventory.cluster.name}\n${hostsLines(facts)}`;
}

/** Replace any `ds=` token of cmdline.txt with ours, keeping it one line. */
export function setCmdlineToken(current: string, prefix: string, token: string | undefined): string {
  const words = current.replace(/\s+$/, '').split(/\s+/).filter((w) => w !== '' && !w.startsWith(prefix));
  if (token !== undefined) words.push(token);
  return `${words.join(' ')}\n`;
}

// ---------------------------------------------------------------- trixie: cloud-init NoCloud

/**
 * Debian's locale-gen ignores the locale cloud-init passes it and builds only what /etc/locale.gen
 * enables, so a locale the image has not generated would never exist. bootcmd runs before the
 * locale module: enable the line (once) and generate it. C.UTF-8 is always there.
 */
export function localeGenCommand(locale: string): string[] | undefined {
  if (locale.startsWith('C.')) return undefined;
  const line = `${locale} UTF-8`; // the inventory's pattern admits no shell metacharacters
  return ['sh', '-c', `grep -qx '${line}' /etc/locale.gen || { echo '${line}' >> /etc/locale.gen && locale-gen; }`];
}

export function cloudInitSeeds(facts: NodeFacts): Seeds {
  const { inventory, node } = facts;
  const user: Record<string, unknown> = {
    name: inventory.admin.user,
    gecos: 'pibake cluster administrator',
    groups: ADMIN_GROUPS,
    shell: '/bin/bash',
    sudo: 'ALL=(ALL) NOPASSWD:ALL',
    // Created without a password; pibake-admin-password.service sets one from the root filesystem
    // (admin-password.ts): the boot partition, which user-data is on, is readable by anyone.
    lock_passwd: true,
  };
  // The generated cluster key is not here (sharedRootEntries); cloud-init's schema refuses an empty list.
  if (facts.adminKeys.length > 0) user.ssh_authorized_keys = facts.adminKeys;
  const config: Record<string, unknown> = {
    hostname: node.name,
    fqdn: node.fqdn,
    prefer_fqdn_over_hostname: false,
    // /etc/hosts is rendered by cloud-init from the template pibake bakes (hosts.debian.tmpl),
    // so it carries the node's cluster peers and survives cloud-init's rewrite on every boot.
    manage_etc_hosts: true,
    users: [user],
    disable_root: true,
    ssh_pwauth: false,
    // Per-node host keys are baked into /etc/ssh: cloud-init must not delete them, and it only
    // generates a listed type whose key file is missing (cc_ssh), so ed25519 stays ours. (An empty
    // list is what Raspberry Pi's 99_raspberry-pi.cfg uses, but cloud-init 22.4's schema rejects it.)
    ssh_deletekeys: false,
    ssh_genkeytypes: ['ed25519'],
    timezone: inventory.locale.timezone,
    locale: inventory.locale.locale,
    keyboard: { layout: inventory.locale.keyboard },
    // Packages are pibake-firstboot's: it retries until they are in, then sets the role up.
    package_update: false,
    package_upgrade: false,
  };
  const enableLocale = localeGenCommand(inventory.locale.locale);
  if (enableLocale) config.bootcmd = [enableLocale];
  const userData = `#cloud-config\n# pibake: node ${node.name} of cluster ${inventory.cluster.name}. No secrets here (boot partition is world-readable).\n${yamlDump(config)}`;
  return {
    bootFiles: [
      { path: 'user-data', data: Buffer.from(userData) },
      { path: 'network-config', data: Buffer.from(networkConfig(facts)) },
      // The `ssh` flag (sshswitch.service) is still honoured on trixie; harmless where it is not.
      { path: 'ssh', data: Buffer.alloc(0) },
    ],
    bootEdits: regulatoryDomainEdits(facts),
    rootEntries: [
      file('/etc/cloud/templates/hosts.debian.tmpl', hostsFile(facts,
        '## template:jinja\n{#\nBaked by pibake: cloud-init renders /etc/hosts from this on every boot (manage_etc_hosts).\n#}\n' +
        '# Generated by cloud-init from pibake\'s template; change the cluster inventory, not this file.\n')),
      ...sharedRootEntries(facts),
    ],
  };
}

/**
 * The trixie seeds that carry the instance-id (NoCloud meta-data and the `ds=nocloud;i=` token on
 * cmdline.txt, whose edit goes first): bound after rendering, once the build id is known
 * (bindBuildId). Bookworm has no cloud-init, so nothing of its seeds carries the id.
 */
export function instanceSeeds(node: string, id: string): { bootFiles: BootFile[]; bootEdits: BootEdit[] } {
  return {
    bootFiles: [{ path: 'meta-data', data: Buffer.from(yamlDump({ 'instance-id': id, 'local-hostname': node })) }],
    bootEdits: [{ path: 'cmdline.txt', describe: `cmdline: set ds=nocloud;i=${id}`, edit: (current) => setCmdlineToken(current, 'ds=', `ds=nocloud;i=${id}`) }],
  };
}

/** Where sshd finds the generated admin key (AuthorizedKeysFile in 50-pibake.conf names it with %u). */
export const GENERATED_KEYS_DIR = '/etc/pibake/ssh/authorized_keys';

/**
 * Root-filesystem files both generations get: the admin password line, the generated admin key
 * (which lives in cluster.secrets.yaml, so a sealed build cannot know it: it goes to the root
 * filesystem, never into user-data), and Wi-Fi.
 */
function sharedRootEntries(facts: NodeFacts): RootEntry[] {
  const admin = facts.inventory.admin.user;
  const entries = [...adminPasswordEntries(admin, facts.passwordHash), ...wifiEntries(facts)];
  if (facts.generatedAdminKey) {
    entries.push(file(`${GENERATED_KEYS_DIR}/${admin}`, `${facts.generatedAdminKey}\n`, 0o644, [GENERATED_SECRET.adminSshKey]));
  }
  return entries;
}

/**
 * Wi-Fi the way Raspberry Pi OS sets it up (raspi-config's do_wifi_country, Imager): the country as
 * `cfg80211.ieee80211_regdom=` on cmdline.txt (cmdlineEdits), the radio on in NetworkManager's
 * state (pi-gen ships WirelessEnabled=false when no country was set), and the network as a
 * NetworkManager keyfile readable by root only: NetworkManager ignores keyfiles others can read,
 * and the boot partition, where cloud-init's network-config lives, is readable by anyone.
 */
function wifiEntries(facts: NodeFacts): RootEntry[] {
  const keyfile = nmWifi(facts);
  if (!keyfile) return [];
  return [
    file('/etc/NetworkManager/system-connections/wlan0.nmconnection', keyfile, 0o600, [GENERATED_SECRET.wifi]),
    file('/var/lib/NetworkManager/NetworkManager.state', '[main]\nWirelessEnabled=true\n'),
  ];
}

/** The regulatory domain on cmdline.txt, as raspi-config and Raspberry Pi Imager write it. */
function regulatoryDomainEdits(facts: NodeFacts): BootEdit[] {
  const country = facts.inventory.wifi?.country;
  if (!country) return [];
  const token = `cfg80211.ieee80211_regdom=${country}`;
  return [{ path: 'cmdline.txt', describe: `cmdline: set ${token}`, edit: (current) => setCmdlineToken(current, 'cfg80211.ieee80211_regdom=', token) }];
}

export function networkConfig(facts: NodeFacts): string {
  const { inventory, node } = facts;
  const eth0: Record<string, unknown> = {};
  if (node.mac) {
    eth0.match = { macaddress: node.mac.toLowerCase() };
    eth0['set-name'] = 'eth0';
  }
  Object.assign(eth0, {
    dhcp4: false,
    dhcp6: false,
    addresses: [`${node.ip}/${inventory.network.prefixLength}`],
    // `to: default` is netplan shorthand that cloud-init 22.4 (Debian bookworm) cannot parse
    // ("Address default is not a valid ip address"); 0.0.0.0/0 means the same everywhere.
    routes: [{ to: '0.0.0.0/0', via: inventory.network.gateway }],
    nameservers: { addresses: inventory.network.dns, search: [inventory.cluster.domain] },
  });
  // Wi-Fi is not here: network-config is on the boot partition, readable by anyone holding the
  // card, so the network and its key go into a root-only NetworkManager keyfile (wifiEntries).
  const network: Record<string, unknown> = { version: 2, ethernets: { eth0 } };
  return yamlDump({ network });
}

// ---------------------------------------------------------------- bookworm: firstrun.sh

const FIRSTRUN_TOKENS = ['systemd.run=', 'systemd.run_success_action=', 'systemd.unit='];

function nmConnection(facts: NodeFacts): string {
  const { inventory, node } = facts;
  const lines = ['[connection]', 'id=eth0', `uuid=${stableUuid(`pibake-eth0-${inventory.cluster.name}-${node.name}`)}`, 'type=ethernet'];
  if (!node.mac) lines.push('interface-name=eth0');
  lines.push('autoconnect=true', '', '[ethernet]');
  if (node.mac) lines.push(`mac-address=${node.mac.toUpperCase()}`);
  lines.push('', '[ipv4]', 'method=manual', `address1=${node.ip}/${inventory.network.prefixLength},${inventory.network.gateway}`,
    `dns=${inventory.network.dns.join(';')};`, `dns-search=${inventory.cluster.domain};`, '', '[ipv6]', 'method=disabled', '');
  return lines.join('\n');
}

function nmWifi(facts: NodeFacts): string | undefined {
  const wifi = facts.inventory.wifi;
  if (!wifi || facts.wifiPassphrase === undefined) return undefined;
  return ['[connection]', 'id=wlan0', `uuid=${stableUuid(`pibake-wlan0-${facts.inventory.cluster.name}-${facts.node.name}`)}`,
    'type=wifi', 'interface-name=wlan0', 'autoconnect=true', '', '[wifi]', 'mode=infrastructure', `ssid=${nmKeyfileSsid(wifi.ssid)}`, '',
    '[wifi-security]', 'key-mgmt=wpa-psk', `psk=${wifiPsk(wifi.ssid, facts.wifiPassphrase)}`, '', '[ipv4]', 'method=auto', '',
    '[ipv6]', 'method=auto', ''].join('\n');
}

/**
 * The `ssid=` value of a NetworkManager keyfile. Plain words stay readable; anything else (spaces at
 * the ends, `;`, `\\`, `[`, non-ASCII, digits that would read as a byte list) is written as NM's
 * list of byte values, which no character can break out of. The inventory refuses control characters
 * anyway; this keeps the keyfile right whatever an SSID holds.
 */
export function nmKeyfileSsid(ssid: string): string {
  if (/^[A-Za-z0-9_.@+-]+( [A-Za-z0-9_.@+-]+)*$/.test(ssid) && /[A-Za-z_.@+-]/.test(ssid)) return ssid;
  return `${[...Buffer.from(ssid, 'utf8')].join(';')};`;
}

/** A name-based UUID (v5 layout over SHA-1) so the same node always gets the same connection UUID. */
function stableUuid(name: string): string {
  const hash = createHash('sha1').update(name).digest().subarray(0, 16);
  hash[6] = ((hash[6] as number) & 0x0f) | 0x50;
  hash[8] = ((hash[8] as number) & 0x3f) | 0x80;
  const h = hash.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function bookwormSeeds(facts: NodeFacts): Seeds {
  const { inventory, node } = facts;
  const admin = inventory.admin.user;
  const locale = inventory.locale;
  if (!/^[A-Za-z0-9_+/-]+$/.test(locale.timezone) || locale.timezone.includes('..')) {
    throw new PibakeError(`timezone "${locale.timezone}" is not a zoneinfo name`, { hint: 'e.g. Europe/Berlin or UTC' });
  }
  const firstrun = `#!/bin/bash
# pibake first run (bookworm): started once by systemd.run from cmdline.txt, like Raspberry Pi
# Imager's firstrun.sh. Creates the admin user, enables ssh, sets the locale, then removes its
# cmdline tokens and itself. The role follows on the next boot (pibake-firstboot.service).
# No secrets here: this file lives on the world-readable boot partition.
set +e
FW=/boot/firmware
[ -d "$FW" ] || FW=/boot
ADMIN=${sq(admin)}
# Created without a password; pibake-admin-password.service sets one on the next boot from the root
# filesystem (the hash is never on this partition).
if ! id -u "$ADMIN" >/dev/null 2>&1; then
  useradd -m -U -s /bin/bash -c 'pibake cluster administrator' "$ADMIN"
  usermod -L "$ADMIN"
fi
for g in ${ADMIN_GROUPS.join(' ')}; do getent group "$g" >/dev/null && usermod -aG "$g" "$ADMIN"; done
systemctl disable userconfig.service >/dev/null 2>&1
HOME_DIR=$(getent passwd "$ADMIN" | cut -d: -f6)
install -d -m 0700 -o "$ADMIN" -g "$(id -gn "$ADMIN")" "$HOME_DIR/.ssh"
install -m 0600 -o "$ADMIN" -g "$(id -gn "$ADMIN")" /etc/pibake/admin_authorized_keys "$HOME_DIR/.ssh/authorized_keys"
# Raspberry Pi OS's init=firstboot regenerated the SSH host keys on the boot before this one;
# put the node's baked keys (the ones in the operator's known_hosts) back.
install -m 0600 /etc/pibake/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key
install -m 0644 /etc/pibake/ssh/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ed25519_key.pub
systemctl enable ssh >/dev/null 2>&1
LOCALE=${sq(locale.locale)}
if [ -f /etc/locale.gen ] && ! grep -q "^$LOCALE " /etc/locale.gen; then
  sed -i "s/^# *\\($LOCALE .*\\)/\\1/" /etc/locale.gen
  locale-gen >/dev/null 2>&1
fi
update-locale LANG="$LOCALE" >/dev/null 2>&1
sed -i -e 's/ systemd\\.run=[^ ]*//' -e 's/ systemd\\.run_success_action=[^ ]*//' -e 's/ systemd\\.unit=[^ ]*//' "$FW/cmdline.txt"
rm -f "$FW/firstrun.sh"
exit 0
`;
  const rootEntries: RootEntry[] = [
    file('/etc/hostname', `${node.name}\n`),
    file('/etc/hosts', hostsFile(facts, '# Baked by pibake; change the cluster inventory, not this file.\n')),
    file('/etc/NetworkManager/system-connections/eth0.nmconnection', nmConnection(facts), 0o600),
    file('/etc/pibake/admin_authorized_keys', facts.adminKeys.map((k) => `${k}\n`).join('')),
    file('/etc/sudoers.d/010_pibake-admin', `${admin} ALL=(ALL) NOPASSWD:ALL\n`, 0o440),
    file('/etc/timezone', `${locale.timezone}\n`),
    { kind: 'symlink', path: '/etc/localtime', target: `/usr/share/zoneinfo/${locale.timezone}`, mode: 0o777, uid: 0, gid: 0 },
    file('/etc/default/keyboard', `XKBMODEL="pc105"\nXKBLAYOUT="${locale.keyboard}"\nXKBVARIANT=""\nXKBOPTIONS=""\nBACKSPACE="guess"\n`),
    file('/etc/default/locale', `LANG=${locale.locale}\n`),
  ];
  rootEntries.push(...sharedRootEntries(facts));
  const bootFiles: BootFile[] = [
    { path: 'firstrun.sh', data: Buffer.from(firstrun) },
    { path: 'ssh', data: Buffer.alloc(0) },
  ];
  return {
    bootFiles,
    rootEntries,
    bootEdits: [{
      path: 'cmdline.txt',
      describe: 'cmdline: run firstrun.sh once via systemd.run',
      edit: (current) => {
        let text = current;
        for (const prefix of FIRSTRUN_TOKENS) text = setCmdlineToken(text, prefix, undefined);
        text = setCmdlineToken(text, 'systemd.run=', 'systemd.run=/boot/firmware/firstrun.sh');
        text = setCmdlineToken(text, 'systemd.run_success_action=', 'systemd.run_success_action=reboot');
        return setCmdlineToken(text, 'systemd.unit=', 'systemd.unit=kernel-command-line.target');
      },
    }, ...regulatoryDomainEdits(facts)],
  };
}
