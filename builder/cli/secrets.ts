/**
 * `pibake secrets`: make the cluster's secrets file before any image is built here — what an
 * operator needs to seal release images built by CI (`pibake build --sealed`, which never reads it)
 * for a new cluster or a new node. Adds only what is missing; a value once made is never changed,
 * since the cards already written hold it. Prints what it added by name, never a value.
 */
import { readFile } from 'node:fs/promises';
import { load } from 'js-yaml';
import { roleFolders } from '../common/paths.ts';
import { loadInventory } from '../inventory/load.ts';
import { baseSupportsYescrypt } from '../render/crypt.ts';
import { loadRoles } from '../render/roles.ts';
import { loadOrCreateSecrets, secretsPath } from '../render/secrets.ts';
import { defineCommand, printResult, withConfig, withJson } from './options.ts';
import { TYPICAL_LITE_PACKAGES } from './render.ts';

/** The entries of a secrets file as dotted names (`secrets.app_db_password`, `host_keys.lb1`). */
async function entryNames(file: string): Promise<Set<string>> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return new Set();
  const data = (load(text) ?? {}) as Record<string, unknown>;
  const names = new Set<string>();
  for (const section of ['secrets', 'admin', 'host_keys']) {
    const entries = data[section];
    if (entries && typeof entries === 'object') for (const key of Object.keys(entries)) names.add(`${section}.${key}`);
  }
  return names;
}

export async function ensureSecrets(config: string): Promise<{ file: string; created: boolean; added: string[] }> {
  const folders = roleFolders(config);
  const roles = await loadRoles(folders.roles, folders.overlays);
  const inventory = await loadInventory(config, roles);
  const file = secretsPath(inventory.file);
  const before = await entryNames(file);
  const created = before.size === 0;
  // Raspberry Pi OS (bookworm and trixie) checks yescrypt hashes, as a build on either base would hash.
  await loadOrCreateSecrets(inventory, roles, { yescrypt: baseSupportsYescrypt(TYPICAL_LITE_PACKAGES) });
  const added = [...(await entryNames(file))].filter((name) => !before.has(name)).sort();
  return { file, created, added };
}

export const command = defineCommand({
  builder: (y) => withJson(withConfig(y, 'the inventory; its secrets file is made beside it'), 'print the file and the names of what was added as JSON'),
  handler: async (args) => {
    const result = await ensureSecrets(args.config);
    const { file, created, added } = result;
    printResult(args.json, result, () => [
      created ? `created ${file} (0600; back it up, never commit it): ${added.join(', ')}`
        : added.length > 0 ? `added to ${file}: ${added.join(', ')}`
          : `${file} already holds every secret the inventory needs; nothing changed`,
    ]);
  },
});
