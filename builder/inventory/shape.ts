/**
 * Checks a YAML tree against a declared schema (the inventory's schema.ts, the role files'
 * render/role-schema.ts) and turns it into plain data with camelCase keys and defaults applied. Every problem is collected with its location; nothing stops
 * at the first one.
 */
import type { Location, Problem } from '../common/errors.ts';
import type { Field, Issue, ObjectSpec, Spec, StringSpec } from './spec.ts';
import { propOf } from './spec.ts';
import type { YamlMap, YamlNode } from '../common/yaml-tree.ts';

export interface ShapeResult {
  /** undefined when the top level is not a mapping at all. */
  value: Record<string, unknown> | undefined;
  problems: Problem[];
  /** Value locations by YAML key path ("nodes.2.ip") and by Inventory path ("roles.lb.statsPort"). */
  locations: Map<string, Location>;
  /** Where the key of each path was written (for "this key …" problems). */
  keyLocations: Map<string, Location>;
}

/** Marks a value that failed validation (the problem is already recorded). */
const INVALID = Symbol('invalid');

interface Path {
  yaml: string[];
  prop: string[];
}

/** What to say about a file with no content at all (default: an empty inventory). */
export interface ShapeOptions {
  empty?: { message: string; hint?: string };
}

export function validateShape(root: YamlNode | undefined, spec: ObjectSpec, file: string, options: ShapeOptions = {}): ShapeResult {
  const problems: Problem[] = [];
  const locations = new Map<string, Location>();
  const keyLocations = new Map<string, Location>();
  const top: Location = { file, line: 1, column: 1 };

  const note = (path: Path, location: Location): void => {
    locations.set(path.yaml.join('.'), location);
    locations.set(path.prop.join('.'), location);
  };

  const convert = (node: YamlNode, spec: Spec, path: Path): unknown => {
    note(path, node.location);
    const where = display(path.yaml);
    switch (spec.type) {
      case 'object': {
        if (node.kind !== 'map') return wrongType(node, 'a mapping (key: value lines)', where);
        return convertObject(node, spec, path);
      }
      case 'array': {
        if (node.kind !== 'seq') return wrongType(node, 'a list', where);
        if (spec.minItems !== undefined && node.items.length < spec.minItems) {
          problems.push({ message: `${where} needs at least ${spec.minItems} entr${spec.minItems === 1 ? 'y' : 'ies'}`, location: node.location });
          return INVALID;
        }
        const seen = new Set<string>();
        // An invalid item becomes undefined, so indexes still match the file for later checks.
        return node.items.map((item, i) => {
          const converted = convert(item, spec.items, { yaml: [...path.yaml, String(i)], prop: [...path.prop, String(i)] });
          if (converted === INVALID) return undefined;
          if (spec.unique && item.kind === 'scalar') {
            if (seen.has(item.text)) {
              problems.push({ message: `${where}: "${item.text}" is listed twice`, hint: 'list each once', location: item.location });
              return undefined;
            }
            seen.add(item.text);
          }
          return converted;
        });
      }
      case 'map': {
        if (node.kind !== 'map') return wrongType(node, 'a mapping (key: value lines)', where);
        const result: Record<string, unknown> = {};
        for (const entry of node.entries) {
          const child = { yaml: [...path.yaml, entry.key], prop: [...path.prop, entry.key] };
          keyLocations.set(child.yaml.join('.'), entry.keyLocation);
          const key = checkString(entry.key, spec.keys, where, entry.keyLocation);
          if (key === INVALID) continue;
          const converted = convert(entry.value, spec.values, child);
          if (converted !== INVALID) result[entry.key] = converted;
        }
        return result;
      }
      case 'boolean':
        if (node.kind !== 'scalar' || typeof node.value !== 'boolean') return wrongType(node, 'true or false', where);
        return node.value;
      case 'integer': {
        if (node.kind !== 'scalar' || typeof node.value !== 'number' || !Number.isInteger(node.value)) {
          return wrongType(node, 'a whole number', where);
        }
        const { minimum = -Infinity, maximum = Infinity } = spec;
        if (node.value < minimum || node.value > maximum) {
          problems.push({ message: `${where} must be between ${minimum} and ${maximum}, not ${node.value}`, location: node.location });
          return INVALID;
        }
        return node.value;
      }
      case 'string':
        return convertString(node, spec, where);
    }
  };

  const convertString = (node: YamlNode, spec: StringSpec, where: string): unknown => {
    // Numbers are fine as text (`ssid: 1234`); booleans and null are almost always a mistake.
    if (node.kind !== 'scalar' || !(typeof node.value === 'string' || typeof node.value === 'number')) {
      return wrongType(node, 'text', where);
    }
    if (spec.quoted && typeof node.value === 'number') {
      problems.push({ message: `${where}: ${node.text} must be quoted text, not a number`, hint: spec.format, location: node.location });
      return INVALID;
    }
    return checkString(node.text, spec, where, node.location);
  };

  /** A text value (or a data key of a map) against its spec. */
  const checkString = (text: string, spec: StringSpec, where: string, location: Location): string | typeof INVALID => {
    const checked = checkText(text, spec, where);
    if (typeof checked === 'string') return checked;
    problems.push({ ...checked, location });
    return INVALID;
  };

  const convertObject = (node: YamlMap | undefined, spec: ObjectSpec, path: Path): unknown => {
    const result: Record<string, unknown> = {};
    const known = new Map(spec.fields.map((field) => [field.key, field]));
    const present = new Map<string, YamlNode>();
    for (const entry of node?.entries ?? []) {
      const field = known.get(entry.key);
      if (!field) {
        problems.push({
          message: `unknown key ${JSON.stringify(entry.key)} ${path.yaml.length ? `in ${display(path.yaml)}` : 'at the top level'}`,
          hint: suggest(entry.key, [...known.keys()]),
          location: entry.keyLocation,
        });
        continue;
      }
      keyLocations.set([...path.yaml, entry.key].join('.'), entry.keyLocation);
      // `key:` with nothing after it counts as absent, so defaults still apply.
      if (entry.value.kind === 'scalar' && entry.value.value === null) {
        note(childPath(path, field), entry.value.location);
        if (field.required) {
          problems.push({ message: `${display([...path.yaml, field.key])} has no value`, hint: `give it a value — ${field.description.replace(/\.$/, '')}`, location: entry.keyLocation });
        }
        continue;
      }
      present.set(entry.key, entry.value);
    }
    for (const field of spec.fields) {
      const child = childPath(path, field);
      const value = present.get(field.key);
      if (value) {
        const converted = convert(value, field.spec, child);
        if (converted !== INVALID) result[propOf(field)] = converted;
      } else if (field.required) {
        if (!node?.entries.some((entry) => entry.key === field.key)) {
          problems.push({
            message: `missing required key "${display(child.yaml)}"`,
            hint: `add ${field.key}:${field.example ? ` (e.g. ${field.key}: ${field.example})` : ''} — ${field.description.replace(/\.$/, '')}`,
            location: parentLocation(path, node),
          });
        }
      } else if (field.default !== undefined) {
        result[propOf(field)] = field.spec.type === 'object' ? convertObject(undefined, field.spec, child) : structuredClone(field.default);
      }
    }
    return result;
  };

  const parentLocation = (path: Path, node: YamlMap | undefined): Location =>
    keyLocations.get(path.yaml.join('.')) ?? node?.location ?? top;

  const wrongType = (node: YamlNode, expected: keyof typeof HOW_TO_WRITE, where: string): typeof INVALID => {
    problems.push({ message: `${where || 'the file'} must be ${expected}, not ${describe(node)}`, hint: HOW_TO_WRITE[expected], location: node.location });
    return INVALID;
  };

  if (!root) {
    const empty = options.empty ?? { message: 'the inventory is empty', hint: 'start from the cluster.yaml shipped with pibake' };
    problems.push({ ...empty, location: top });
    return { value: undefined, problems, locations, keyLocations };
  }
  if (root.kind !== 'map') {
    wrongType(root, 'a mapping (key: value lines)', '');
    return { value: undefined, problems, locations, keyLocations };
  }
  // Invalid parts are left out, the rest is kept: cross-checks still run on the valid parts.
  const value = convertObject(root, spec, { yaml: [], prop: [] }) as Record<string, unknown>;
  return { value, problems, locations, keyLocations };
}

/**
 * One text value against its spec: the value as loaded (lowercased where the spec says so), or
 * what is wrong with it. `where` names it in the message: a key path of a file, or a command-line
 * option whose value follows the same rules.
 */
export function checkText(text: string, spec: StringSpec, where: string): string | Issue {
  // Before anything that quotes the value: a control character would garble the message too.
  const control = findControlCharacter(text);
  if (control) {
    return {
      message: `${where} contains ${control.name} at character ${control.index + 1}`,
      hint: 'write the value without control characters: pibake refuses them in every value, since in the files it writes they could start a new line, section or command',
    };
  }
  if (spec.minLength !== undefined && text.length < spec.minLength) return { message: `${where} must not be empty` };
  if (spec.maxLength !== undefined && text.length > spec.maxLength) return { message: `${where} is longer than ${spec.maxLength} characters` };
  if (spec.enum && !spec.enum.includes(text)) return { message: `${where} must be one of ${spec.enum.join(', ')}, not "${text}"` };
  const issue = spec.check?.(text, where);
  if (issue) return issue;
  if (spec.pattern && !spec.pattern.test(text)) {
    return { message: spec.secret ? `${where} is not a valid ${spec.label ?? 'value'}` : `${where}: "${text}" is not a valid ${spec.label ?? 'value'}`, hint: spec.format };
  }
  return spec.lowercase ? text.toLowerCase() : text;
}

/** The hint for a value of the wrong kind: how YAML writes the kind expected. */
const HOW_TO_WRITE = {
  'a mapping (key: value lines)': 'write key: value pairs, indented under the key, or { key: value } on one line',
  'a list': 'write [a, b] on one line, or one "- item" line per item, indented under the key',
  'true or false': 'write true or false, without quotes',
  'a whole number': 'write digits only, without quotes',
  text: 'write the value itself; quote it if YAML would read it as something else (true, null, a list)',
} as const;

function childPath(path: Path, field: Field): Path {
  return { yaml: [...path.yaml, field.key], prop: [...path.prop, propOf(field)] };
}

/**
 * Characters no value may hold: C0 controls (newline, tab, escape…), DEL, C1 controls, the Unicode
 * line and paragraph separators (line breaks to YAML and JavaScript) and the bidirectional
 * overrides that make text display as something else than it is.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const CONTROL_NAMES: Record<number, string> = { 0: 'a NUL byte', 9: 'a tab', 10: 'a line feed', 13: 'a carriage return', 27: 'an escape character' };

export function findControlCharacter(text: string): { index: number; name: string } | undefined {
  const match = CONTROL.exec(text);
  if (!match) return undefined;
  const code = match[0].codePointAt(0) as number;
  const name = CONTROL_NAMES[code] ?? `the control character U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  return { index: match.index, name };
}

/** nodes.2.ip -> nodes[2].ip, files./etc/x.mode -> files["/etc/x"].mode: the way people read them. */
export function display(path: readonly string[]): string {
  return path.reduce((text, part) => {
    if (/^\d+$/.test(part)) return `${text}[${part}]`;
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(part)) return `${text}[${JSON.stringify(part)}]`;
    return text ? `${text}.${part}` : part;
  }, '');
}

function describe(node: YamlNode): string {
  if (node.kind === 'map') return 'a mapping';
  if (node.kind === 'seq') return 'a list';
  if (node.value === null) return 'nothing';
  if (typeof node.value === 'boolean') return `${node.text} (true/false)`;
  if (typeof node.value === 'number') return `the number ${node.text}`;
  return `"${node.text}"`;
}

/** "did you mean …?" for a mistyped key, or the list of known keys. */
export function suggest(key: string, known: readonly string[]): string {
  const squash = (s: string): string => s.toLowerCase().replace(/[_-]/g, '');
  const same = known.find((k) => squash(k) === squash(key));
  if (same) return `did you mean "${same}"? (pibake's YAML keys are snake_case)`;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = levenshtein(key.toLowerCase(), candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  if (best !== undefined && bestDistance <= Math.max(2, Math.floor(best.length / 3))) return `did you mean "${best}"?`;
  return `known keys here: ${known.join(', ')}`;
}

function levenshtein(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
