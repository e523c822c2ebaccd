/**
 * The shipped roles rendered by the real engine and checked by the real programs: haproxy -c,
 * keepalived -t, patroni --validate-config (bookworm's Patroni 3.0 and trixie's 4.0), nginx -t,
 * sh -n / bash -n, python3 -m py_compile, and the rendered ownership script run on real files.
 */
import { execa } from 'execa';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { load } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Inventory } from '../../builder/inventory/types.ts';
import type { RenderedNode } from '../../builder/render/types.ts';
import {
  clusterInventory, entryMode, fileText, freePort, installedPostgresqlVersions, renderedCluster, writeRoot,
} from '../helpers/roles.ts';
import { validateWithTrixiePatroni } from '../helpers/trixie-patroni.ts';

const isRoot = process.getuid?.() === 0;
const TEN = { cidr: '10.0.0.0/24', prefixLength: 24, gateway: '10.0.0.1', prefix: '10.0.0' };

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'pibake-roles-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** `server` lines of one haproxy section: [name, address, rest of the line]. */
function haproxyServers(cfg: string, section: string): string[][] {
  const lines = cfg.split('\n');
  const start = lines.findIndex((l) => l.trim() === section);
  if (start < 0) throw new Error(`no section "${section}"`);
  const servers: string[][] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^\S/.test(line)) break; // next section
    const m = /^\s+server\s+(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (m) servers.push([m[1] as string, m[2] as string, m[3] as string]);
  }
  return servers;
}

async function renderAll(inventory: Inventory, generation: 'bookworm' | 'trixie' = 'bookworm'): Promise<Map<string, RenderedNode>> {
  const cluster = await renderedCluster(inventory);
  const out = new Map<string, RenderedNode>();
  for (const n of inventory.nodes) out.set(n.name, await cluster.render(n.name, generation));
  return out;
}

async function dirOf(name: string): Promise<string> {
  const d = path.join(tmp, name);
  await mkdir(d, { recursive: true });
  return d;
}

async function haproxyCheck(node: RenderedNode, name: string): Promise<string> {
  const root = await writeRoot(node, path.join(tmp, name));
  const check = await execa('haproxy', ['-c', '-f', path.join(root, 'etc/haproxy/haproxy.cfg')], { reject: false, all: true });
  expect(check.exitCode, check.all).toBe(0);
  return fileText(node, '/etc/haproxy/haproxy.cfg');
}

/** keepalived -t on the rendered file, its check script's path moved into the written root. */
async function keepalivedCheck(node: RenderedNode, name: string): Promise<{ exitCode: number; log: string }> {
  const root = await writeRoot(node, path.join(tmp, name));
  const conf = fileText(node, '/etc/keepalived/keepalived.conf').replace('"/usr/local/lib/pibake/', `"${root}/usr/local/lib/pibake/`);
  const file = path.join(root, 'keepalived-test.conf');
  await writeFile(file, conf, { mode: 0o600 });
  const log = path.join(root, 'keepalived-test.log');
  const result = await execa('keepalived', [`--config-test=${log}`, '-f', file], { reject: false, all: true });
  return { exitCode: result.exitCode ?? -1, log: `${result.all ?? ''}${await readFile(log, 'utf8').catch(() => '')}` };
}

describe('load balancer role', () => {
  it('haproxy -c accepts the 5-node config: web backends, and every database node on the write and read ports, checked on Patroni\'s REST API with OPTIONS', async () => {
    const nodes = await renderAll(clusterInventory(await dirOf('five'), { nodeCount: 5, loadBalancers: 2, network: TEN }));
    const cfg = await haproxyCheck(nodes.get('lb1') as RenderedNode, 'five-lb1');
    expect(haproxyServers(cfg, 'backend web').map((s) => s[0])).toEqual(['db1', 'db2', 'db3']);
    expect(haproxyServers(cfg, 'listen postgresql-write')).toEqual(['12', '13', '14'].map((d, i) => [`db${i + 1}`, `10.0.0.${d}:5432`, 'check port 8008']));
    const read = haproxyServers(cfg, 'listen postgresql-read');
    expect(read.map((s) => `${s[0]} ${s[2]}`)).toEqual([
      'db1 check port 8008 on-marked-up shutdown-backup-sessions', 'db2 check port 8008 on-marked-up shutdown-backup-sessions',
      'db3 check port 8008 on-marked-up shutdown-backup-sessions', 'db1-primary backup track postgresql-write/db1',
      'db2-primary backup track postgresql-write/db2', 'db3-primary backup track postgresql-write/db3',
    ]);
    expect(cfg).toMatch(/^\s+option httpchk OPTIONS \/primary$/m);
    expect(cfg).toMatch(/^\s+option httpchk OPTIONS \/replica$/m);
    expect(cfg).not.toMatch(/httpchk GET \/(primary|replica)/); // GET floods Patroni's log (ha-notes pitfall 1)
    expect(cfg).toMatch(/^frontend monitor\n\s+bind 127\.0\.0\.1:8405\n\s+monitor-uri \/alive$/m);
    // Both load balancers carry the same HAProxy configuration (only the header names the node).
    const other = fileText(nodes.get('lb2') as RenderedNode, '/etc/haproxy/haproxy.cfg');
    expect(other.split('\n').slice(1)).toEqual(cfg.split('\n').slice(1));
  });

  it('haproxy -c accepts the 7-node config: six web backends; the file holds the stats password, so it is 0640 root:haproxy', async () => {
    const nodes = await renderAll(clusterInventory(await dirOf('seven'), { nodeCount: 7, network: TEN }));
    const lb = nodes.get('lb') as RenderedNode;
    const cfg = await haproxyCheck(lb, 'seven-lb');
    expect(haproxyServers(cfg, 'backend web').map((s) => s[1])).toEqual(['11', '12', '13', '14', '15', '16'].map((d) => `10.0.0.${d}:80`));
    expect(haproxyServers(cfg, 'listen postgresql-read')).toHaveLength(12); // six checked on /replica, six backups following /primary
    expect(/^\s+stats auth stats:(\S+)$/m.exec(cfg)?.[1]).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(entryMode(lb, '/etc/haproxy/haproxy.cfg')).toBe(0o640);
    expect(fileText(lb, '/etc/pibake/ownership.list')).toContain('/etc/haproxy/haproxy.cfg root haproxy 0640\n');
  });

  it.skipIf(!isRoot)('keepalived -t accepts each load balancer\'s keepalived.conf: priority by inventory order, nopreempt, the other load balancers as peers', async () => {
    const inventory = clusterInventory(await dirOf('vrrp'), { nodeCount: 6, loadBalancers: 3, network: TEN });
    const nodes = await renderAll(inventory);
    const cluster = await renderedCluster(inventory);
    const lbs = ['lb1', 'lb2', 'lb3'];
    for (const [i, name] of lbs.entries()) {
      const node = nodes.get(name) as RenderedNode;
      const check = await keepalivedCheck(node, `vrrp-${name}`);
      expect(check.exitCode, check.log).toBe(0);
      expect(check.log).toBe('');
      const conf = fileText(node, '/etc/keepalived/keepalived.conf');
      expect(conf).toMatch(new RegExp(`^\\s+priority ${150 - i}$`, 'm'));
      expect(conf).toMatch(/^\s+state BACKUP\n\s+nopreempt$/m);
      expect(conf).toMatch(/^\s+virtual_router_id 51$/m);
      expect(conf).toMatch(/^\s+10\.0\.0\.9\/24 dev eth0$/m);
      expect(conf).toMatch(new RegExp(`^\\s+unicast_src_ip ${inventory.nodes[i]?.ip}$`, 'm'));
      const peers = /unicast_peer \{\n([^}]*)\}/.exec(conf)?.[1]?.trim().split(/\s+/);
      expect(peers).toEqual(inventory.nodes.slice(0, 3).filter((_, j) => j !== i).map((n) => n.ip));
      // keepalived reads 8 characters of the password: the rendered file has exactly those of the secret.
      expect(/auth_pass (\S+)/.exec(conf)?.[1]).toBe(cluster.secrets.values.vrrp_password?.slice(0, 8));
      expect(entryMode(node, '/etc/keepalived/keepalived.conf')).toBe(0o600);
    }
  });

  it.skipIf(!isRoot)('keepalived -t catches a broken file (the oracle can fail)', async () => {
    const nodes = await renderAll(clusterInventory(await dirOf('vrrp-bad'), { nodeCount: 5, loadBalancers: 2, network: TEN }));
    const node = nodes.get('lb1') as RenderedNode;
    const broken = { ...node, rootEntries: node.rootEntries.map((e) => (e.path === '/etc/keepalived/keepalived.conf' && e.kind === 'file'
      ? { ...e, data: Buffer.from(e.data.toString('utf8').replace('advert_int 1', 'advert_intervall 1')) } : e)) };
    const check = await keepalivedCheck(broken, 'vrrp-bad-lb1');
    expect(check.exitCode).not.toBe(0);
    expect(check.log).toMatch(/Unknown keyword 'advert_intervall'/);
  });

  it('one load balancer without network.vip: keepalived.conf is empty, so Debian\'s keepalived.service (ConditionFileNotEmpty) stays off', async () => {
    const nodes = await renderAll(clusterInventory(await dirOf('single'), { nodeCount: 4, network: TEN }));
    const lb = nodes.get('lb') as RenderedNode;
    expect(fileText(lb, '/etc/keepalived/keepalived.conf').trim()).toBe('');
    expect(fileText(lb, '/etc/haproxy/haproxy.cfg')).toMatch(/Clients reach it on 10\.0\.0\.10\./);
    expect(fileText(nodes.get('db1') as RenderedNode, '/etc/pibake/postgresql/db-bootstrap.sql')).toContain('(10.0.0.10:5000)');
  });

  it('keepalived is restarted whenever it dies, and checks HAProxy with a bash script of its own', async () => {
    const nodes = await renderAll(clusterInventory(await dirOf('units'), { nodeCount: 5, loadBalancers: 2, network: TEN }));
    const lb = nodes.get('lb1') as RenderedNode;
    const dropIn = fileText(lb, '/etc/systemd/system/keepalived.service.d/50-pibake.conf');
    expect(dropIn).toMatch(/^Restart=always$/m);
    const script = fileText(lb, '/usr/local/lib/pibake/chk-haproxy.sh');
    expect(script.split('\n')[0]).toBe('#!/bin/bash');
    expect(script).toContain('/dev/tcp/127.0.0.1/8405');
    expect(entryMode(lb, '/usr/local/lib/pibake/chk-haproxy.sh')).toBe(0o755);
  });
});

describe('database role', () => {
  /** Patroni's validator connects to every etcd host: stand-in listeners on their addresses (loopback). */
  async function withEtcdListeners<T>(hosts: string[], fn: () => Promise<T>): Promise<T> {
    const servers = await Promise.all(hosts.map((host) => new Promise<net.Server>((resolve, reject) => {
      const [ip, port] = host.split(':');
      const server = net.createServer((socket) => socket.destroy());
      server.once('error', reject);
      server.listen(Number(port), ip, () => resolve(server));
    })));
    try {
      return await fn();
    } finally {
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    }
  }

  /** Loopback node addresses (127.0.0.1x), free ports: the validator checks that listen addresses are free. */
  async function loopbackInventory(name: string, version: number): Promise<Inventory> {
    const hosts = ['127.0.0.1', '127.0.0.11', '127.0.0.12', '127.0.0.13'];
    return clusterInventory(await dirOf(name), {
      nodeCount: 5, loadBalancers: 2, postgresqlVersion: version,
      postgresqlPort: await freePort(hosts), patroniRestPort: await freePort(hosts), etcdClientPort: await freePort(hosts),
    });
  }

  it('patroni --validate-config (bookworm\'s Patroni 3.0) accepts every database node\'s config.yml; Patroni reads etcd\'s v2 API there', async () => {
    const [version] = (await installedPostgresqlVersions()).slice(-1);
    if (!version) throw new Error('no PostgreSQL server installed (apt-get install postgresql)');
    const inventory = await loopbackInventory('patroni3', version);
    const nodes = await renderAll(inventory);
    const db1 = load(fileText(nodes.get('db1') as RenderedNode, '/etc/patroni/config.yml')) as Record<string, Record<string, unknown>>;
    const hosts = (db1.etcd as { hosts: string[] }).hosts;
    expect(db1.etcd3).toBeUndefined();
    await withEtcdListeners(hosts, async () => {
      for (const name of ['db1', 'db2', 'db3']) {
        const node = nodes.get(name) as RenderedNode;
        const root = await writeRoot(node, path.join(tmp, `patroni3-${name}`));
        const check = await execa('patroni', ['--validate-config', path.join(root, 'etc/patroni/config.yml')], { reject: false, all: true });
        expect(check.exitCode, `${name}: ${check.all}`).toBe(0);
        expect(entryMode(node, '/etc/patroni/config.yml')).toBe(0o600);
        expect(fileText(node, '/etc/pibake/ownership.list')).toContain('/etc/patroni/config.yml postgres postgres 0600\n');
      }
    });
    expect((db1.bootstrap as { dcs: Record<string, unknown> }).dcs).toMatchObject({ ttl: 10, loop_wait: 2, retry_timeout: 4, synchronous_mode: true, failsafe_mode: true });
    // The validator itself can fail: with no etcd listening it refuses the same file.
    const root = await writeRoot(nodes.get('db1') as RenderedNode, path.join(tmp, 'patroni3-no-etcd'));
    const refused = await execa('patroni', ['--validate-config', path.join(root, 'etc/patroni/config.yml')], { reject: false, all: true });
    expect(refused.exitCode).not.toBe(0);
    expect(refused.all).toMatch(/is not reachable/);
  });

  it('patroni --validate-config of trixie\'s Patroni 4.0 accepts the trixie config (etcd v3, ttl 20) and refuses the bookworm ttl of 10', async () => {
    const [version] = (await installedPostgresqlVersions()).slice(-1);
    if (!version) throw new Error('no PostgreSQL server installed (apt-get install postgresql)');
    // PostgreSQL as installed here (the validator looks for its binaries); everything else as on trixie.
    const inventory = await loopbackInventory('patroni4', version);
    const trixie = (await renderAll(inventory, 'trixie')).get('db2') as RenderedNode;
    const config = load(fileText(trixie, '/etc/patroni/config.yml')) as Record<string, Record<string, unknown>>;
    expect(config.etcd).toBeUndefined();
    expect((config.bootstrap as { dcs: { ttl: number } }).dcs.ttl).toBe(20);
    const hosts = (config.etcd3 as { hosts: string[] }).hosts;
    const bookworm = (await renderAll(inventory, 'bookworm')).get('db2') as RenderedNode;
    await withEtcdListeners(hosts, async () => {
      const root = await writeRoot(trixie, path.join(tmp, 'patroni4-db2'));
      const check = await validateWithTrixiePatroni(path.join(root, 'etc/patroni/config.yml'));
      expect(check.version).toMatch(/^patroni 4\.0\./);
      expect(check.exitCode, check.all).toBe(0);
      const old = await writeRoot(bookworm, path.join(tmp, 'patroni4-bookworm-db2'));
      const refused = await validateWithTrixiePatroni(path.join(old, 'etc/patroni/config.yml'));
      expect(refused.exitCode).not.toBe(0);
      expect(refused.all).toMatch(/bootstrap\.dcs\.ttl 10 didn't pass validation/);
    });
  }, 600_000);

  it('on trixie a ttl below 20 is refused in one line with its location; bookworm takes it', async () => {
    const inventory = clusterInventory(await dirOf('ttl'), { nodeCount: 4, network: TEN });
    inventory.roles.patroni.ttl = 12;
    inventory.locations.set('roles.patroni.ttl', { file: inventory.file, line: 40, column: 10 });
    const cluster = await renderedCluster(inventory);
    await expect(cluster.render('db1', 'trixie')).rejects.toThrow(/roles\.patroni\.ttl 12 is below 20, the least the trixie base's Patroni accepts/);
    expect(fileText(await cluster.render('db1', 'bookworm'), '/etc/patroni/config.yml')).toMatch(/^ {4}ttl: 12$/m);
  });

  it('etcd runs only on its members, only after pibake-etcd-setup, never started by the package; Debian\'s default cluster is not made', async () => {
    const nodes = await renderAll(clusterInventory(await dirOf('etcd-units'), { nodeCount: 6, loadBalancers: 2, network: TEN }));
    for (const name of ['db1', 'db4']) {
      const node = nodes.get(name) as RenderedNode;
      expect(fileText(node, '/etc/systemd/system/etcd.service.d/50-pibake.conf')).toMatch(/^ConditionPathExists=\/var\/lib\/pibake\/etcd\/join\.env$/m);
      expect(fileText(node, '/etc/postgresql-common/createcluster.d/50-pibake.conf')).toMatch(/^create_main_cluster = false$/m);
      expect(entryMode(node, '/etc/default/etcd')).toBe(0o600); // the cluster token
      // Nothing is baked where postgresql-common would look for an existing cluster.
      expect(node.rootEntries.filter((e) => e.path.startsWith('/etc/postgresql/') || e.path.startsWith('/var/lib/postgresql/'))).toEqual([]);
    }
    expect(fileText(nodes.get('db1') as RenderedNode, '/etc/default/etcd')).toMatch(/^ETCD_NAME=db1$/m);
    expect(fileText(nodes.get('db4') as RenderedNode, '/etc/default/etcd')).toMatch(/db4 is not an etcd member \(roles\.etcd\.members: db1, db2, db3\)/);
    // postgresql-common reads the drop-in through createcluster.conf's include_dir (pg_conftool as the package's postinst does).
    const conf = path.join(tmp, 'etcd-units-createcluster');
    await mkdir(path.join(conf, 'createcluster.d'), { recursive: true });
    await writeFile(path.join(conf, 'createcluster.conf'), `include_dir '${conf}/createcluster.d'\n`);
    await writeFile(path.join(conf, 'createcluster.d/50-pibake.conf'), fileText(nodes.get('db1') as RenderedNode, '/etc/postgresql-common/createcluster.d/50-pibake.conf'));
    const show = await execa('pg_conftool', [path.join(conf, 'createcluster.conf'), 'show', '-bs', 'create_main_cluster']);
    expect(show.stdout.trim()).toBe('off');
  });

  it('nginx -t accepts the web site next to Debian\'s default site (first boot), and the setup script then disables the default', async () => {
    const nodes = await renderAll(clusterInventory(await dirOf('nginx'), { nodeCount: 4, network: TEN }));
    const debianDefault = await readFile('/etc/nginx/sites-available/default', 'utf8').catch(() =>
      'server {\n listen 80 default_server;\n listen [::]:80 default_server;\n root /var/www/html;\n server_name _;\n}\n');
    for (const name of ['db1', 'db2']) {
      const node = nodes.get(name) as RenderedNode;
      const root = await writeRoot(node, path.join(tmp, `nginx-${name}`));
      const nginxDir = path.join(tmp, `nginx-etc-${name}`);
      await mkdir(path.join(nginxDir, 'sites-available'), { recursive: true });
      await mkdir(path.join(nginxDir, 'sites-enabled'));
      await writeFile(path.join(nginxDir, 'sites-available/default'), debianDefault);
      await writeFile(path.join(nginxDir, 'sites-available/pibake'), fileText(node, '/etc/nginx/sites-available/pibake'));
      await symlink('../sites-available/default', path.join(nginxDir, 'sites-enabled/default'));
      await symlink('../sites-available/pibake', path.join(nginxDir, 'sites-enabled/pibake'));
      await writeFile(path.join(nginxDir, 'nginx.conf'), [
        `pid ${nginxDir}/nginx.pid;`, `error_log ${nginxDir}/error.log;`, 'events {}', 'http {', '  access_log off;',
        ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${nginxDir}/${t};`),
        `  include ${nginxDir}/sites-enabled/*;`, '}', '',
      ].join('\n'));
      const both = await execa('nginx', ['-t', '-c', path.join(nginxDir, 'nginx.conf')], { reject: false, all: true });
      expect(both.exitCode, both.all).toBe(0);
      expect(both.all).not.toMatch(/\[warn\]|\[emerg\]/);
      for (let run = 0; run < 2; run++) {
        const setup = await execa(path.join(root, 'usr/local/lib/pibake/web-setup.sh'), [], {
          env: { PIBAKE_NGINX_DIR: nginxDir, PIBAKE_NGINX_RELOAD: 'echo RELOAD' }, reject: false, all: true,
        });
        expect(setup.exitCode, setup.all).toBe(0);
        expect(setup.all).toContain('RELOAD');
        expect(setup.all.includes('disabled the default site')).toBe(run === 0);
      }
      expect(await readdir(path.join(nginxDir, 'sites-enabled'))).toEqual(['pibake']);
    }
  });

  it('the web app\'s unit passes systemd-analyze verify for both generations, and hands over exactly the passwords app.json needs', async () => {
    const dir = await dirOf('webapp-unit');
    const inventory = clusterInventory(dir, { nodeCount: 5, loadBalancers: 2, network: TEN });
    const cluster = await renderedCluster(inventory);
    const analyze = await execa('systemd-analyze', ['--version'], { reject: false });
    const systemdVersion = Number(/^systemd (\d+)/.exec(analyze.stdout ?? '')?.[1] ?? 0);
    for (const generation of ['bookworm', 'trixie'] as const) {
      for (const name of ['db1', 'db2']) { // two of the database nodes (any would do: they are alike)
        const node = await cluster.render(name, generation);
        const unit = fileText(node, '/etc/systemd/system/pibake-webapp.service');
        // Every password the app logs in with comes from a credential named after the user, loaded
        // from a root-only file of the image; nothing points libpq at the credentials folder.
        const app = JSON.parse(fileText(node, '/etc/pibake/web/app.json')) as Record<string, { host: string; port: number; user: string }>;
        const users = [...new Set(['local', 'read', 'write'].map((e) => app[e]?.user))].sort();
        const credentials = [...unit.matchAll(/^LoadCredential=([^:]+):(\S+)$/gm)];
        expect(credentials.map((c) => c[1]).sort()).toEqual(users);
        for (const [, , file] of credentials) expect(entryMode(node, file as string), `${name} ${file}`).toBe(0o600);
        expect(unit).not.toMatch(/PGPASSFILE|%d\//);
        // Writes and reads go through the load balancers' ports on the floating address; /primary and
        // /replica ask this node's own PostgreSQL.
        expect(app.write).toEqual({ host: '10.0.0.9', port: 5000, user: 'pibake_app' });
        expect(app.read).toEqual({ host: '10.0.0.9', port: 5001, user: 'pibake_web' });
        expect(app.local).toEqual({ host: '/var/run/postgresql', port: 5432, user: 'pibake_web' });
        expect(unit.includes('RestartSteps=')).toBe(generation === 'trixie'); // systemd >= 254 only
        if (systemdVersion === 0) continue; // no systemd-analyze here
        const file = path.join(dir, generation, name, 'pibake-webapp.service');
        await mkdir(path.dirname(file), { recursive: true });
        await writeFile(file, unit);
        const verify = await execa('systemd-analyze', ['verify', file], { reject: false, all: true });
        expect(verify.exitCode, verify.all).toBe(0);
        // Bookworm's 252 knows every key of its unit; an older systemd-analyze may not know the
        // trixie unit's back-off keys, and nothing else.
        const complaints = (verify.all ?? '').split('\n').filter(Boolean)
          .filter((l) => !(systemdVersion < 254 && /Unknown key '(RestartSteps|RestartMaxDelaySec)'/.test(l)));
        expect(complaints, `${generation} ${name}`).toEqual([]);
      }
    }
  });

  it('a database node added later changes the load balancers (the build names why), never the other database nodes: etcd keeps its three members', async () => {
    const d = await dirOf('grow');
    const digest = (n: RenderedNode) => JSON.stringify(n.rootEntries.map((e) => [e.path, e.mode, e.kind === 'file' ? e.data.toString('base64') : e.kind === 'symlink' ? e.target : '']));
    const before = await renderedCluster(clusterInventory(d, { nodeCount: 5, loadBalancers: 2, network: TEN }));
    const grown = clusterInventory(d, { nodeCount: 6, loadBalancers: 2, network: TEN }); // same secrets file
    expect(grown.roles.etcd.members).toEqual(['db1', 'db2', 'db3']);
    const after = await renderedCluster(grown);
    for (const name of ['db1', 'db2', 'db3']) expect(digest(await after.render(name)), name).toBe(digest(await before.render(name)));
    for (const name of ['lb1', 'lb2']) expect(digest(await after.render(name)), name).not.toBe(digest(await before.render(name)));
    const db4 = await after.render('db4');
    expect(fileText(db4, '/etc/patroni/config.yml')).toMatch(/hosts:\n\s+- 10\.0\.0\.12:2379\n\s+- 10\.0\.0\.13:2379\n\s+- 10\.0\.0\.14:2379\n/);
  });
});

describe('every role', () => {
  it('every rendered script parses (sh -n, bash -n), the demo app compiles, secrets sit in 0600 files', async () => {
    const nodes = await renderAll(clusterInventory(await dirOf('scripts'), { nodeCount: 5, loadBalancers: 2, network: TEN }));
    for (const node of nodes.values()) {
      const root = await writeRoot(node, path.join(tmp, `scripts-${node.node}`));
      const scripts = node.rootEntries.filter((e) => e.kind === 'file' && e.path.startsWith('/usr/local/lib/pibake/'));
      expect(scripts.length).toBeGreaterThan(0);
      for (const script of scripts) {
        expect(script.mode, script.path).toBe(0o755);
        const file = path.join(root, script.path);
        const shebang = (await readFile(file, 'utf8')).split('\n')[0] ?? '';
        const check = script.path.endsWith('.py')
          ? await execa('python3', ['-c', 'import ast,sys; ast.parse(open(sys.argv[1]).read())', file], { reject: false, all: true })
          : await execa(shebang.includes('bash') ? 'bash' : 'sh', ['-n', file], { reject: false, all: true });
        expect(check.exitCode, `${node.node}:${script.path}: ${check.all}`).toBe(0);
      }
    }
    const db1 = nodes.get('db1') as RenderedNode;
    expect(entryMode(db1, '/etc/pibake/postgresql/db-bootstrap.sql')).toBe(0o600);
    expect(fileText(db1, '/etc/pibake/ownership.list')).toContain('/etc/pibake/postgresql/db-bootstrap.sql postgres postgres 0600\n');
  });

  it('the rendered ownership script hands files over, is idempotent, and reports what it cannot do', async () => {
    const nodes = await renderAll(clusterInventory(await dirOf('ownership'), { nodeCount: 4, network: TEN }));
    const root = await writeRoot(nodes.get('db2') as RenderedNode, path.join(tmp, 'ownership-db2'));
    const script = path.join(root, 'usr/local/lib/pibake/apply-ownership.sh');
    const files = path.join(tmp, 'ownership-files');
    await mkdir(files);
    await writeFile(path.join(files, 'pgpass'), 'x', { mode: 0o644 });
    await writeFile(path.join(files, 'cfg'), 'y', { mode: 0o600 });
    const list = path.join(files, 'ownership.list');
    await writeFile(list, ['# comment', '', `${files}/pgpass postgres postgres 0600`, `${files}/cfg root postgres 0640`, ''].join('\n'));
    const { uid, gid } = await execa('id', ['-u', 'postgres']).then(async (u) => ({
      uid: Number(u.stdout), gid: Number((await execa('id', ['-g', 'postgres'])).stdout),
    }));
    for (let run = 0; run < 2; run++) {
      const result = await execa(script, [list], { reject: false, all: true });
      expect(result.exitCode, result.all).toBe(0);
      const pgpass = await stat(path.join(files, 'pgpass'));
      expect([pgpass.uid, pgpass.gid, pgpass.mode & 0o7777]).toEqual([uid, gid, 0o600]);
      const cfg = await stat(path.join(files, 'cfg'));
      expect([cfg.uid, cfg.gid, cfg.mode & 0o7777]).toEqual([0, gid, 0o640]);
    }
    await chmod(path.join(files, 'pgpass'), 0o644);
    await writeFile(list, `${files}/missing postgres postgres 0600\n${files}/pgpass nosuchuser-pibake root 0600\n${files}/cfg root root 0600\n`);
    const failed = await execa(script, [list], { reject: false, all: true });
    expect(failed.exitCode).toBe(1);
    expect(failed.all).toContain('missing does not exist');
    expect((await stat(path.join(files, 'cfg'))).mode & 0o7777).toBe(0o600); // later lines still applied
  });
});
