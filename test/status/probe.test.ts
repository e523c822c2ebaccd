/**
 * What status asks each node, from the role files (a user's new role included), and planStatus
 * over a real project folder: inventory, roles beside it, the build's output folder. The command
 * line's errors exit 3 ("could not check"), never 0-2.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeScript } from '../../builder/status/probe.ts';
import { PROBE_SCRIPT } from '../../builder/status/probe-script.ts';
import { planStatus } from '../../builder/status/status.ts';
import { roleFolders } from '../../builder/common/paths.ts';
import { loadInventory } from '../../builder/inventory/load.ts';
import { loadRoles } from '../../builder/render/roles.ts';
import { knownHosts, loadOrCreateSecrets, secretsPath } from '../../builder/render/secrets.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let dir: string;

/**
 * A project: the shipped cluster.yaml plus a fourth db node (not an etcd member: the default
 * members are the first three) and a node of the user's own role `cache`; the shipped roles plus cache.yaml.
 */
async function project(): Promise<string> {
  const config = path.join(dir, 'cluster.yaml');
  const shipped = await readFile(path.join(repo, 'cluster.yaml'), 'utf8');
  await writeFile(config, shipped.replace(/( {2}- \{ name: web3, [^\n]*\n)/, '$1  - { name: web4, role: db, ip: 10.0.0.14 }\n  - { name: cache1, role: cache, ip: 10.0.0.20 }\n'));
  await mkdir(path.join(dir, 'roles'), { recursive: true });
  for (const role of ['lb', 'db']) await copyFile(path.join(repo, 'roles', `${role}.yaml`), path.join(dir, 'roles', `${role}.yaml`));
  await writeFile(path.join(dir, 'roles', 'cache.yaml'), [
    'description: a user\'s own role, its own PostgreSQL under Patroni and an HAProxy in front of it',
    'tags: [postgresql]', 'overlays: [common]', 'packages: [haproxy, patroni]',
    'services: [haproxy.service, patroni.service, pgbouncer@main.service]', 'firstboot: [pibake-ownership.service]', '',
  ].join('\n'));
  return config;
}

async function output(nodes: string[]): Promise<string> {
  const out = path.join(dir, 'output');
  await mkdir(path.join(out, 'pistack'), { recursive: true });
  const record = (name: string, i: number) => [name, { role: 'x', ip: '10.0.0.1', diskId: '0x1', digest: String(i).repeat(64), files: {}, image: {}, extras: {} }];
  await writeFile(path.join(out, 'pistack', 'manifest.json'), JSON.stringify({
    format: 1, cluster: 'pistack', pibake: '0.1.0', base: { source: 'b', sha256: 'c', generation: 'trixie' }, nodes: Object.fromEntries(nodes.map(record)),
  }));
  await writeFile(path.join(out, 'pistack', 'known_hosts'), '');
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pibake-status-plan-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('planStatus: what to ask each node comes from its role file', () => {
  it('units, PostgreSQL by tag, Patroni, etcd and HAProxy by the services a role runs; settings from the inventory', async () => {
    const config = await project();
    const out = await output(['lb1', 'lb2', 'web1', 'web2', 'web3', 'web4']);
    await writeFile(path.join(dir, 'pistack-admin'), 'not a real key\n', { mode: 0o600 });
    const plan = await planStatus({ config, out, timeout: 7 });
    const brief = plan.targets.map((t) => ({ name: t.name, units: [...t.services, ...t.firstboot].length, pg: t.postgresqlPort, patroni: t.patroniUrl, etcd: t.etcdUrl, haproxy: t.haproxy }));
    const db = (name: string, ip: string, member: boolean) => ({
      name, units: member ? 7 : 6, pg: 5432, patroni: `http://${ip}:8008/patroni`, etcd: member ? `http://${ip}:2379/health` : undefined, haproxy: false,
    });
    expect(brief).toEqual([
      { name: 'lb1', units: 3, pg: undefined, patroni: undefined, etcd: undefined, haproxy: true },
      { name: 'lb2', units: 3, pg: undefined, patroni: undefined, etcd: undefined, haproxy: true },
      db('web1', '10.0.0.11', true), db('web2', '10.0.0.12', true), db('web3', '10.0.0.13', true),
      db('web4', '10.0.0.14', false), // etcd stays off there by design: its unit is not expected to run
      { name: 'cache1', units: 4, pg: 5432, patroni: 'http://10.0.0.20:8008/patroni', etcd: undefined, haproxy: true },
    ]);
    expect(plan.targets.find((t) => t.name === 'web4')?.services).toEqual(['nginx.service', 'pibake-webapp.service', 'patroni.service']);
    expect(plan.vip).toBe('10.0.0.9');
    expect(plan.digests.get('web2')).toBe('3'.repeat(64));
    expect(plan.digests.get('cache1')).toBeUndefined(); // never built: its card will say so
    expect(plan.ssh).toEqual({
      user: 'pi', identity: path.join(dir, 'pistack-admin'), knownHosts: path.join(out, 'pistack', 'known_hosts'), connectTimeout: 5, deadline: 7, sshConfig: undefined,
    });
    expect(plan.partial).toBe(false);
    const scripts = new Map(plan.targets.map((t) => [t.name, probeScript(t)]));
    const script = scripts.get('cache1') ?? '';
    expect(script.split('\n').slice(0, 8)).toEqual([
      '# pibake status: probe of cache1 (role cache)',
      "UNITS='haproxy.service patroni.service pgbouncer@main.service pibake-ownership.service'",
      "PG_PORT='5432'",
      "PATRONI_URL='http://10.0.0.20:8008/patroni'",
      "ETCD_URL=''",
      "HAPROXY='yes'",
      "CLOUD_INIT_DONE_IN=''",
      "# The probe 'pibake status' runs on each node: one ssh session ('sh -s' as the cluster's admin",
    ]);
    expect(scripts.get('lb1')).toContain("PG_PORT=''\nPATRONI_URL=''\nETCD_URL=''\nHAPROXY='yes'\n");
    expect(scripts.get('web1')).toContain("\nETCD_URL='http://10.0.0.11:2379/health'\n");
    // --watch: a boot id where cloud-init was done already; anything else is not passed on.
    const bootId = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
    expect(probeScript(plan.targets[0] as never, { cloudInitDoneIn: bootId })).toContain(`\nCLOUD_INIT_DONE_IN='${bootId}'\n`);
    expect(probeScript(plan.targets[0] as never, { cloudInitDoneIn: "x'; reboot; '" })).toContain("\nCLOUD_INIT_DONE_IN=''\n");
    // The settings, then the probe as shipped: nothing else (no secret) travels to a node.
    for (const s of scripts.values()) {
      expect(s.split('\n').slice(7).join('\n')).toBe(PROBE_SCRIPT);
      await execa('sh', ['-n'], { input: s });
    }
    const partial = await planStatus({ config, out, timeout: 7, nodes: ['web2'] });
    expect(partial.targets.map((t) => t.name)).toEqual(['web2']);
    expect(partial.partial).toBe(true);
  });
});

describe('planStatus: a sealed build', () => {
  it('has no known_hosts: the host keys come from the secrets file that sealed its cards, into a private temporary file', async () => {
    const config = await project();
    const out = await output(['lb1', 'lb2']);
    const folder = path.join(out, 'pistack');
    const manifest = JSON.parse(await readFile(path.join(folder, 'manifest.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(path.join(folder, 'manifest.json'), JSON.stringify({ ...manifest, sealed: true }));
    await rm(path.join(folder, 'known_hosts'));
    const folders = roleFolders(config);
    const roles = await loadRoles(folders.roles, folders.overlays);
    const inventory = await loadInventory(config, roles);
    await rm(secretsPath(config), { force: true });
    await expect(planStatus({ config, out, timeout: 7 })).rejects.toThrow(/^no secrets file /);

    const secrets = await loadOrCreateSecrets(inventory, roles);
    const plan = await planStatus({ config, out, timeout: 7 });
    expect(path.dirname(plan.ssh.knownHosts)).not.toBe(folder);
    expect(await readFile(plan.ssh.knownHosts, 'utf8')).toBe(knownHosts(inventory, secrets));
    expect((await stat(plan.ssh.knownHosts)).mode & 0o777).toBe(0o600);
    expect(await readFile(plan.ssh.knownHosts, 'utf8')).toMatch(/^lb1,\S* ssh-ed25519 /m);
    await rm(secretsPath(config));
  }, 60_000);
});

describe('pibake status: errors exit 3 with one line and a hint', () => {
  const pibake = (args: string[]) => execa(process.execPath, [path.join(repo, 'bin/pibake.js'), 'status', ...args], { reject: false, cwd: dir });

  it('no build output, no known_hosts, no admin key, an unknown node, a bad option', async () => {
    const config = await project();
    await rm(path.join(dir, 'output'), { recursive: true, force: true });
    await rm(path.join(dir, 'pistack-admin'), { force: true });
    const noBuild = await pibake(['--config', config]);
    expect(noBuild.exitCode).toBe(3);
    expect(noBuild.stderr).toBe(`error: no build of cluster "pistack" in ${path.join(dir, 'output', 'pistack')} (manifest.json missing or unreadable) `
      + '(hint: status compares each card with the build\'s records: run pibake build first, or pass its folder with --out)');
    expect(noBuild.stdout).toBe('');

    const out = await output(['lb1', 'lb2']);
    await rm(path.join(out, 'pistack', 'known_hosts'));
    const noKnownHosts = await pibake(['--config', config]);
    expect(noKnownHosts.exitCode).toBe(3);
    expect(noKnownHosts.stderr).toMatch(/^error: \S+\/known_hosts is missing \(hint: pibake build writes it; status checks every node's host key against it\)$/);

    await output(['lb1', 'lb2']);
    const noKey = await pibake(['--config', config]);
    expect(noKey.exitCode).toBe(3);
    expect(noKey.stderr).toMatch(/^error: the cluster's admin key \S+\/pistack-admin is missing \(hint: /);

    await writeFile(path.join(dir, 'pistack-admin'), 'x\n', { mode: 0o600 });
    const ghost = await pibake(['--config', config, '--node', 'web9']);
    expect(ghost.exitCode).toBe(3);
    expect(ghost.stderr).toMatch(/^error: no node named web9 in \S+cluster\.yaml \(hint: known nodes: lb1, lb2, web1, web2, web3, web4, cache1\)$/);

    const bad = await pibake(['--config', config, '--timeout', '0']);
    expect(bad.exitCode).toBe(3);
    expect(bad.stderr).toBe('error: --timeout must be a positive number, not 0\n'.trimEnd());
    const count = await pibake(['--config', config, '--count', '2']);
    expect(count.exitCode).toBe(3);
    expect(count.stderr).toBe('error: --count counts rounds of --watch (hint: add --watch, or leave --count out)');
    const unknown = await pibake(['--bogus']);
    expect(unknown.exitCode).toBe(3);
    expect(unknown.stderr).toMatch(/^error: Unknown argument: bogus \(see pibake --help\)$/);
  }, 60_000);
});
