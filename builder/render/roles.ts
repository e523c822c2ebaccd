/**
 * Loads roles/<role>.yaml into a validated RoleCatalog. Each file is checked against its
 * declaration (role-schema.ts, which also generates schema/role.schema.json and docs/roles.md);
 * the rules across files follow here. Every problem in every file is collected and reported at
 * once with file:line:column.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { READ_LIMITS, readInputFile } from '../common/read-input.ts';
import { PibakeError, type Location, type Problem } from '../common/errors.ts';
import { globToRegExp, isGlob } from './glob.ts';
import { parseYamlTree } from '../common/yaml-tree.ts';
import { validateShape } from '../inventory/shape.ts';
import { ROLE_NAME_PATTERN, ROLE_SPEC } from './role-schema.ts';

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
    if (!ROLE_NAME_PATTERN.test(roleName)) {
      problems.push({ message: `role file name "${name}" is not a valid role name`, hint: 'use lowercase letters, digits and dashes', location: { file } });
      continue;
    }
    if (catalog.has(roleName)) {
      problems.push({ message: `role "${roleName}" is defined twice (.yaml and .yml)`, hint: "keep one of the two files", location: { file } });
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
  const shape = validateShape(root, ROLE_SPEC, file, {
    empty: { message: 'the role file is empty', hint: 'declare at least its tags and overlays; see docs/roles.md' },
  });
  // In the order of the file, as the user reads it (the validator goes in declaration order).
  const at = (p: Problem) => [p.location?.line ?? 0, p.location?.column ?? 0] as const;
  problems.push(...shape.problems.sort((a, b) => at(a)[0] - at(b)[0] || at(a)[1] - at(b)[1]));
  if (!shape.value) return undefined;
  const value = shape.value as unknown as RoleFile;
  const files = Object.entries(value.files ?? {}).map(([pattern, rule]): FileRule => ({
    pattern, matcher: globToRegExp(pattern), exact: !isGlob(pattern),
    ...(rule.mode !== undefined ? { mode: parseInt(rule.mode, 8) } : {}),
    ...(rule.owner !== undefined ? { owner: rule.owner } : {}),
    ...(rule.group !== undefined ? { group: rule.group } : {}),
    location: shape.keyLocations.get(`files.${pattern}`) ?? { file },
  }));
  // A key that failed validation is absent, and a list item that failed is undefined (so indexes
  // match the file): leave them out, the problems are recorded.
  const list = (items: (string | undefined)[] = []): string[] => items.filter((item): item is string => item !== undefined);
  const role: RoleDefinition = {
    name, file, description: value.description ?? '', tags: list(value.tags), overlays: list(value.overlays), packages: list(value.packages),
    services: list(value.services), firstboot: list(value.firstboot), secrets: list(value.secrets), files,
    ...(value.replacedBy !== undefined ? { replacedBy: value.replacedBy } : {}),
  };
  overlayLocations.set(role, new Map((value.overlays ?? []).flatMap((overlay, i) => {
    const location = shape.locations.get(`overlays.${i}`);
    return overlay !== undefined && location ? [[overlay, location] as const] : [];
  })));
  if (role.replacedBy && root?.kind === 'map') {
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

/** A role file as validateShape returns it (camelCase keys, defaults applied, invalid keys left out). */
interface RoleFile {
  description?: string;
  tags?: (string | undefined)[];
  overlays?: (string | undefined)[];
  packages?: (string | undefined)[];
  services?: (string | undefined)[];
  firstboot?: (string | undefined)[];
  secrets?: (string | undefined)[];
  files?: Record<string, { mode?: string; owner?: string; group?: string }>;
  replacedBy?: string;
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

/** The rule deciding mode/owner for a path: an exact path wins over globs; among globs the last listed wins. */
export function ruleFor(role: RoleDefinition, rootPath: string): FileRule | undefined {
  const exact = role.files.find((r) => r.exact && r.pattern === rootPath);
  if (exact) return exact;
  let found: FileRule | undefined;
  for (const rule of role.files) if (!rule.exact && rule.matcher.test(rootPath)) found = rule;
  return found;
}
