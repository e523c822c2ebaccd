/**
 * roles/<role>.yaml, declared once in the vocabulary cluster.yaml is declared in (inventory/spec.ts).
 * The validator (inventory/shape.ts), the JSON Schema (schema/role.schema.json) and the reference
 * (docs/roles.md) are all generated from this table. Rules that relate a file to other files (the
 * file name, replaced_by, overlay folders) live in roles.ts and are listed in ROLE_RULES.
 */
import path from 'node:path';
import type { Field, Issue, ObjectSpec, StringSpec } from '../inventory/spec.ts';
import { globToRegExp } from './glob.ts';

export const ROLE_NAME_PATTERN = /^[a-z][a-z0-9-]*$/;
const NAME_FORMAT = 'lowercase letters, digits and dashes, starting with a letter';
const UNIT: StringSpec = {
  type: 'string',
  pattern: /^[A-Za-z0-9][A-Za-z0-9@_.:-]*\.(service|timer|socket|target|path|mount)$/,
  label: 'systemd unit name',
  format: 'a unit file name with its suffix, e.g. nginx.service',
};
const ACCOUNT: StringSpec = {
  type: 'string', pattern: /^[a-z_][a-z0-9_-]*$/, label: 'user or group name', format: 'lowercase letters, digits, _ and -, e.g. postgres',
};

/** A path or glob of the root filesystem: absolute, normalised, no spaces. */
function checkRootPath(value: string): Issue | undefined {
  const hint = 'write it like /etc/haproxy/haproxy.cfg or /usr/local/lib/pibake/*.sh (absolute, no "..", no trailing slash, no spaces)';
  if (!value.startsWith('/') || /\s/.test(value) || path.posix.normalize(value) !== value || value.split('/').includes('..')) {
    return { message: `files: "${value}" is not an absolute, normalised root-filesystem path`, hint };
  }
  try {
    globToRegExp(value);
  } catch {
    return { message: `files: "${value}" is not a valid glob`, hint: 'a character class is written like [a-z] or [!0-9]' };
  }
  return undefined;
}

export const ROLE_FIELDS: readonly Field[] = [
  {
    key: 'description',
    description: 'What the role makes of a node, in a sentence or two (shown in docs and reviews).',
    spec: { type: 'string' },
    default: '',
    example: 'Load balancer: HAProxy in front of the web nodes',
  },
  {
    key: 'tags',
    description: 'What the node is to the rest of the cluster. Templates find nodes by tag (`tagged.<tag>`); the inventory needs a node tagged `load-balancer`, one tagged `web` and one tagged `postgresql`.',
    spec: { type: 'array', unique: true, items: { type: 'string', pattern: ROLE_NAME_PATTERN, label: 'tag', format: NAME_FORMAT } },
    default: [],
    example: '[load-balancer]',
  },
  {
    key: 'overlays',
    description: 'Folders of `overlays/` copied onto the root filesystem, in this order (a later folder wins for the same path). `*.hbs` files are templates.',
    spec: {
      type: 'array', unique: true,
      items: { type: 'string', pattern: /^[a-z0-9][a-z0-9._-]*$/, label: 'overlay folder name', format: 'a folder name of overlays/: lowercase letters, digits, ".", "_" and "-"' },
    },
    default: [],
    example: '[common, lb]',
  },
  {
    key: 'packages',
    description: 'Debian packages the role needs. They are fetched at build time and carried on the card (`--packages card`), or installed from the apt sources at first boot (`--packages online`).',
    spec: {
      type: 'array', unique: true,
      items: { type: 'string', pattern: /^[a-z0-9][a-z0-9+.-]+$/, label: 'Debian package name', format: 'a Debian package name such as haproxy' },
    },
    default: [],
    example: '[haproxy, keepalived]',
  },
  {
    key: 'services',
    description: 'Units first boot enables once the packages are installed, and restarts after the `firstboot` units ran.',
    spec: { type: 'array', unique: true, items: UNIT },
    default: [],
    example: '[haproxy.service]',
  },
  {
    key: 'firstboot',
    description: 'Units first boot starts one after the other (synchronously, in this order) between enabling and restarting the `services`. Each must be idempotent and start whatever service it needs itself.',
    spec: { type: 'array', unique: true, items: UNIT },
    default: [],
    example: '[pibake-ownership.service]',
  },
  {
    key: 'secrets',
    description: 'Secrets the role\'s templates read as `secrets.<name>`: generated once per cluster with a CSPRNG, kept in the secrets file beside the inventory, left out of sealed images.',
    spec: {
      type: 'array', unique: true,
      items: { type: 'string', pattern: /^[a-z][a-z0-9_]*$/, label: 'secret name', format: 'lowercase letters, digits and underscores, starting with a letter' },
    },
    default: [],
    example: '[haproxy_stats_password]',
  },
  {
    key: 'files',
    description: 'Mode and owner of files the overlays write, by root-filesystem path or glob (`*` and `?` stay within one folder, `**` crosses folders, `[a-z]` is a class). An exact path wins over globs; among globs the last one listed wins. What no rule names is root:root, files 0644 and folders 0755, whatever their modes in the overlay folder (a script needs a rule such as `/usr/local/lib/pibake/*.sh: { mode: "0755" }`).',
    spec: {
      type: 'map',
      keys: {
        type: 'string', pattern: /^\/[^\s]*$/, label: 'path', format: 'an absolute root-filesystem path or glob', check: checkRootPath,
      },
      values: {
        type: 'object',
        fields: [
          {
            key: 'mode',
            description: 'Permission bits.',
            spec: { type: 'string', quoted: true, pattern: /^0[0-7]{3}$/, label: 'mode', format: 'write it quoted with a leading zero, e.g. mode: "0644"' },
            example: '"0640"',
          },
          { key: 'owner', description: 'Owning user (may be one the role\'s packages create: ownership is applied at first boot).', spec: ACCOUNT, example: 'root' },
          { key: 'group', description: 'Owning group (as owner).', spec: ACCOUNT, example: 'haproxy' },
        ],
      },
    },
    default: {},
    example: '{ /etc/haproxy/haproxy.cfg: { mode: "0640", owner: root, group: haproxy } }',
  },
  {
    key: 'replaced_by',
    description: 'Marks an old role name kept so existing inventories still build: the node gets the named role (with a warning). A replaced role sets only `description` and `replaced_by`.',
    spec: { type: 'string', pattern: ROLE_NAME_PATTERN, label: 'role name', format: 'the name of a current role file, e.g. replaced_by: db' },
    example: 'db',
  },
];

export const ROLE_SPEC: ObjectSpec = { type: 'object', fields: ROLE_FIELDS };

/** Rules roles.ts enforces across files; listed in docs/roles.md so the reference names every rule. */
export const ROLE_RULES = [
  `The file name is the role's name: ${NAME_FORMAT}, ending in \`.yaml\` or \`.yml\` (not both for one role).`,
  'Every folder named in `overlays` exists in the overlays folder (`overlays/` beside the inventory when there is one, else pibake\'s own).',
  'A role with `replaced_by` sets nothing but `description`, and names a role that has a file and is not replaced itself.',
];
