import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { load } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inventoryJsonSchema, inventoryJsonSchemaText } from '../../builder/inventory/json-schema.ts';
import { loadInventory } from '../../builder/inventory/load.ts';
import { inventoryReferenceDoc } from '../../builder/inventory/reference-doc.ts';
import { VALUE_AUDIT } from '../../builder/inventory/value-audit.ts';
import { INVENTORY_FIELDS } from '../../builder/inventory/schema.ts';
import type { Field } from '../../builder/inventory/spec.ts';
import { propOf } from '../../builder/inventory/spec.ts';
import { ROLES, VALID, edit } from './helpers.ts';

const repo = join(dirname(fileURLToPath(import.meta.url)), '../..');
const shippedPath = join(repo, 'cluster.yaml');

let home: string;
let savedHome: string | undefined;
let shipped: string;
beforeAll(async () => {
  shipped = await readFile(shippedPath, 'utf8');
  // A fresh machine: no ~/.ssh at all.
  home = await mkdtemp(join(tmpdir(), 'pibake-home-'));
  savedHome = process.env.HOME;
  process.env.HOME = home;
});
afterAll(async () => {
  process.env.HOME = savedHome;
  await rm(home, { recursive: true, force: true });
});

/** The shipped file with two more database nodes: a 7-node cluster. */
function sevenNodes(text: string): string {
  const last = '  - { name: web3, role: db, ip: 10.0.0.13 }\n';
  const more = [4, 6].map((n) => `  - { name: web${n}, role: db, ip: 10.0.0.${10 + n}, mac: "dc:a6:32:00:00:${10 + n}" }\n`).join('');
  return edit(text, last, last + more);
}

describe('the shipped cluster.yaml', () => {
  it('validates on a machine without ~/.ssh and pins a Raspberry Pi OS Lite arm64 trixie image', async () => {
    const inventory = await loadInventory(shippedPath, ROLES);
    expect(inventory.nodes.map((n) => `${n.name}:${n.role}`)).toEqual(['lb1:lb', 'lb2:lb', 'web1:db', 'web2:db', 'web3:db']);
    // Two load balancers on one floating address, three database nodes that are all etcd members.
    expect(inventory.network.vip).toBe('10.0.0.9');
    expect(inventory.roles.etcd.members).toEqual(['web1', 'web2', 'web3']);
    expect(inventory.warnings).toEqual([]);
    expect(inventory.admin).toEqual({ user: 'pi', sshKeys: [], generateSshKey: true, password: 'none' });
    expect(inventory.base.url).toMatch(
      /^https:\/\/downloads\.raspberrypi\.com\/raspios_lite_arm64\/images\/raspios_lite_arm64-\d{4}-\d\d-\d\d\/\d{4}-\d\d-\d\d-raspios-trixie-arm64-lite\.img\.xz$/,
    );
    expect(inventory.base.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(shipped.split('\n')[0]).toBe('# yaml-language-server: $schema=./schema/cluster.schema.json');
  });

  it('still validates as a 7-node cluster', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pibake-seven-'));
    try {
      const file = join(dir, 'cluster.yaml');
      await writeFile(file, sevenNodes(shipped));
      const inventory = await loadInventory(file, ROLES);
      expect(inventory.nodes).toHaveLength(7);
      expect(inventory.nodes[6]).toEqual({ name: 'web6', role: 'db', ip: '10.0.0.16', mac: 'dc:a6:32:00:00:16' });
      expect(inventory.roles.etcd.members).toEqual(['web1', 'web2', 'web3']); // the new nodes run Patroni only
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('maps every declared key to the Inventory and nothing else', async () => {
    const inventory = await loadInventory(shippedPath, ROLES);
    // Keys the loader adds beyond the declaration: where the file is, derived values, locations.
    const derived: Record<string, string[]> = { '': ['file', 'locations', 'warnings'], network: ['prefixLength'] };
    const optionalUnset = new Set(['wifi', 'base.path', 'roles.postgresql.version', 'roles.patroni.ttl', 'packages.proxy', 'packages.maxImageSize']);
    const walk = (fields: readonly Field[], value: Record<string, unknown>, path: string): void => {
      const declared = fields.map(propOf).filter((prop) => !optionalUnset.has(path ? `${path}.${prop}` : prop));
      expect(Object.keys(value).sort(), path || 'top level').toEqual([...declared, ...(derived[path] ?? [])].sort());
      for (const field of fields) {
        const child = value[propOf(field)];
        const childPath = path ? `${path}.${propOf(field)}` : propOf(field);
        if (field.spec.type === 'object' && child) walk(field.spec.fields, child as Record<string, unknown>, childPath);
      }
    };
    walk(INVENTORY_FIELDS, inventory as unknown as Record<string, unknown>, '');
  });
});

describe('generated files', () => {
  it('schema/cluster.schema.json is the fresh generation (run `npm run schema` after changing schema.ts)', async () => {
    expect(await readFile(join(repo, 'schema/cluster.schema.json'), 'utf8')).toBe(inventoryJsonSchemaText());
  });

  it('docs/inventory.md is the fresh generation', async () => {
    expect(await readFile(join(repo, 'docs/inventory.md'), 'utf8')).toBe(inventoryReferenceDoc());
  });

  it('the doc names every key of the declaration', () => {
    const doc = inventoryReferenceDoc();
    const paths = (fields: readonly Field[], prefix: string): string[] =>
      fields.flatMap((field) => {
        const path = `${prefix}${field.key}`;
        const spec = field.spec;
        const nested = spec.type === 'object' ? paths(spec.fields, `${path}.`) : spec.type === 'array' && spec.items.type === 'object' ? paths(spec.items.fields, `${path}[].`) : [];
        return [path, ...nested];
      });
    const all = paths(INVENTORY_FIELDS, '');
    expect(all.length).toBeGreaterThan(30);
    for (const path of all) expect(doc, path).toContain(`| \`${path}\` |`);
  });

  it('audits every text value: where it goes and what keeps it safe (a new text field needs an entry)', () => {
    const texts = (fields: readonly Field[], prefix: string): string[] =>
      fields.flatMap((field) => {
        const path = `${prefix}${field.key}`;
        const spec = field.spec;
        if (spec.type === 'string') return [path];
        if (spec.type === 'object') return texts(spec.fields, `${path}.`);
        if (spec.type === 'array') {
          if (spec.items.type === 'object') return texts(spec.items.fields, `${path}[].`);
          return spec.items.type === 'string' ? [`${path}[]`] : [];
        }
        return [];
      });
    const all = texts(INVENTORY_FIELDS, '');
    expect(all.filter((path) => !(path in VALUE_AUDIT))).toEqual([]);
    expect(Object.keys(VALUE_AUDIT).filter((path) => !all.includes(path))).toEqual([]);
  });
});

describe('the JSON Schema', () => {
  // Strict mode (minus strictRequired, which objects to `required` inside base's oneOf/not) also
  // rejects unknown keywords; compiling checks the schema against the draft 2020-12 meta-schema.
  const ajv = new Ajv2020({ strict: true, strictRequired: false, allErrors: true });
  const validate = ajv.compile(inventoryJsonSchema());
  const check = (yaml: string): string[] =>
    validate(load(yaml)) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);

  it('is draft 2020-12 and describes every property for editors', () => {
    const schema = inventoryJsonSchema();
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    const undocumented: string[] = [];
    const visit = (node: Record<string, unknown>, path: string): void => {
      for (const [key, value] of Object.entries((node.properties ?? {}) as Record<string, Record<string, unknown>>)) {
        if (typeof value.description !== 'string' || !value.description) undocumented.push(`${path}${key}`);
        visit(value, `${path}${key}.`);
        if (value.items) visit(value.items as Record<string, unknown>, `${path}${key}[].`);
      }
    };
    visit(schema, '');
    expect(undocumented).toEqual([]);
  });

  it('accepts the shipped cluster.yaml, its 7-node variant and the test inventory', () => {
    expect(check(shipped)).toEqual([]);
    expect(check(sevenNodes(shipped))).toEqual([]);
    expect(check(VALID)).toEqual([]);
  });

  it('rejects what pibake rejects field by field', () => {
    expect(check(edit(VALID, 'password: none', 'password: hunter2'))).toEqual(['/admin/password must match pattern "^(none|generate|\\$(y|gy|7|6|5)\\$[./0-9A-Za-z$=,]+)$"']);
    expect(check(edit(VALID, 'generate_ssh_key', 'generateSshKey'))).toEqual(['/admin must NOT have additional properties']);
    expect(check(edit(VALID, 'ip: 10.0.0.12', 'ip: 10.0.0.012'))[0]).toMatch(/^\/nodes\/2\/ip must match pattern/);
    expect(check(edit(VALID, 'name: web2', 'name: Web2'))[0]).toMatch(/^\/nodes\/2\/name must match pattern/);
    expect(check(`${VALID}roles:\n  web: { port: 0 }\n`)).toEqual(['/roles/web/port must be >= 1']);
    // base: url needs sha256; url and path exclude each other.
    expect(check(VALID.replace(/ {2}sha256: .*\n/, ''))).toContain('/base must match exactly one schema in oneOf');
    expect(check(VALID.replace(/( {2}sha256: .*\n)/, '$1  path: ./x.img\n'))).toContain('/base must match exactly one schema in oneOf');
  });

  it('has every default valid against its own property schema', () => {
    const checked: string[] = [];
    const visit = (node: Record<string, unknown>, path: string): void => {
      for (const [key, value] of Object.entries((node.properties ?? {}) as Record<string, Record<string, unknown>>)) {
        if ('default' in value) {
          const { default: fallback, ...own } = value;
          expect(ajv.validate(own, fallback), `${path}${key}`).toBe(true);
          checked.push(`${path}${key}`);
        }
        visit(value, `${path}${key}.`);
      }
    };
    visit(inventoryJsonSchema(), '');
    expect(checked).toContain('roles.postgresql.max_slot_wal_keep_size');
    expect(checked).toContain('admin.password');
  });
});
