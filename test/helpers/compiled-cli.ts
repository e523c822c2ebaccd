/**
 * Vitest global setup: the tests run the CLI as users do (bin/pibake.js, which runs the compiled
 * dist/), so dist/ must match the sources being tested. Builds only when a source or a build
 * setting is newer than the last build, so a focused run on unchanged sources pays nothing.
 */
import { existsSync } from 'node:fs';
import { readdir, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';

const repo = path.resolve(import.meta.dirname, '../..');
const stamp = path.join(repo, 'dist/.tsbuildinfo');

async function newestMtime(file: string): Promise<number> {
  const info = await stat(file);
  if (!info.isDirectory()) return info.mtimeMs;
  const entries = await readdir(file);
  const times = await Promise.all(entries.map((e) => newestMtime(path.join(file, e))));
  return Math.max(info.mtimeMs, ...times);
}

export default async function ensureCompiledCli(): Promise<void> {
  const inputs = ['builder', 'tsconfig.json', 'tsconfig.build.json', 'package.json'].map((p) => path.join(repo, p));
  const newest = Math.max(...(await Promise.all(inputs.map(newestMtime))));
  if (existsSync(stamp) && (await stat(stamp)).mtimeMs >= newest) return;
  await execa('tsc', ['-p', 'tsconfig.build.json'], { cwd: repo, preferLocal: true, stdout: 'inherit', stderr: 'inherit' });
  // tsc leaves its build info untouched when nothing needed emitting (a touched, unchanged file).
  const now = new Date();
  await utimes(stamp, now, now);
}
