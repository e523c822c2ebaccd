/** Prints the base image SHA-256 pinned in an inventory (used as a CI cache key). */
import { readFile } from 'node:fs/promises';
import { load } from 'js-yaml';

const file = process.argv[2] ?? 'cluster.yaml';
const doc = load(await readFile(file, 'utf8')) as { base?: { sha256?: string } };
process.stdout.write(`${doc.base?.sha256 ?? 'unpinned'}\n`);
