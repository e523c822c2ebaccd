/**
 * The JSON Schema (draft 2020-12) of cluster.yaml, generated from the declaration in schema.ts so
 * editors (yaml-language-server) complete and check the file as pibake does. The cross-field rules
 * of checks.ts are pibake's alone; the schema covers shape, types, patterns and defaults.
 */
import type { Field, ObjectSpec, Spec } from './spec.ts';
import { INVENTORY_SPEC } from './schema.ts';

type Json = Record<string, unknown>;

export function inventoryJsonSchema(): Json {
  return schemaDocument(
    'pibake cluster inventory (cluster.yaml)',
    'One file describing a Raspberry Pi cluster; pibake bakes one SD-card image per node from it. Reference: docs/inventory.md.',
    INVENTORY_SPEC,
  );
}

/** The schema file's exact text, as committed. */
export function inventoryJsonSchemaText(): string {
  return schemaText(inventoryJsonSchema());
}

/** A whole schema file (draft 2020-12) for one declared YAML file. */
export function schemaDocument(title: string, description: string, spec: ObjectSpec): Json {
  return { $schema: 'https://json-schema.org/draft/2020-12/schema', title, description, ...objectSchema(spec) };
}

/** A schema file's exact text: stable key order, trailing newline. */
export function schemaText(schema: Json): string {
  return `${JSON.stringify(schema, null, 2)}\n`;
}

function objectSchema(spec: ObjectSpec): Json {
  const properties: Json = {};
  for (const field of spec.fields) properties[field.key] = fieldSchema(field);
  const required = spec.fields.filter((field) => field.required).map((field) => field.key);
  return {
    type: 'object',
    properties,
    ...(required.length ? { required } : {}),
    additionalProperties: false,
    ...(spec.jsonSchema ?? {}),
  };
}

function fieldSchema(field: Field): Json {
  const description = [field.description, field.defaultText ? `Default: ${field.defaultText}.` : ''].filter(Boolean).join(' ');
  const schema: Json = { description, ...specSchema(field.spec) };
  if (field.default !== undefined && !(field.spec.type === 'object')) schema.default = field.default;
  if (field.example && field.spec.type === 'string' && !field.example.includes('…')) schema.examples = [field.example.replace(/^"|"$/g, '')];
  return schema;
}

function specSchema(spec: Spec): Json {
  switch (spec.type) {
    case 'object':
      return objectSchema(spec);
    case 'array':
      return {
        type: 'array', items: specSchema(spec.items),
        ...(spec.minItems !== undefined ? { minItems: spec.minItems } : {}),
        ...(spec.unique ? { uniqueItems: true } : {}),
      };
    case 'map': {
      const { type: _text, ...keys } = specSchema(spec.keys);
      return { type: 'object', propertyNames: keys, additionalProperties: specSchema(spec.values) };
    }
    case 'boolean':
      return { type: 'boolean' };
    case 'integer':
      return {
        type: 'integer',
        ...(spec.minimum !== undefined ? { minimum: spec.minimum } : {}),
        ...(spec.maximum !== undefined ? { maximum: spec.maximum } : {}),
      };
    case 'string':
      return {
        type: 'string',
        ...(spec.pattern ? { pattern: spec.pattern.source } : {}),
        ...(spec.enum ? { enum: [...spec.enum] } : {}),
        ...(spec.minLength !== undefined ? { minLength: spec.minLength } : {}),
        ...(spec.maxLength !== undefined ? { maxLength: spec.maxLength } : {}),
      };
  }
}
