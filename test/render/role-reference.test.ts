import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { load } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import type { TemplateContext } from '../../builder/render/context.ts';
import { roleJsonSchema, roleJsonSchemaText, roleReferenceDoc, TEMPLATE_CONTEXT } from '../../builder/render/role-reference.ts';
import { ROLE_FIELDS } from '../../builder/render/role-schema.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('generated role reference', () => {
  it('schema/role.schema.json is the fresh generation (run `npm run schema` after changing role-schema.ts)', async () => {
    expect(await readFile(path.join(repo, 'schema/role.schema.json'), 'utf8')).toBe(roleJsonSchemaText());
  });

  it('docs/roles.md is the fresh generation', async () => {
    expect(await readFile(path.join(repo, 'docs/roles.md'), 'utf8')).toBe(roleReferenceDoc());
  });

  it('the doc names every key of the declaration and every key of the template context', () => {
    const doc = roleReferenceDoc();
    for (const field of ROLE_FIELDS) expect(doc, field.key).toContain(`| \`${field.key}\` |`);
    for (const key of ['mode', 'owner', 'group']) expect(doc).toContain(`| \`files.<path>.${key}\` |`);
    // A key added to TemplateContext without a line here fails to compile.
    const contextKeys: Record<keyof TemplateContext, true> = {
      cluster: true, network: true, node: true, nodes: true, tagged: true, primary: true, replicas: true, settings: true,
      etcdMembers: true, secrets: true, admin: true, generation: true,
    };
    // primary and replicas are tags of old roles (postgresql-primary/-replica) no shipped role has.
    const documented = TEMPLATE_CONTEXT.map(([name]) => name).join(' ');
    for (const key of Object.keys(contextKeys).filter((k) => k !== 'primary' && k !== 'replicas')) {
      expect(documented, key).toMatch(new RegExp(`(^|[ ,])${key}\\b`));
    }
  });
});

describe('citations', () => {
  it('every Markdown file the code cites (hints, comments) exists in the repository', async () => {
    const cited = new Map<string, string>();
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) await walk(file);
        else for (const match of (await readFile(file, 'utf8')).matchAll(/\b(?:docs\/)?[\w.-]+\.md\b/g)) cited.set(match[0], file);
      }
    };
    await walk(path.join(repo, 'builder'));
    const missing: string[] = [];
    for (const [doc, file] of cited) {
      const exists = await readFile(path.join(repo, doc)).then(() => true, () => false);
      if (!exists) missing.push(`${doc} (cited in ${path.relative(repo, file)})`);
    }
    expect(cited.has('docs/roles.md')).toBe(true);
    expect(missing).toEqual([]);
  });
});

describe('the role JSON Schema', () => {
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  const validate = ajv.compile(roleJsonSchema());
  const check = (yaml: string): string[] => (validate(load(yaml)) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`));

  it('accepts every shipped role file and the test fixtures', async () => {
    for (const dir of ['roles', 'test/fixtures/roles']) {
      for (const name of await readdir(path.join(repo, dir))) {
        expect(check(await readFile(path.join(repo, dir, name), 'utf8')), `${dir}/${name}`).toEqual([]);
      }
    }
  });

  it('rejects what pibake rejects field by field', () => {
    expect(check('packags: [nginx]\n')).toEqual([' must NOT have additional properties']);
    expect(check('services: [nginx]\n')[0]).toMatch(/^\/services\/0 must match pattern/);
    expect(check('tags: [web, web]\n')[0]).toMatch(/^\/tags must NOT have duplicate items/);
    expect(check('files:\n  /etc/a: { mode: 0644 }\n')).toEqual(['/files/~1etc~1a/mode must be string']);
    expect(check('files:\n  etc/a: { mode: "0644" }\n')[0]).toMatch(/^\/files must match pattern/);
    expect(check('files:\n  /etc/a: { onwer: root }\n')).toEqual(['/files/~1etc~1a must NOT have additional properties']);
  });
});
