/**
 * `pibake secrets`: make the cluster's secrets file before any image is built here — what an
 * operator needs to seal release images built by CI (`pibake build --sealed`, which never reads it)
 * for a new cluster or a new node. Adds only what is missing; a value once made is never changed,
 * since the cards already written hold it. Prints what it added by name, never a value.
 */
import { readFile } from 'node:fs/promises';
import { load } from 'js-yaml';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { roleFolders } from '../common/paths.ts';
import { loadInventory } from '../inventory/load.ts';
import { baseSupportsYescrypt } from '../render/crypt.ts';
import { loadRoles } from '../render/roles.ts';
import { loadOrCreateSecrets, secretsPath } from '../render/secrets.ts';
import { TYPICAL_LITE_PACKAGES } from './render.ts';

interface SecretsArgs {
  config: string;
}

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

export const secretsCommand: CommandModule<object, SecretsArgs> = {
  command: 'secrets',
  describe: 'Create the cluster\'s secrets file (cluster.secrets.yaml, 0600), or add what a new node or role needs; never changes a value',
  builder: (yargs: Argv<object>) =>
    yargs.option('config', { alias: 'c', type: 'string', default: 'cluster.yaml', describe: 'the inventory; its secrets file is made beside it' }) as unknown as Argv<SecretsArgs>,
  handler: async (args: ArgumentsCamelCase<SecretsArgs>) => {
    const { file, created, added } = await ensureSecrets(args.config);
    if (created) process.stdout.write(`created ${file} (0600; back it up, never commit it): ${added.join(', ')}\n`);
    else if (added.length > 0) process.stdout.write(`added to ${file}: ${added.join(', ')}\n`);
    else process.stdout.write(`${file} already holds every secret the inventory needs; nothing changed\n`);
  },
};
