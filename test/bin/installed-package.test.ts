/**
 * The package as a user installs it: `npm pack`, then `npm install` of the tarball into an empty
 * folder (no dev tools: no tsx, no TypeScript), then the installed `pibake` runs and finds its own
 * roles and overlays, and builds a card. Dependencies come from npm's cache where it has them, else the registry.
 */
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { copyFile, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCleanImage, scratchDir } from '../helpers/image.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const { version } = JSON.parse(await readFile(path.join(repo, 'package.json'), 'utf8')) as { version: string };

describe('the packed package, installed into an empty folder', () => {
  let scratch: Awaited<ReturnType<typeof scratchDir>>;
  let app: string;
  let packed: string[];
  const pibake = (args: string[]) =>
    execa(path.join(app, 'node_modules/.bin/pibake'), args, { cwd: app, reject: false, env: { PIBAKE_CACHE_DIR: path.join(app, 'cache') } });

  beforeAll(async () => {
    scratch = await scratchDir('pibake-cli-pack-');
    // --ignore-scripts: pack the dist/ the global setup just brought up to date, rather than let
    // `prepack` remove it under the other test files' feet.
    const { stdout } = await execa('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', scratch.dir], { cwd: repo });
    const [info] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    packed = info!.files.map((f) => f.path);
    app = path.join(scratch.dir, 'app');
    await execa('mkdir', [app]);
    await writeFile(path.join(app, 'package.json'), '{ "private": true }\n');
    await execa('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', path.join(scratch.dir, info!.filename)], { cwd: app });
  }, 180_000);
  afterAll(async () => scratch?.cleanup());

  it('holds only what runs: the compiled code, bin, roles, overlays, schema, docs', () => {
    expect(packed).toContain('dist/cli/main.js');
    expect(packed).toContain('bin/pibake.js');
    expect(packed).toContain('roles/lb.yaml');
    expect(packed).toContain('schema/cluster.schema.json');
    const outside = packed.filter((p) => !/^(dist|bin|roles|overlays|schema|docs)\/|^(README\.md|package\.json)$/.test(p));
    expect(outside).toEqual([]);
    expect(packed.filter((p) => p.startsWith('dist/') && !p.endsWith('.js'))).toEqual([]);
  });

  it('installs no dev tools', async () => {
    const installed = await readdir(path.join(app, 'node_modules'));
    expect(installed).toContain('pibake');
    for (const tool of ['tsx', 'typescript', 'vitest', 'eslint', 'esbuild']) expect(installed).not.toContain(tool);
  });

  it('runs --version and --help', async () => {
    const v = await pibake(['--version']);
    expect([v.exitCode, v.stdout.trim(), v.stderr]).toEqual([0, version, '']);
    const help = await pibake(['--help']);
    expect(help.exitCode).toBe(0);
    for (const command of ['build', 'render', 'inspect', 'flash', 'devices']) expect(help.stdout).toMatch(new RegExp(`^ {2}pibake ${command}\\b`, 'm'));
  });

  it('builds a card of the shipped cluster (the demo build: a synthesized base, packages online), fsck-clean', async () => {
    await copyFile(path.join(repo, 'cluster.yaml'), path.join(app, 'cluster.yaml'));
    const base = path.join(scratch.dir, 'base.img');
    await synthesizeRaspiosImage({ path: base, generation: 'trixie', sizeMiB: 600, bootMiB: 64 });
    const r = await pibake(['build', '--config', 'cluster.yaml', '--base', base, '--node', 'lb1', '--packages', 'online', '--out', 'output']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/1 baked/);
    await expectCleanImage(path.join(app, 'output/pistack/lb1.img'));
  }, 180_000);

  it('renders the shipped cluster with the roles and overlays inside the package', async () => {
    await copyFile(path.join(repo, 'cluster.yaml'), path.join(app, 'cluster.yaml'));
    const r = await pibake(['render', '--config', 'cluster.yaml', '--node', 'lb1', '--out', 'rendered']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(existsSync(path.join(app, 'rendered/lb1/rootfs/etc/haproxy/haproxy.cfg'))).toBe(true);
  });
});
