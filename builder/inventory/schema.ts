/**
 * cluster.yaml, declared once. Every key, its type, default, validation and description lives in
 * this table; the validator, the JSON Schema (schema/cluster.schema.json) and the reference doc
 * (docs/inventory.md) are all generated from it. Rules that relate several values (IPs inside the
 * CIDR, unique names, role tags, SSH keys on disk) live in checks.ts; the base image's, which the
 * command line's --base shares, in base.ts.
 */
import type { Field, Issue, ObjectSpec } from './spec.ts';
import { BASE_FIELD } from './base.ts';
import { ETCD_FIELD, LB_HA_FIELDS, PATRONI_FIELD, VIP_FIELD } from './schema-ha.ts';
import { CIDR_PATTERN, DOMAIN_PATTERN, IPV4_PATTERN, LABEL_PATTERN, MAC_PATTERN, ipToNumber, parseCidr, numberToIp, reservedRange } from './net.ts';
import { systemAccountOwner } from './system-accounts.ts';

const LABEL_FORMAT = "lowercase letters, digits and '-', 1-63 characters, not starting or ending with '-' (RFC 1123)";
const PORT = { type: 'integer', minimum: 1, maximum: 65535 } as const;
const IPV4 = { type: 'string', pattern: IPV4_PATTERN, label: 'IPv4 address', format: 'four numbers 0-255 without leading zeros, e.g. 10.0.0.11' } as const;

/** A crypt(3) hash pibake passes on: yescrypt, gost-yescrypt, scrypt, SHA-512 or SHA-256 crypt. */
export const CRYPT_HASH_PATTERN = /^\$(y|gy|7|6|5)\$[./0-9A-Za-z$=,]+$/;
/** Password values accepted: no password, a generated one, or a crypt(3) hash. */
const PASSWORD_PATTERN = new RegExp(`^(none|generate|${CRYPT_HASH_PATTERN.source.slice(1, -1)})$`);

function checkCidr(cidr: string): Issue | undefined {
  if (!CIDR_PATTERN.test(cidr)) return undefined;
  const subnet = parseCidr(cidr);
  if (subnet.prefixLength < 8) {
    return {
      message: `network /${subnet.prefixLength} is larger than any local network`,
      hint: 'give the network the nodes share, e.g. 10.0.0.0/24 or 192.168.1.0/24; with /0 every address would be on-link and nothing would go through the gateway',
    };
  }
  const reserved = reservedRange(subnet.network);
  if (reserved) return { message: `"${cidr}" lies in ${reserved}, which cannot be a cluster network`, hint: 'use a private network such as 10.0.0.0/24 or 192.168.1.0/24' };
  if (subnet.prefixLength > 30) {
    return { message: `network /${subnet.prefixLength} is too small for a cluster`, hint: 'use a prefix of /30 or shorter, e.g. /24' };
  }
  if (subnet.address !== subnet.network) {
    return {
      message: `"${cidr}" has host bits set`,
      hint: `write the network address: ${numberToIp(subnet.network)}/${subnet.prefixLength}`,
    };
  }
  return undefined;
}

function checkPassword(value: string): Issue | undefined {
  if (PASSWORD_PATTERN.test(value)) return undefined;
  return {
    message: 'admin.password must be none, generate or a crypt hash; a plaintext password is not accepted',
    hint:
      'cluster.yaml is meant to be shared and committed, and a plaintext password would be readable by anyone with it; ' +
      'write `generate` (pibake keeps a random one in the secrets folder) or a hash from `mkpasswd -m yescrypt` or `openssl passwd -6`',
  };
}

function checkUser(value: string): Issue | undefined {
  if (value === 'root') return { message: 'admin.user may not be root', hint: 'name an ordinary user; it gets sudo rights' };
  const owner = systemAccountOwner(value);
  if (owner) {
    return {
      message: `admin.user "${value}" is a system account (${owner})`,
      hint: 'name an ordinary user such as pi or admin: the admin login must not take over (or be taken over by) a service\'s account',
    };
  }
  return undefined;
}

/**
 * A zone the tz database knows, as the nodes' /usr/share/zoneinfo spells it (file names are case-
 * sensitive). Node's Intl carries the same database; the build also checks the base image has it.
 */
const TIMEZONE_PATTERN = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+){0,2}$/;

function checkTimezone(value: string): Issue | undefined {
  if (!TIMEZONE_PATTERN.test(value)) return undefined;
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone: value }).resolvedOptions().timeZone;
  } catch {
    return { message: `time zone "${value}" is not in the tz database`, hint: 'name a zone such as Europe/London, America/New_York or Etc/UTC (list them with `timedatectl list-timezones`)' };
  }
  if (resolved !== value && resolved.toLowerCase() === value.toLowerCase()) {
    return { message: `time zone "${value}" is spelt ${resolved}`, hint: `write ${resolved}: zone names are case-sensitive on the nodes` };
  }
  return undefined;
}

/** A MAC a card can have: not the broadcast address, not a multicast group, not all zeros. */
function checkMac(value: string): Issue | undefined {
  if (!MAC_PATTERN.test(value)) return undefined;
  const first = Number.parseInt(value.slice(0, 2), 16);
  if (/^(ff:){5}ff$/i.test(value)) return { message: `MAC ${value} is the broadcast address`, hint: 'copy the card\'s own MAC address (ip link, or the label on the board)' };
  if ((first & 1) === 1) return { message: `MAC ${value} is a multicast address (the first byte is odd)`, hint: 'copy the card\'s own MAC address (ip link, or the label on the board)' };
  if (/^(00:){5}00$/.test(value)) return { message: `MAC ${value} is all zeros`, hint: 'copy the card\'s own MAC address, or leave mac out' };
  return undefined;
}

/** A name server the nodes can reach: not "this network", loopback (nodes run no resolver), multicast or reserved. */
function checkDns(value: string): Issue | undefined {
  if (!IPV4_PATTERN.test(value)) return undefined;
  const reserved = reservedRange(ipToNumber(value));
  return reserved ? { message: `name server ${value} lies in ${reserved}`, hint: 'give the address of your router or of a DNS server on the network' } : undefined;
}


function checkSsid(value: string): Issue | undefined {
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes < 1 || bytes > 32) return { message: `SSID is ${bytes} bytes long`, hint: 'an SSID has 1-32 bytes' };
  return undefined;
}

function checkRepositoryUrl(value: string): Issue | undefined {
  if (/\s/.test(value)) return { message: `"${value}" contains spaces`, hint: 'percent-encode spaces as %20' };
  if (!/^(https?|file):\/\/[^/]/.test(value) && !/^file:\/\//.test(value)) {
    return { message: `"${value}" is not an apt repository address`, hint: 'write it as apt does in a sources file, e.g. http://deb.debian.org/debian' };
  }
  return undefined;
}

export const INVENTORY_FIELDS: readonly Field[] = [
  {
    key: 'cluster',
    description: 'Names shared by every node.',
    required: true,
    spec: {
      type: 'object',
      fields: [
        {
          key: 'name',
          description: 'Cluster name: secrets folder, instance ids and output file names are derived from it.',
          required: true,
          example: 'pistack',
          spec: { type: 'string', pattern: LABEL_PATTERN, label: 'cluster name', format: LABEL_FORMAT },
        },
        {
          key: 'domain',
          description: 'DNS domain of the nodes; a node\'s FQDN is <name>.<domain> (written to /etc/hosts).',
          required: true,
          example: 'pistack.lan',
          spec: { type: 'string', pattern: DOMAIN_PATTERN, label: 'domain', format: `dot-separated labels of ${LABEL_FORMAT}, e.g. pistack.lan` },
        },
      ],
    },
  },
  {
    key: 'network',
    description: 'The wired network all nodes share; every node gets a static address on eth0.',
    required: true,
    spec: {
      type: 'object',
      fields: [
        {
          key: 'cidr',
          description: 'Network address and prefix length of the cluster network.',
          required: true,
          example: '10.0.0.0/24',
          spec: { type: 'string', pattern: CIDR_PATTERN, label: 'CIDR', format: 'network address / prefix length, e.g. 10.0.0.0/24', check: checkCidr },
        },
        {
          key: 'gateway',
          description: 'Default route; must lie inside the CIDR.',
          required: true,
          example: '10.0.0.1',
          spec: IPV4,
        },
        {
          key: 'dns',
          description: 'Name servers the nodes use.',
          defaultText: 'the gateway',
          example: '[10.0.0.1]',
          spec: { type: 'array', items: { ...IPV4, check: checkDns }, minItems: 1 },
        },
        VIP_FIELD,
      ],
    },
  },
  BASE_FIELD,
  {
    key: 'admin',
    description: 'The login account created on every node (with sudo).',
    required: true,
    spec: {
      type: 'object',
      fields: [
        {
          key: 'user',
          description: 'User name.',
          required: true,
          example: 'pi',
          spec: {
            type: 'string',
            pattern: /^[a-z_][a-z0-9_-]{0,31}$/,
            label: 'user name',
            format: 'lowercase letters, digits, _ and -, starting with a letter or _, at most 32 characters',
            check: checkUser,
          },
        },
        {
          key: 'ssh_keys',
          description:
            'Public keys allowed to log in: each entry is a path to a .pub file (`~` and relative paths allowed) or a key written out ("ssh-ed25519 AAAA… me@laptop").',
          default: [],
          spec: { type: 'array', items: { type: 'string', minLength: 1 } },
        },
        {
          key: 'generate_ssh_key',
          description: 'Make a cluster admin key pair (ed25519) in the secrets folder and authorise it on every node.',
          default: true,
          spec: { type: 'boolean' },
        },
        {
          key: 'password',
          description:
            '`none`: no password login at all (SSH keys only); `generate`: a random password kept in the secrets folder; or a crypt hash ($y$… yescrypt, $6$… sha512crypt). Plaintext is refused.',
          default: 'none',
          spec: { type: 'string', pattern: PASSWORD_PATTERN, label: 'password setting', check: checkPassword },
        },
      ],
    },
  },
  {
    key: 'locale',
    description: 'Time zone, language and keyboard of every node.',
    default: {},
    spec: {
      type: 'object',
      fields: [
        {
          key: 'timezone',
          description: 'IANA time zone name.',
          default: 'Etc/UTC',
          example: 'Europe/London',
          spec: {
            type: 'string',
            pattern: TIMEZONE_PATTERN,
            check: checkTimezone,
            label: 'time zone',
            format: 'an IANA zone name such as Europe/London or UTC (list them with `timedatectl list-timezones`)',
          },
        },
        {
          key: 'locale',
          description: 'System locale (LANG).',
          default: 'C.UTF-8',
          example: 'en_GB.UTF-8',
          spec: {
            type: 'string',
            pattern: /^(C|[a-z]{2,3}(_[A-Z]{2})?)\.(UTF-8|utf8)(@[a-z]+)?$/,
            label: 'locale',
            format: 'language_COUNTRY.UTF-8, e.g. en_GB.UTF-8, or C.UTF-8',
          },
        },
        {
          key: 'keyboard',
          description: 'Console keyboard layout (XKB layout name).',
          default: 'us',
          example: 'gb',
          spec: { type: 'string', pattern: /^[a-z][a-z0-9]{1,9}$/, label: 'keyboard layout', format: 'an XKB layout name such as gb, us or de' },
        },
      ],
    },
  },
  {
    key: 'wifi',
    description: 'Optional Wi-Fi network for every node (the cluster itself runs on the wired network).',
    spec: {
      type: 'object',
      fields: [
        {
          key: 'country',
          description: 'Regulatory domain; without it the Wi-Fi radio stays blocked.',
          required: true,
          example: 'GB',
          spec: { type: 'string', pattern: /^[A-Z]{2}$/, label: 'Wi-Fi country', format: 'a two-letter ISO 3166-1 code in capitals, e.g. GB, US, DE' },
        },
        {
          key: 'ssid',
          description: 'Network name.',
          required: true,
          spec: { type: 'string', check: checkSsid },
        },
        {
          key: 'passphrase',
          description:
            'WPA2 passphrase (8-63 characters), or the 64-hex-digit PSK that `wpa_passphrase <ssid>` prints, which keeps the passphrase itself out of cluster.yaml.',
          required: true,
          spec: {
            type: 'string',
            pattern: /^([\x20-\x7e]{8,63}|[0-9a-fA-F]{64})$/,
            secret: true,
            label: 'WPA2 passphrase',
            format: '8-63 printable ASCII characters, or 64 hexadecimal digits',
          },
        },
      ],
    },
  },
  {
    key: 'nodes',
    description: 'Every Raspberry Pi of the cluster, one image each. Order matters: it is the order of templates\' node lists.',
    required: true,
    spec: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        fields: [
          {
            key: 'name',
            description: 'Host name, unique in the cluster.',
            required: true,
            example: 'web1',
            spec: { type: 'string', pattern: LABEL_PATTERN, label: 'host name', format: LABEL_FORMAT },
          },
          {
            key: 'role',
            description: 'A role file in roles/ (shipped: lb, db, allinone; primary and replica are the old names of db).',
            required: true,
            example: 'db',
            spec: { type: 'string', minLength: 1 },
          },
          {
            key: 'ip',
            description: 'Static address inside network.cidr; not the network, broadcast or gateway address.',
            required: true,
            example: '10.0.0.11',
            spec: IPV4,
          },
          {
            key: 'mac',
            description: 'Ethernet MAC address, for DHCP reservations and for telling cards apart (optional).',
            example: '"dc:a6:32:00:00:13"',
            spec: { type: 'string', pattern: MAC_PATTERN, check: checkMac, label: 'MAC address', format: 'six pairs of hex digits separated by colons, e.g. dc:a6:32:01:02:03', lowercase: true },
          },
        ],
      },
    },
  },
  {
    key: 'roles',
    description: 'Settings of the services the roles run. Every key has a default; leave the section out to take them all.',
    default: {},
    spec: {
      type: 'object',
      rules: 'All ports in this section must differ from each other.',
      fields: [
        {
          key: 'postgresql',
          description: 'PostgreSQL on the database nodes (run by Patroni: one primary, the others streaming replicas).',
          default: {},
          spec: {
            type: 'object',
            fields: [
              {
                key: 'version',
                description: 'Major version; by default the one Debian ships with the base image (15 for bookworm, 17 for trixie).',
                defaultText: 'the base image generation\'s version',
                spec: { type: 'integer', minimum: 10, maximum: 99 },
              },
              { key: 'port', description: 'Port PostgreSQL listens on.', default: 5432, spec: PORT },
              {
                key: 'database',
                description: 'Database created for the web application.',
                default: 'pibake',
                spec: { type: 'string', pattern: /^[a-z_][a-z0-9_]{0,62}$/, label: 'database name', format: 'lowercase letters, digits and _, starting with a letter or _' },
              },
              {
                key: 'max_slot_wal_keep_size',
                description: 'How much WAL a replication slot may hold back, so a dead replica cannot fill the primary\'s card.',
                default: '1GB',
                spec: { type: 'string', pattern: /^[1-9][0-9]*(MB|GB|TB)$/, label: 'size', format: 'a number with MB, GB or TB, e.g. 1GB' },
              },
            ],
          },
        },
        {
          key: 'web',
          description: 'The web tier on every node tagged web.',
          default: {},
          spec: {
            type: 'object',
            fields: [
              { key: 'port', description: 'Port nginx listens on.', default: 80, spec: PORT },
              { key: 'app_port', description: 'Port of the application behind nginx (localhost only).', default: 8000, spec: PORT },
            ],
          },
        },
        {
          key: 'lb',
          description: 'HAProxy and keepalived on the load balancers.',
          default: {},
          spec: {
            type: 'object',
            fields: [
              { key: 'stats_port', description: 'Port of the HAProxy statistics page.', default: 8404, spec: PORT },
              {
                key: 'stats_user',
                description: 'User name for the statistics page; its password is a generated cluster secret.',
                default: 'admin',
                spec: { type: 'string', pattern: /^[A-Za-z0-9_.-]{1,32}$/, label: 'user name', format: 'letters, digits, _ . and -' },
              },
              { key: 'pg_write_port', description: 'Port that forwards to the PostgreSQL primary.', default: 5000, spec: PORT },
              { key: 'pg_read_port', description: 'Port that balances over the PostgreSQL replicas.', default: 5001, spec: PORT },
              ...LB_HA_FIELDS,
            ],
          },
        },
        PATRONI_FIELD,
        ETCD_FIELD,
      ],
    },
  },
  {
    key: 'packages',
    description:
      'How `pibake build` fetches the role packages it carries on each card (the default; `--packages online` leaves them to the card\'s first boot instead). ' +
      'Packages are resolved against the base image\'s own apt sources (Raspberry Pi OS lists the Debian archive and Raspberry Pi\'s), and a source that does not answer is reported and skipped.',
    default: {},
    spec: {
      type: 'object',
      fields: [
        {
          key: 'mirrors',
          description: 'Repositories the build uses instead of ones the image lists (same suites, same signing keys): `from` is an address as the image\'s sources write it, `to` your mirror of it.',
          default: [],
          example: '[{ from: http://deb.debian.org/debian, to: http://mirror.lan/debian }]',
          spec: {
            type: 'array',
            items: {
              type: 'object',
              fields: [
                { key: 'from', description: 'A repository address the image\'s apt sources name.', required: true, spec: { type: 'string', pattern: /^(https?|file):\/\/\S+$/, label: 'repository address', format: 'http://host/path, https://host/path or file:///path', check: checkRepositoryUrl } },
                { key: 'to', description: 'The mirror the build fetches from instead.', required: true, spec: { type: 'string', pattern: /^(https?|file):\/\/\S+$/, label: 'repository address', format: 'http://host/path, https://host/path or file:///path', check: checkRepositoryUrl } },
              ],
            },
          },
        },
        {
          key: 'proxy',
          description: 'HTTP proxy for the build\'s package downloads (e.g. apt-cacher-ng); the cards never use it.',
          example: 'http://apt-cache.lan:3142',
          spec: { type: 'string', pattern: /^https?:\/\/\S+$/, label: 'proxy address', format: 'http://host:port' },
        },
        {
          key: 'max_image_size',
          description: 'Largest a card image may grow to when the carried packages need room (e.g. the size of your smallest card); by default only the output disk limits it.',
          example: '8GB',
          spec: { type: 'string', pattern: /^[1-9][0-9]*(MB|GB)$/, label: 'size', format: 'a number with MB or GB (decimal, as cards are sold), e.g. 8GB' },
        },
      ],
    },
  },
];

export const INVENTORY_SPEC: ObjectSpec = { type: 'object', fields: INVENTORY_FIELDS };
