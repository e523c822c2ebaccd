/**
 * `pibake secrets` through the compiled command line, on a copy of the shipped inventory: the
 * secrets file an operator needs to seal CI's release images, made before any local build.
 */
import { copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { load } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let dir: string;
const pibake = (args: string[]) => execa(process.execPath, [path.join(repo, 'bin/pibake.js'), 'secrets', ...args], { reject: false, cwd: dir });

/** Every string value of the secrets file (passwords, hashes, keys). */
function values(data: unknown): string[] {
  if (typeof data === 'string') return [data];
  if (data && typeof data === 'object') return Object.values(data).flatMap(values);
  return [];
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pibake-secrets-cli-'));
  await copyFile(path.join(repo, 'cluster.yaml'), path.join(dir, 'cluster.yaml'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('pibake secrets', () => {
  it('creates the file 0600 and names what it made, never a value; a second run changes nothing', async () => {
    const first = await pibake([]);
    expect(first.stderr).toBe('');
    expect(first.exitCode).toBe(0);
    const file = path.join(dir, 'cluster.secrets.yaml');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, 'utf8');
    const data = load(text) as { secrets: Record<string, string>; admin: Record<string, string>; host_keys: Record<string, unknown> };
    expect(Object.keys(data.host_keys)).toEqual(['lb1', 'lb2', 'web1', 'web2', 'web3']);
    // The shipped inventory: no password (key login only), a generated admin key, the HA roles' passwords.
    expect(Object.keys(data.admin).sort()).toEqual(['ssh_private_key', 'ssh_public_key']);
    expect(Object.keys(data.secrets).length).toBeGreaterThanOrEqual(5);
    expect(first.stdout).toBe(`created ${file} (0600; back it up, never commit it): admin.ssh_private_key, admin.ssh_public_key, `
      + 'host_keys.lb1, host_keys.lb2, host_keys.web1, host_keys.web2, host_keys.web3, '
      + `${Object.keys(data.secrets).sort().map((k) => `secrets.${k}`).join(', ')}`);
    // The admin key pair beside the inventory, as a build makes it.
    expect((await stat(path.join(dir, 'pistack-admin'))).mode & 0o777).toBe(0o600);
    for (const value of values(data)) if (value.length >= 16) expect(first.stdout).not.toContain(value);

    const again = await pibake(['--config', 'cluster.yaml']);
    expect(again.exitCode).toBe(0);
    expect(again.stdout).toBe(`${file} already holds every secret the inventory needs; nothing changed`);
    expect(await readFile(file, 'utf8')).toBe(text);
  });

  it('a new node gets its host key; every value made before stays as it was', async () => {
    const file = path.join(dir, 'cluster.secrets.yaml');
    const before = load(await readFile(file, 'utf8')) as Record<string, Record<string, unknown>>;
    const config = path.join(dir, 'cluster.yaml');
    const shipped = await readFile(config, 'utf8');
    await writeFile(config, shipped.replace(/( {2}- \{ name: web3, [^\n]*\n)/, '$1  - { name: web4, role: db, ip: 10.0.0.14 }\n'));
    const r = await pibake(['-c', config]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(`added to ${file}: host_keys.web4`);
    const after = load(await readFile(file, 'utf8')) as Record<string, Record<string, unknown>>;
    expect({ ...after, host_keys: { ...after.host_keys, web4: undefined } }).toEqual({ ...before, host_keys: { ...before.host_keys, web4: undefined } });
  });

  it('a bad inventory: one line with file:line, exit 1, no secrets file made', async () => {
    const bad = path.join(dir, 'bad.yaml');
    await writeFile(bad, (await readFile(path.join(repo, 'cluster.yaml'), 'utf8')).replace('role: lb', 'role: nosuchrole'));
    const r = await pibake(['-c', bad]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/bad\.yaml:\d+/);
    await expect(stat(path.join(dir, 'bad.secrets.yaml'))).rejects.toThrow();
  });
});
