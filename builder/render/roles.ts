/**
 * Loads roles/<role>.yaml (see ROLES-CONTRACT.md) into a validated RoleCatalog. Every problem in
 * every file is collected and reported at once with file:line:column.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { READ_LIMITS, readInputFile } from '../common/read-input.ts';
import { PibakeError, type Location, type Problem } from '../common/errors.ts';
import { globToRegExp, isGlob } from './glob.ts';
import { parseYamlTree, type YamlNode } from '../common/yaml-tree.ts';

export interface FileRule {
  /** Absolute root-filesystem path or shell-style glob. */
  pattern: string;
  matcher: RegExp;
  exact: boolean;
  mode?: number;
  owner?: string;
  group?: string;
  location: Location;
}

export interface RoleDefinition {
  name: string;
  /** Absolute path of the role file. */
  file: string;
  description: string;
  tags: string[];
  overlays: string[];
  packages: string[];
  services: string[];
  firstboot: string[];
  secrets: string[];
  files: FileRule[];
  /**
   * An old role name kept so existing inventories still build: the role file says only
   * `replaced_by: <role>`, and the definition is that role's.
   */
  replacedBy?: string;
}

export type RoleCatalog = Map<string, RoleDefinition>;

const ROLE_NAME = /^[a-z][a-z0-9-]*$/;
const TAG = /^[a-z][a-z0-9-]*$/;
const OVERLAY_NAME = /^[a-z0-9][a-z0-9._-]*$/;
const PACKAGE = /^[a-z0-9][a-z0-9+.-]+$/;
const UNIT = /^[A-Za-z0-9][A-Za-z0-9@_.:-]*\.(service|timer|socket|target|path|mount)$/;
const SECRET = /^[a-z][a-z0-9_]*$/;
const ACCOUNT = /^[a-z_][a-z0-9_-]*$/;
const MODE = /^0[0-7]{3}$/;
const KEYS = ['description', 'tags', 'overlays', 'packages', 'services', 'firstboot', 'secrets', 'files', 'replaced_by'];

/**
 * Read every roles/*.yaml. Overlays named by a role must exist as folders of `overlaysDir`
 * (default: `overlays/` beside `rolesDir`).
 */
export async function loadRoles(rolesDir: string, overlaysDir = path.join(rolesDir, '..', 'overlays')): Promise<RoleCatalog> {
  let names: string[];
  try {
    names = (await readdir(rolesDir)).filter((n) => n.endsWith('.yaml') || n.endsWith('.yml')).sort();
  } catch (error) {
    throw new PibakeError(`cannot read the roles folder ${rolesDir}`, { hint: 'pass the folder holding <role>.yaml files', cause: error });
  }
  if (names.length === 0) throw new PibakeError(`no role files (*.yaml) in ${rolesDir}`);
  const problems: Problem[] = [];
  const catalog: RoleCatalog = new Map();
  for (const name of names) {
    const file = path.resolve(rolesDir, name);
    const roleName = name.replace(/\.ya?ml$/, '');
    if (!ROLE_NAME.test(roleName)) {
      problems.push({ message: `role file name "${name}" is not a valid role name`, hint: 'use lowercase letters, digits and dashes', location: { file } });
      continue;
    }
    if (catalog.has(roleName)) {
      problems.push({ message: `role "${roleName}" is defined twice (.yaml and .yml)`, location: { file } });
      continue;
    }
    try {
      const role = parseRole(roleName, file, (await readInputFile(file, 'role file', READ_LIMITS.role)).toString('utf8'), problems);
      if (role) catalog.set(roleName, role);
    } catch (error) {
      if (error instanceof PibakeError) problems.push(...error.problems);
      else throw error;
    }
  }
  resolveReplacedRoles(catalog, problems);
  for (const role of catalog.values()) {
    for (const overlay of role.overlays) {
      const dir = path.join(overlaysDir, overlay);
      const info = await stat(dir).catch(() => undefined);
      if (!info?.isDirectory()) {
        problems.push({
          message: `overlay "${overlay}" of role "${role.name}" does not exist`,
          hint: `create the folder ${dir} or remove it from overlays`,
          location: overlayLocation(role, overlay),
        });
      }
    }
  }
  if (problems.length > 0) throw PibakeError.fromProblems(`invalid role files in ${rolesDir}`, problems);
  return catalog;
}

const overlayLocations = new WeakMap<RoleDefinition, Map<string, Location>>();
function overlayLocation(role: RoleDefinition, overlay: string): Location {
  return overlayLocations.get(role)?.get(overlay) ?? { file: role.file };
}

/** Parse and validate one role file's text; problems are appended, undefined if unusable. */
export function parseRole(name: string, file: string, text: string, problems: Problem[]): RoleDefinition | undefined {
  const { root, problems: yamlProblems } = parseYaml(text, file);
  problems.push(...yamlProblems);
  if (!root || root.kind !== 'map') {
    problems.push({ message: 'a role file must be a mapping (description, tags, overlays, ...)', location: root ? textAt(root) : { file } });
    return undefined;
  }
  const role: RoleDefinition = {
    name, file, description: '', tags: [], overlays: [], packages: [], services: [], firstboot: [], secrets: [], files: [],
  };
  const locations = new Map<string, Location>();
  for (const { key, keyLocation, value } of root.entries) {
    switch (key) {
      case 'description':
        if (value.kind === 'scalar' && !isNull(value)) role.description = value.text;
        else if (!isNull(value)) problems.push({ message: 'description must be text', location: value.location });
        break;
      case 'tags':
        role.tags = stringList(value, key, TAG, 'lowercase letters, digits and dashes', problems);
        break;
      case 'overlays':
        role.overlays = stringList(value, key, OVERLAY_NAME, 'a folder name of overlays/', problems, locations);
        break;
      case 'packages':
        role.packages = stringList(value, key, PACKAGE, 'a Debian package name', problems);
        break;
      case 'services':
        role.services = stringList(value, key, UNIT, 'a systemd unit name such as nginx.service', problems);
        break;
      case 'firstboot':
        role.firstboot = stringList(value, key, UNIT, 'a systemd unit name such as pibake-setup.service', problems);
        break;
      case 'secrets':
        role.secrets = stringList(value, key, SECRET, 'lowercase letters, digits and underscores, starting with a letter', problems);
        break;
      case 'files':
        role.files = fileRules(value, problems);
        break;
      case 'replaced_by':
        if (value.kind === 'scalar' && ROLE_NAME.test(value.text)) role.replacedBy = value.text;
        else problems.push({ message: 'replaced_by must name a role', hint: 'e.g. replaced_by: db', location: textAt(value) });
        break;
      default:
        problems.push({
          message: `unknown key "${key}" in role file`,
          hint: `known keys: ${KEYS.join(', ')}${suggest(key, KEYS)}`,
          location: keyLocation,
        });
    }
  }
  overlayLocations.set(role, locations);
  if (role.replacedBy) {
    const extra = root.entries.filter((e) => e.key !== 'description' && e.key !== 'replaced_by');
    for (const entry of extra) {
      problems.push({
        message: `role "${name}" is replaced by "${role.replacedBy}", so it may not set ${entry.key}`,
        hint: 'a replaced role takes everything from the role that replaced it; keep only description and replaced_by',
        location: entry.keyLocation,
      });
    }
  }
  return role;
}

/** Give every old role name the definition of the role that replaced it (one step, no chains). */
function resolveReplacedRoles(catalog: RoleCatalog, problems: Problem[]): void {
  for (const role of catalog.values()) {
    if (!role.replacedBy) continue;
    const target = catalog.get(role.replacedBy);
    if (!target || target.replacedBy) {
      problems.push({
        message: `role "${role.name}" is replaced by "${role.replacedBy}", which ${target ? 'is itself replaced' : 'has no file in the roles folder'}`,
        hint: 'name a current role file',
        location: { file: role.file },
      });
      continue;
    }
    const { name, file, replacedBy } = role;
    Object.assign(role, { ...target, name, file, replacedBy, description: role.description || target.description });
    overlayLocations.set(role, overlayLocations.get(target) ?? new Map());
  }
}

function stringList(
  node: YamlNode, key: string, pattern: RegExp, what: string, problems: Problem[], locations?: Map<string, Location>,
): string[] {
  if (isNull(node)) return [];
  if (node.kind !== 'seq') {
    problems.push({ message: `${key} must be a list`, hint: `e.g. ${key}: [a, b]`, location: textAt(node) });
    return [];
  }
  const out: string[] = [];
  for (const item of node.items) {
    if (item.kind !== 'scalar' || !pattern.test(item.text)) {
      const shown = item.kind === 'scalar' ? `"${item.text}"` : `a ${item.kind === 'seq' ? 'sequence' : 'mapping'}`;
      problems.push({ message: `${key}: ${shown} is not valid`, hint: `expected ${what}`, location: textAt(item) });
      continue;
    }
    if (out.includes(item.text)) {
      problems.push({ message: `${key}: "${item.text}" is listed twice`, location: textAt(item) });
      continue;
    }
    out.push(item.text);
    locations?.set(item.text, textAt(item));
  }
  return out;
}

function fileRules(node: YamlNode, problems: Problem[]): FileRule[] {
  if (isNull(node)) return [];
  if (node.kind !== 'map') {
    problems.push({ message: 'files must be a mapping of path -> { mode, owner, group }', location: textAt(node) });
    return [];
  }
  const rules: FileRule[] = [];
  for (const { key, keyLocation, value } of node.entries) {
    const normal = path.posix.normalize(key);
    if (!key.startsWith('/') || key.split('/').includes('..') || normal !== key || /\s/.test(key)) {
      problems.push({
        message: `files: "${key}" is not an absolute, normalised root-filesystem path`,
        hint: 'write it like /etc/haproxy/haproxy.cfg (no "..", no trailing slash, no spaces)',
        location: keyLocation,
      });
      continue;
    }
    const rule: FileRule = { pattern: key, matcher: globToRegExp(key), exact: !isGlob(key), location: keyLocation };
    if (value.kind !== 'map') {
      problems.push({ message: `files: "${key}" must map to { mode, owner, group }`, location: textAt(value) });
      continue;
    }
    for (const entry of value.entries) {
      const v = entry.value;
      if (v.kind !== 'scalar') {
        problems.push({ message: `files: ${entry.key} of "${key}" must be a single value`, location: textAt(v) });
        continue;
      }
      if (entry.key === 'mode') {
        // An unquoted 0644 resolves to the number 644, so only a string can be a valid mode.
        if (typeof v.value !== 'string' || !MODE.test(v.value)) {
          problems.push({
            message: `files: mode ${v.quoted ? `"${v.text}"` : v.text} of "${key}" is not a quoted four-digit octal mode`,
            hint: 'write it quoted with a leading zero, e.g. mode: "0644"',
            location: textAt(v),
          });
        } else rule.mode = parseInt(v.value, 8);
      } else if (entry.key === 'owner' || entry.key === 'group') {
        if (!ACCOUNT.test(v.text)) {
          problems.push({ message: `files: ${entry.key} "${v.text}" of "${key}" is not a valid user/group name`, location: textAt(v) });
        } else rule[entry.key] = v.text;
      } else {
        problems.push({
          message: `unknown key "${entry.key}" for files: "${key}"`,
          hint: `known keys: mode, owner, group${suggest(entry.key, ['mode', 'owner', 'group'])}`,
          location: entry.keyLocation,
        });
      }
    }
    rules.push(rule);
  }
  return rules;
}

/** The shared YAML reader, with role files' long-standing "invalid YAML: ..." wording for syntax errors. */
function parseYaml(text: string, file: string): ReturnType<typeof parseYamlTree> {
  try {
    return parseYamlTree(text, file);
  } catch (error) {
    if (!(error instanceof PibakeError)) throw error;
    throw new PibakeError(error.message.replace(/^YAML syntax error: /, 'invalid YAML: '), {
      hint: error.hint, location: error.location, cause: error.cause,
    });
  }
}

/** A plain `~`, `null` or empty value, which leaves a key at its default. */
function isNull(node: YamlNode): boolean {
  return node.kind === 'scalar' && node.value === null;
}

/**
 * Role-file messages about a value point at its first character, inside any quotes (the shared
 * reader locates a quoted scalar at its opening quote, one column earlier).
 */
function textAt(node: YamlNode): Location {
  if (node.kind !== 'scalar' || !node.quoted || node.location.column === undefined) return node.location;
  return { ...node.location, column: node.location.column + 1 };
}

function suggest(word: string, known: string[]): string {
  const close = known.find((k) => distance(k, word) <= 2);
  return close ? `; did you mean "${close}"?` : '';
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number;
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length] as number;
}

/** The rule deciding mode/owner for a path: an exact path wins over globs; among globs the last listed wins. */
export function ruleFor(role: RoleDefinition, rootPath: string): FileRule | undefined {
  const exact = role.files.find((r) => r.exact && r.pattern === rootPath);
  if (exact) return exact;
  let found: FileRule | undefined;
  for (const rule of role.files) if (!rule.exact && rule.matcher.test(rootPath)) found = rule;
  return found;
}
