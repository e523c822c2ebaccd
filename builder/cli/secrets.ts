/**
 * `pibake secrets`: make the cluster's secrets file before any image is built here — what an
 * operator needs to seal release images built by CI (`pibake build --sealed`, which never reads it)
 * for a new cluster or a new node. Adds only what is missing; a value once made is never changed,
 * since the cards already written hold it. Prints what it added by name, never a value.
 */
import { defineCommand, printResult, withConfig, withJson } from './options.ts';

export const command = defineCommand({
  builder: (y) => withJson(withConfig(y, 'the inventory; its secrets file is made beside it'), 'print the file and the names of what was added as JSON'),
  handler: async (args) => {
    // Loaded when the command runs: --help and --version load none of the pipeline.
    const { ensureSecrets } = await import('../render/ensure-secrets.ts');
    const result = await ensureSecrets(args.config);
    const { file, created, added } = result;
    printResult(args.json, result, () => [
      created ? `created ${file} (0600; back it up, never commit it): ${added.join(', ')}`
        : added.length > 0 ? `added to ${file}: ${added.join(', ')}`
          : `${file} already holds every secret the inventory needs; nothing changed`,
    ]);
  },
});
