import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { load } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { runTool } from '../../builder/common/exec.ts';
import { PibakeError } from '../../builder/common/errors.ts';
import { loadRoles } from '../../builder/render/roles.ts';
import { adminKeyPaths, knownHosts, loadOrCreateSecrets, secretsPath } from '../../builder/render/secrets.ts';
import { FIXTURE_OVERLAYS, FIXTURE_ROLES, sevenNodeInventory, withTempDir } from './fixture.ts';

async function opensslCrypt(password: string, salt: string): Promise<string> {
  return (await runTool('openssl', ['passwd', '-6', '-salt', salt, '-stdin'], { input: password })).stdout.trim();
}

describe('loadOrCreateSecrets', () => {
  it('creates a 0600 file once and returns the same secrets on the next load', async () => {
    await withTempDir(async (dir) => {
      const inventory = sevenNodeInventory(dir);
      const roles = await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS);
      const first = await loadOrCreateSecrets(inventory, roles);
      const file = secretsPath(inventory.file);
      expect(first.file).toBe(path.join(dir, 'cluster.secrets.yaml'));
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect(Object.keys(first.values).sort()).toEqual(['haproxy_stats_password', 'replication_password']);
      for (const v of Object.values(first.values)) expect(v).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(first.values.haproxy_stats_password).not.toBe(first.values.replication_password);
      expect(Object.keys(first.hostKeys)).toEqual(inventory.nodes.map((n) => n.name));
      const before = await readFile(file, 'utf8');
      const second = await loadOrCreateSecrets(inventory, roles);
      expect(second).toEqual(first);
      expect(await readFile(file, 'utf8')).toBe(before); // nothing new: not rewritten
      expect(load(before)).toMatchObject({ version: 1 });
    });
  });

  it('adds new nodes and newly declared secrets without touching existing ones', async () => {
    await withTempDir(async (dir) => {
      const inventory = sevenNodeInventory(dir);
      inventory.nodes = inventory.nodes.slice(0, 2); // lb + primary
      const roles = await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS);
      const first = await loadOrCreateSecrets(inventory, roles);
      roles.get('lb')!.secrets.push('new_token');
      const grown = sevenNodeInventory(dir);
      const second = await loadOrCreateSecrets(grown, roles);
      expect(second.values.haproxy_stats_password).toBe(first.values.haproxy_stats_password);
      expect(second.values.new_token).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(second.hostKeys.lb).toEqual(first.hostKeys.lb);
      expect(Object.keys(second.hostKeys)).toHaveLength(7);
      expect(second.admin).toEqual(first.admin);
    });
  });

  it('refuses a secrets file readable by others', async () => {
    await withTempDir(async (dir) => {
      const inventory = sevenNodeInventory(dir);
      const roles = await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS);
      await loadOrCreateSecrets(inventory, roles);
      await chmod(secretsPath(inventory.file), 0o644);
      await expect(loadOrCreateSecrets(inventory, roles)).rejects.toThrow(/readable by others/);
      await writeFile(secretsPath(inventory.file), 'just: text\n', { mode: 0o600 });
      await chmod(secretsPath(inventory.file), 0o600);
      await expect(loadOrCreateSecrets(inventory, roles)).rejects.toBeInstanceOf(PibakeError);
    });
  });

  it('generates an admin password whose stored $6$ hash openssl reproduces', async () => {
    await withTempDir(async (dir) => {
      const inventory = sevenNodeInventory(dir);
      const secrets = await loadOrCreateSecrets(inventory, await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS));
      const { password, passwordHash } = secrets.admin;
      expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
      const salt = passwordHash!.split('$')[2] as string;
      expect(await opensslCrypt(password!, salt)).toBe(passwordHash);
    });
  });

  it('uses a given hash and keeps no password when the inventory supplies one', async () => {
    await withTempDir(async (dir) => {
      const inventory = sevenNodeInventory(dir, { admin: { user: 'ops', sshKeys: [], generateSshKey: false, password: { hash: '$6$abc$def' } } });
      const secrets = await loadOrCreateSecrets(inventory, await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS));
      expect(secrets.admin).toEqual({ passwordHash: '$6$abc$def' });
      expect(await readFile(secretsPath(inventory.file), 'utf8')).not.toContain('$6$abc$def');
    });
  });

  it('writes host and admin keys that ssh-keygen reads, and a known_hosts it finds hosts in', async () => {
    await withTempDir(async (dir) => {
      const inventory = sevenNodeInventory(dir);
      const secrets = await loadOrCreateSecrets(inventory, await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS));
      const keys = adminKeyPaths(inventory);
      expect(keys.privateKey).toBe(path.join(dir, 'pilab-admin'));
      expect((await stat(keys.privateKey)).mode & 0o777).toBe(0o600);
      expect((await stat(keys.publicKey)).mode & 0o777).toBe(0o644);
      const derived = (await runTool('ssh-keygen', ['-y', '-f', keys.privateKey])).stdout.trim().split(' ').slice(0, 2).join(' ');
      expect(derived).toBe(secrets.admin.sshKey!.publicKey.split(' ').slice(0, 2).join(' '));
      expect((await readFile(keys.publicKey, 'utf8')).trim()).toBe(secrets.admin.sshKey!.publicKey);
      for (const node of inventory.nodes) {
        const file = path.join(dir, `host-${node.name}`);
        await writeFile(file, secrets.hostKeys[node.name]!.privateKey, { mode: 0o600 });
        const pub = (await runTool('ssh-keygen', ['-y', '-f', file])).stdout.trim().split(' ').slice(0, 2).join(' ');
        expect(secrets.hostKeys[node.name]!.publicKey.startsWith(`${pub} `)).toBe(true);
        expect((await runTool('ssh-keygen', ['-l', '-f', file])).stdout).toMatch(/^256 SHA256:\S+ .*\(ED25519\)/);
      }
      const known = path.join(dir, 'known_hosts');
      await writeFile(known, knownHosts(inventory, secrets));
      for (const name of ['db2', 'db2.pilab.lan', '10.0.0.12']) {
        const found = (await runTool('ssh-keygen', ['-F', name, '-f', known])).stdout;
        expect(found).toContain(secrets.hostKeys.db2!.publicKey.split(' ')[1]);
      }
    });
  });
});

describe('loadOrCreateSecrets under concurrency', () => {
  it('gives builds started together the same secrets', async () => {
    await withTempDir(async (dir) => {
      const inventory = sevenNodeInventory(dir);
      const roles = await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS);
      const results = await Promise.all([1, 2, 3, 4].map(() => loadOrCreateSecrets(inventory, roles)));
      for (const r of results) expect(r).toEqual(results[0]);
      expect((await stat(secretsPath(inventory.file))).mode & 0o777).toBe(0o600);
    });
  });
});
