/**
 * The command line as a whole, through the compiled CLI: every command spells the shared options
 * alike, and starting pibake loads only what the command needs (module loads are watched with a
 * Node resolve hook, so the test sees exactly what `import` did).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { commandName, commands } from '../../builder/cli/commands.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = path.join(repo, 'bin/pibake.js');

/** Registers a resolve hook that prints every module URL the program imports to stderr. */
const HOOK = `data:text/javascript,${encodeURIComponent(`
import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(
  'export async function resolve(s, c, next) { const r = await next(s, c); process._rawDebug("loaded " + r.url); return r; }'));
`)}`;

async function loadedModules(args: string[]): Promise<{ stdout: string; modules: string[] }> {
  const run = await execa(process.execPath, ['--import', HOOK, bin, ...args], { reject: false });
  expect(run.exitCode, run.stderr).toBe(0);
  const modules = run.stderr.split('\n').filter((line) => line.startsWith('loaded ')).map((line) => line.slice(7));
  return { stdout: run.stdout, modules };
}

const local = (modules: string[]) => modules.filter((url) => url.startsWith('file:')).map((url) => path.relative(repo, fileURLToPath(url)));

describe('pibake start-up', () => {
  it('answers --version without loading yargs or any command', async () => {
    const { stdout, modules } = await loadedModules(['--version']);
    expect(stdout).toMatch(/^\d+\.\d+\.\d+$/);
    expect(local(modules).sort()).toEqual([
      'bin/pibake.js', 'dist/cli/commands.js', 'dist/cli/exit-code.js', 'dist/cli/main.js', 'dist/common/errors.js', 'dist/common/paths.js',
    ]);
  });

  it('lists every command for --help, loading no command module and nothing of the pipeline', async () => {
    const { stdout, modules } = await loadedModules(['--help']);
    for (const entry of commands) expect(stdout).toMatch(new RegExp(`^ {2}pibake ${commandName(entry)}\\b`, 'm'));
    expect(local(modules).filter((file) => file.startsWith('dist/') && !/^dist\/(cli\/(main|commands|exit-code)|common\/(errors|paths))\.js$/.test(file))).toEqual([]);
  });

  it('loads one command\'s module for its --help, and not the pipeline behind its handler', async () => {
    const { modules } = await loadedModules(['build', '--help']);
    const files = local(modules);
    expect(files).toContain('dist/cli/build.js');
    expect(files.filter((file) => /^dist\/(bake|image|render|inventory|package|flash|carry|status)\//.test(file))).toEqual([]);
  });
});

describe('shared options', () => {
  /** The options a command's --help lists: long name to its short alias ('' when none). */
  async function options(name: string): Promise<Map<string, string>> {
    const help = await execa(process.execPath, [bin, name, '--help']);
    const found = new Map<string, string>();
    for (const match of help.stdout.matchAll(/^\s+(?:-(\w), )?--([\w-]+)/gm)) found.set(match[2] as string, match[1] ?? '');
    return found;
  }

  it('every command has --json; --config is -c, --node is -n and --out is -o wherever they exist', async () => {
    const seen = new Set<string>();
    for (const entry of commands) {
      const name = commandName(entry);
      const found = await options(name);
      expect(found.has('json'), `${name} --json`).toBe(true);
      for (const [long, short] of [['config', 'c'], ['node', 'n'], ['out', 'o']] as const) {
        if (!found.has(long)) continue;
        seen.add(long);
        expect(found.get(long), `${name} --${long}`).toBe(short);
      }
    }
    expect([...seen].sort()).toEqual(['config', 'node', 'out']);
  });

  it('takes --node more than once where a command works on several nodes', async () => {
    for (const name of ['build', 'render', 'status']) {
      const help = (await execa(process.execPath, [bin, name, '--help'])).stdout;
      expect(help, name).toMatch(/-n, --node\s+.*\(repeatable\)\s+\[array\]/);
    }
  });
});
