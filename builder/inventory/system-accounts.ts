/**
 * Accounts that exist, or will exist, on every node for a service: the admin login must not be one
 * of them. Debian's fixed system users (base-passwd), what Raspberry Pi OS Lite adds, and what the
 * shipped roles' packages create. The build also refuses a name the base image's /etc/passwd lists
 * below uid 1000 (bake/base-checks.ts), which covers anything this list misses.
 */
const OWNERS: Record<string, string> = {
  daemon: 'the Debian base system', bin: 'the Debian base system', sys: 'the Debian base system', sync: 'the Debian base system',
  games: 'the Debian base system', man: 'the Debian base system', lp: 'the Debian base system', mail: 'the Debian base system',
  news: 'the Debian base system', uucp: 'the Debian base system', proxy: 'the Debian base system', backup: 'the Debian base system',
  list: 'the Debian base system', irc: 'the Debian base system', gnats: 'the Debian base system', nobody: 'the Debian base system',
  _apt: 'apt', messagebus: 'D-Bus', sshd: 'OpenSSH', polkitd: 'polkit', avahi: 'Avahi', dnsmasq: 'dnsmasq', tss: 'the TPM stack',
  _chrony: 'chrony', ntp: 'NTP', ntpsec: 'NTPsec', statd: 'NFS', _rpc: 'rpcbind', lightdm: 'LightDM', pulse: 'PulseAudio', rtkit: 'RealtimeKit',
  colord: 'colord', saned: 'SANE', 'rpi-first-boot-wizard': 'Raspberry Pi OS first boot', 'www-data': 'nginx and the web application',
  postgres: 'PostgreSQL runs as it', haproxy: 'HAProxy runs as it', etcd: 'etcd runs as it', keepalived_script: 'keepalived',
  nginx: 'nginx', _laurel: 'auditd', uuidd: 'uuidd', usbmux: 'usbmuxd', cups: 'CUPS', 'cloud-init': 'cloud-init',
};

/** Who owns the account `name`, or undefined for a name free for a person. */
export function systemAccountOwner(name: string): string | undefined {
  if (Object.hasOwn(OWNERS, name)) return OWNERS[name];
  if (name.startsWith('systemd-')) return 'systemd';
  if (name.startsWith('_')) return 'a system service (names starting with _ are Debian\'s)';
  return undefined;
}
