/**
 * Regenerates schema/cluster.schema.json and docs/inventory.md from builder/inventory/schema.ts, and
 * schema/role.schema.json and docs/roles.md from builder/render/role-schema.ts (`npm run schema`).
 * A test fails when the committed files differ from a fresh generation.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inventoryJsonSchemaText } from '../builder/inventory/json-schema.ts';
import { inventoryReferenceDoc } from '../builder/inventory/reference-doc.ts';
import { roleJsonSchemaText, roleReferenceDoc } from '../builder/render/role-reference.ts';

export const GENERATED_FILES = {
  'schema/cluster.schema.json': inventoryJsonSchemaText,
  'docs/inventory.md': inventoryReferenceDoc,
  'schema/role.schema.json': roleJsonSchemaText,
  'docs/roles.md': roleReferenceDoc,
} as const;

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
for (const [path, generate] of Object.entries(GENERATED_FILES)) {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), generate());
  process.stdout.write(`wrote ${path}\n`);
}
