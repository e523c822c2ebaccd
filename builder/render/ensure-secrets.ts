/**
 * `pibake secrets`: the cluster's secrets file made, or completed for a new node or role, before
 * any image is built here (for sealing CI's release images). Adds only what is missing; reports
 * what it added by name, never a value.
 */
import { readFile } from 'node:fs/promises';
import { load } from 'js-yaml';
import { baseSupportsYescrypt } from './crypt.ts';
import { TYPICAL_LITE_PACKAGES, loadProject } from './project.ts';
import { loadOrCreateSecrets, secretsPath } from './secrets.ts';

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
  const { inventory, roles } = await loadProject(config);
  const file = secretsPath(inventory.file);
  const before = await entryNames(file);
  const created = before.size === 0;
  // Raspberry Pi OS (bookworm and trixie) checks yescrypt hashes, as a build on either base would hash.
  await loadOrCreateSecrets(inventory, roles, { yescrypt: baseSupportsYescrypt(TYPICAL_LITE_PACKAGES) });
  const added = [...(await entryNames(file))].filter((name) => !before.has(name)).sort();
  return { file, created, added };
}
