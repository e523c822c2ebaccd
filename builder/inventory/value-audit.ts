/**
 * Where every text value of cluster.yaml ends up and what keeps it from changing the meaning of
 * those files: the audit behind issue 11, kept as data so docs/inventory.md lists it and a test
 * fails when a new text field has no entry. Besides the checks named here, every text value is
 * refused when it holds a control character (shape.ts), so none can start a new line, YAML
 * document, keyfile group or shell command.
 */
export interface ValueAudit {
  /** The files (or places) the value is written to. */
  reaches: string;
  /** What pibake checks or how it writes the value there. */
  guard: string;
}

export const VALUE_AUDIT: Readonly<Record<string, ValueAudit>> = {
  'cluster.name': { reaches: 'host-independent names: instance ids, output folder, manifest.json, role templates', guard: 'RFC 1123 label (lowercase letters, digits, `-`)' },
  'cluster.domain': { reaches: '/etc/hosts, cloud-init fqdn, netplan and NetworkManager DNS search', guard: 'dot-separated RFC 1123 labels' },
  'network.cidr': { reaches: 'pg_hba.conf, netplan / NetworkManager prefix', guard: 'dotted quad and prefix /8–/30, host bits zero, not in 0/8, 127/8, 224/4 or 240/4' },
  'network.gateway': { reaches: 'netplan route, NetworkManager address1', guard: 'dotted quad inside the network, not its network or broadcast address' },
  'network.dns[]': { reaches: 'netplan nameservers, NetworkManager dns=', guard: 'dotted quad, not in 0/8, 127/8, 224/4 or 240/4' },
  'network.vip': { reaches: 'keepalived.conf virtual_ipaddress, the web app\'s app.json read/write endpoints, a comment in haproxy.cfg', guard: 'dotted quad inside the network; not its network, broadcast or gateway address, nor any node\'s' },
  'base.url': { reaches: 'manifest.json and the cache record (JSON-encoded); never an image', guard: 'https, no spaces; the download is checked against base.sha256' },
  'base.path': { reaches: 'manifest.json (JSON-encoded); never an image', guard: 'a regular file; its content is checked at intake (partition table, both filesystems)' },
  'base.sha256': { reaches: 'the cache key and record', guard: '64 hex digits' },
  'admin.user': { reaches: 'user-data (YAML), firstrun.sh (shell-quoted), /etc/sudoers.d, the first-boot password unit', guard: '`[a-z_][a-z0-9_-]{0,31}`, not root, not a system account (list, and the base image\'s /etc/passwd below uid 1000)' },
  'admin.ssh_keys[]': { reaches: 'user-data (YAML), /etc/pibake/admin_authorized_keys (one key per line)', guard: 'a known key type, base64 that decodes to that type; key files: regular, at most 256 KiB, never a private key, never quoted in errors' },
  'admin.password': { reaches: '/etc/pibake/admin-password-hash in the root filesystem (0600), applied at first boot; never the boot partition', guard: '`none`, `generate` or a crypt hash (`$y$`, `$6$`…); plaintext refused' },
  'locale.timezone': { reaches: 'user-data (YAML), /etc/timezone, the /etc/localtime symlink', guard: 'a zone of the tz database in its exact spelling; the build checks the base image has it' },
  'locale.locale': { reaches: 'user-data (YAML and a locale-gen command), firstrun.sh (shell-quoted), /etc/default/locale', guard: '`xx_YY.UTF-8` or `C.UTF-8` (no shell metacharacters possible)' },
  'locale.keyboard': { reaches: 'user-data (YAML), /etc/default/keyboard', guard: 'an XKB layout name (lowercase letters and digits)' },
  'wifi.country': { reaches: 'cmdline.txt `cfg80211.ieee80211_regdom=`', guard: 'two capital letters' },
  'wifi.ssid': { reaches: 'the NetworkManager keyfile in the root filesystem (plain words, else a list of byte values)', guard: '1–32 bytes' },
  'wifi.passphrase': { reaches: 'nothing: only the PSK derived from it (64 hex digits), in the 0600 NetworkManager keyfile; left out of sealed images', guard: '8–63 printable ASCII characters or 64 hex digits; never quoted in errors' },
  'nodes[].name': { reaches: 'hostname, /etc/hosts, seeds, role templates, output file names, PostgreSQL slot names', guard: 'RFC 1123 label, unique' },
  'nodes[].role': { reaches: 'manifest.json, /etc/pibake/manifest.json', guard: 'the name of a role file in roles/' },
  'nodes[].ip': { reaches: 'netplan, NetworkManager, /etc/hosts, role templates', guard: 'dotted quad inside the network; not its network, broadcast or gateway address; unique' },
  'nodes[].mac': { reaches: 'netplan match, NetworkManager mac-address', guard: 'six hex pairs, not broadcast, multicast or all zeros; unique' },
  'roles.postgresql.database': { reaches: 'SQL of the primary setup, pgpass files, the web app\'s app.json', guard: '`[a-z_][a-z0-9_]{0,62}`' },
  'roles.postgresql.max_slot_wal_keep_size': { reaches: 'the PostgreSQL configuration', guard: 'a number with MB, GB or TB' },
  'roles.etcd.members[]': { reaches: '/etc/default/etcd (ETCD_INITIAL_CLUSTER), Patroni\'s etcd hosts, etcd-setup.sh (as the members\' addresses)', guard: 'the name of a database node of the inventory; 1, 3 or 5 of them, no repeats' },
  'packages.mirrors[].from': { reaches: 'compared with the URIs of the base image\'s apt sources; never an image', guard: 'http, https or file address, no spaces' },
  'packages.mirrors[].to': { reaches: 'the deb822 sources file of the build\'s own apt (under pibake\'s cache); never an image', guard: 'http, https or file address, no spaces' },
  'packages.proxy': { reaches: 'one `-o Acquire::http(s)::Proxy=` argument of the build\'s apt-get (an argument, never a shell); never an image', guard: 'http or https address, no spaces' },
  'packages.max_image_size': { reaches: 'a number of bytes the growth of an image is held to; never an image', guard: 'a number with MB or GB' },
  'roles.lb.stats_user': { reaches: 'haproxy.cfg `stats auth`', guard: 'letters, digits, `_ . -`' },
};
