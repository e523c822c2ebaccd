/**
 * `pibake secrets`: make the cluster's secrets file before any image is built here — what an
 * operator needs to seal release images built by CI (`pibake build --sealed`, which never reads it)
 * for a new cluster or a new node. Adds only what is missing; a value once made is never changed,
 * since the cards already written hold it. Prints what it added by name, never a value.
 */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { ensureSecrets } from '../render/ensure-secrets.ts';

interface SecretsArgs {
  config: string;
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
