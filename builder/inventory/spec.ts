/**
 * The vocabulary pibake's YAML files are declared in: cluster.yaml (schema.ts) and the role files
 * (render/role-schema.ts). One declaration per file drives the validator (shape.ts), the JSON
 * Schema for editors (json-schema.ts) and the reference doc (reference-doc.ts), so the three can
 * never disagree.
 */

/** A problem with one value: what is wrong and how to fix it. */
export interface Issue {
  message: string;
  hint?: string;
}

export interface StringSpec {
  type: 'string';
  /** Checked by pibake and copied into the JSON Schema (so: no flags, ECMAScript syntax). */
  pattern?: RegExp;
  enum?: readonly string[];
  /** What the value is, for messages: `"x" is not a valid <label>`. */
  label?: string;
  /** How to write a valid value; the hint when the pattern does not match. */
  format?: string;
  /**
   * Further checks, run before the pattern so they can give a more precise message (they must
   * tolerate values the pattern would reject by returning undefined for them). `where` names the
   * value as messages do: its key path in the file, or the command-line option that gave it.
   */
  check?: (value: string, where: string) => Issue | undefined;
  /** Lowercase the value after validation (hex digests, MAC addresses). */
  lowercase?: boolean;
  minLength?: number;
  maxLength?: number;
  /** A secret (a Wi-Fi passphrase): messages about it never quote the value. */
  secret?: boolean;
  /**
   * Only text is accepted, not a number written without quotes: YAML reads an unquoted `0644` as
   * the number 644, so a file mode must be quoted to mean what it says.
   */
  quoted?: boolean;
}

export interface IntegerSpec {
  type: 'integer';
  minimum?: number;
  maximum?: number;
}

export interface BooleanSpec {
  type: 'boolean';
}

export interface ObjectSpec {
  type: 'object';
  fields: readonly Field[];
  /** Extra JSON Schema keywords for rules the cross-checks enforce (e.g. base: url xor path). */
  jsonSchema?: Record<string, unknown>;
  /** Prose for the reference doc about those rules. */
  rules?: string;
}

export interface ArraySpec {
  type: 'array';
  items: Spec;
  minItems?: number;
  /** No item may be listed twice. */
  unique?: boolean;
}

/** A mapping whose keys are data (paths, names), each checked by `keys`, each value by `values`. */
export interface MapSpec {
  type: 'map';
  keys: StringSpec;
  values: Spec;
}

export type Spec = StringSpec | IntegerSpec | BooleanSpec | ObjectSpec | ArraySpec | MapSpec;

export interface Field {
  /** Key in the YAML file (snake_case). */
  key: string;
  /** Property in the loaded value (camelCase); derived from key when omitted. */
  prop?: string;
  description: string;
  spec: Spec;
  required?: boolean;
  /**
   * Value used when the key is absent. For an object, `{}` means "all of its fields take their
   * defaults", so the whole section may be left out.
   */
  default?: unknown;
  /** Describes a default that depends on other values (the doc and JSON Schema show it). */
  defaultText?: string;
  /** A short example for the reference doc. */
  example?: string;
}

export function propOf(field: Field): string {
  return field.prop ?? field.key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}
