/**
 * The shipped roles rendered by the real engine and checked by the real programs: haproxy -c,
 * nginx -t, sh -n, python3 -m py_compile, and the rendered ownership script run on real files.
 */
import { execa } from 'execa';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RenderedNode } from '../../builder/render/types.ts';
import { clusterInventory, entryMode, fileText, renderedCluster, writeRoot } from '../helpers/roles.ts';

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

async function renderAll(nodeCount: number, dirName: string): Promise<Map<string, RenderedNode>> {
  const dir = path.join(tmp, dirName);
  await mkdir(dir);
  const inventory = clusterInventory(dir, {
    nodeCount, network: { cidr: '10.0.0.0/24', prefixLength: 24, gateway: '10.0.0.1', prefix: '10.0.0' },
  });
  const cluster = await renderedCluster(inventory);
  const out = new Map<string, RenderedNode>();
  for (const n of inventory.nodes) out.set(n.name, await cluster.render(n.name));
  return out;
}

describe('shipped roles', () => {
  it('haproxy -c accepts the 4-node load balancer config, which routes to every web node', async () => {
    const nodes = await renderAll(4, 'four');
    const lb = nodes.get('lb') as RenderedNode;
    const root = await writeRoot(lb, path.join(tmp, 'four-lb'));
    const cfgPath = path.join(root, 'etc/haproxy/haproxy.cfg');
    const check = await execa('haproxy', ['-c', '-f', cfgPath], { reject: false, all: true });
    expect(check.exitCode, check.all).toBe(0);
    const cfg = fileText(lb, '/etc/haproxy/haproxy.cfg');
    expect(haproxyServers(cfg, 'backend web').map((s) => s[0])).toEqual(['db1', 'db2', 'db3']);
    expect(haproxyServers(cfg, 'listen postgresql-write')).toEqual([['db1', '10.0.0.11:5432', 'check port 80']]);
    const read = haproxyServers(cfg, 'listen postgresql-read');
    expect(read.map((s) => s[1])).toEqual(['10.0.0.12:5432', '10.0.0.13:5432', '10.0.0.11:5432']);
    expect(read[2]?.[2]).toBe('backup track postgresql-write/db1');
    expect(cfg).toMatch(/^\s+option httpchk GET \/primary$/m);
    expect(cfg).toMatch(/^\s+option httpchk GET \/replica$/m);
  });

  it('haproxy -c accepts the 7-node config: six web backends; the file holds the stats password, so it is 0640 root:haproxy', async () => {
    const nodes = await renderAll(7, 'seven');
    const lb = nodes.get('lb') as RenderedNode;
    const root = await writeRoot(lb, path.join(tmp, 'seven-lb'));
    const check = await execa('haproxy', ['-c', '-f', path.join(root, 'etc/haproxy/haproxy.cfg')], { reject: false, all: true });
    expect(check.exitCode, check.all).toBe(0);
    const cfg = fileText(lb, '/etc/haproxy/haproxy.cfg');
    const web = haproxyServers(cfg, 'backend web');
    expect(web).toHaveLength(6);
    expect(web.map((s) => s[1])).toEqual(['11', '12', '13', '14', '15', '16'].map((d) => `10.0.0.${d}:80`));
    expect(haproxyServers(cfg, 'listen postgresql-read')).toHaveLength(6); // five replicas + the primary as backup
    const stats = /^\s+stats auth stats:(\S+)$/m.exec(cfg);
    expect(stats?.[1]).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(entryMode(lb, '/etc/haproxy/haproxy.cfg')).toBe(0o640);
    expect(fileText(lb, '/etc/pibake/ownership.list')).toContain('/etc/haproxy/haproxy.cfg root haproxy 0640\n');
  });

  it('nginx -t accepts the web site next to Debian\'s default site (first boot), and the setup script then disables the default', async () => {
    const nodes = await renderAll(4, 'nginx');
    const debianDefault = await readFile('/etc/nginx/sites-available/default', 'utf8').catch(() =>
      'server {\n listen 80 default_server;\n listen [::]:80 default_server;\n root /var/www/html;\n server_name _;\n}\n');
    for (const name of ['db1', 'db2']) {
      const node = nodes.get(name) as RenderedNode;
      const root = await writeRoot(node, path.join(tmp, `nginx-${name}`));
      // A stand-in for /etc/nginx as the nginx package leaves it: its default site enabled.
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
      const link = node.rootEntries.find((e) => e.path === '/etc/nginx/sites-enabled/pibake');
      expect(link?.kind === 'symlink' ? link.target : undefined).toBe('/etc/nginx/sites-available/pibake');
      expect(fileText(node, '/etc/nginx/sites-available/pibake')).toMatch(/proxy_pass http:\/\/127\.0\.0\.1:8080;/);
    }
  });

  it('every rendered shell script parses (sh -n, bash -n), the demo app compiles, secrets sit in 0600 files', async () => {
    const nodes = await renderAll(4, 'scripts');
    for (const node of nodes.values()) {
      const root = await writeRoot(node, path.join(tmp, `scripts-${node.node}`));
      const scripts = node.rootEntries.filter((e) => e.kind === 'file' && e.path.startsWith('/usr/local/lib/pibake/'));
      expect(scripts.length).toBeGreaterThan(0);
      for (const script of scripts) {
        expect(script.mode, script.path).toBe(0o755);
        const file = path.join(root, script.path);
        const check = script.path.endsWith('.py')
          ? await execa('python3', ['-c', 'import ast,sys; ast.parse(open(sys.argv[1]).read())', file], { reject: false, all: true })
          // Parsed by the interpreter its #! line names (firstboot.sh is bash, role scripts are sh).
          : await execa(/^#!\/bin\/bash\b/.test(await readFile(file, 'utf8')) ? 'bash' : 'sh', ['-n', file], { reject: false, all: true });
        expect(check.exitCode, `${node.node}:${script.path}: ${check.all}`).toBe(0);
      }
    }
    const replica = nodes.get('db2') as RenderedNode;
    expect(entryMode(replica, '/etc/pibake/postgresql/replication.pgpass')).toBe(0o600);
    expect(fileText(replica, '/etc/pibake/ownership.list'))
      .toContain('/etc/pibake/postgresql/replication.pgpass postgres postgres 0600\n');
    expect(fileText(replica, '/etc/pibake/postgresql/replication.pgpass')).toMatch(/^10\.0\.0\.11:5432:replication:replicator:\S{20,}\n$/);
    const primary = nodes.get('db1') as RenderedNode;
    expect(entryMode(primary, '/etc/pibake/postgresql/primary-setup.sql')).toBe(0o600);
    for (const node of [primary, replica]) {
      for (const user of ['pibake_web', 'pibake_app']) {
        expect(entryMode(node, `/etc/pibake/web/${user}.password`), `${node.node} ${user}`).toBe(0o600);
        expect(fileText(node, `/etc/pibake/web/${user}.password`)).toMatch(/^[A-Za-z0-9_-]{20,}\n$/);
      }
    }
    // Nothing is baked under the Debian cluster's folders: postgresql-common would refuse to create the cluster.
    for (const node of nodes.values()) {
      expect(node.rootEntries.filter((e) => e.path.startsWith('/etc/postgresql/') || e.path.startsWith('/var/lib/postgresql/'))).toEqual([]);
    }
    const hba = fileText(primary, '/etc/pibake/postgresql/pg_hba.conf');
    expect(hba).toMatch(/^host\s+replication\s+replicator\s+10\.0\.0\.0\/24\s+scram-sha-256$/m);
    expect(fileText(primary, '/etc/pibake/postgresql/pibake.conf')).toMatch(/^listen_addresses = 'localhost,10\.0\.0\.11'$/m);
    expect(fileText(replica, '/usr/local/lib/pibake/replica-bootstrap.sh')).toMatch(/^rendered_version='15'$/m);
  });

  it('the web app\'s unit passes systemd-analyze verify for both generations, and hands over exactly the passwords app.json needs', async () => {
    const dir = path.join(tmp, 'webapp-unit');
    await mkdir(dir);
    const inventory = clusterInventory(dir, { nodeCount: 4, network: { cidr: '10.0.0.0/24', prefixLength: 24, gateway: '10.0.0.1', prefix: '10.0.0' } });
    const cluster = await renderedCluster(inventory);
    const analyze = await execa('systemd-analyze', ['--version'], { reject: false });
    const systemdVersion = Number(/^systemd (\d+)/.exec(analyze.stdout ?? '')?.[1] ?? 0);
    for (const generation of ['bookworm', 'trixie'] as const) {
      for (const name of ['db1', 'db2']) {
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
        expect(app.write).toEqual({ host: '10.0.0.11', port: 5432, user: 'pibake_app' });
        expect(app.read).toEqual({ host: '/var/run/postgresql', port: 5432, user: 'pibake_web' });
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

  it('adding a replica changes the load balancer, never the primary or the other replicas (no re-flash)', async () => {
    const dir = path.join(tmp, 'grow');
    await mkdir(dir);
    const digest = (n: RenderedNode) => JSON.stringify(n.rootEntries.map((e) => [e.path, e.mode, e.kind === 'file' ? e.data.toString('base64') : e.kind === 'symlink' ? e.target : '']));
    const before = await renderedCluster(clusterInventory(dir, { nodeCount: 4 }));
    const after = await renderedCluster(clusterInventory(dir, { nodeCount: 5 })); // same secrets file
    for (const name of ['db1', 'db2', 'db3']) expect(digest(await after.render(name)), name).toBe(digest(await before.render(name)));
    expect(digest(await after.render('lb'))).not.toBe(digest(await before.render('lb')));
  });

  it('on a Trixie base the PostgreSQL version follows Debian (17) and the configs stay valid', async () => {
    const dir = path.join(tmp, 'trixie');
    await mkdir(dir);
    const inventory = clusterInventory(dir, { nodeCount: 4 });
    const cluster = await renderedCluster(inventory);
    const replica = await cluster.render('db2', 'trixie');
    expect(fileText(replica, '/usr/local/lib/pibake/replica-bootstrap.sh')).toMatch(/^rendered_version='17'$/m);
    expect(fileText(replica, '/usr/local/lib/pibake/postgresql-setup.sh')).toMatch(/^rendered_version='17'$/m);
    const lb = await cluster.render('lb', 'trixie');
    const root = await writeRoot(lb, path.join(tmp, 'trixie-lb'));
    const check = await execa('haproxy', ['-c', '-f', path.join(root, 'etc/haproxy/haproxy.cfg')], { reject: false, all: true });
    expect(check.exitCode, check.all).toBe(0);
  });

  it('the rendered ownership script hands files over, is idempotent, and reports what it cannot do', async () => {
    const nodes = await renderAll(4, 'ownership');
    const root = await writeRoot(nodes.get('db2') as RenderedNode, path.join(tmp, 'ownership-db2'));
    const script = path.join(root, 'usr/local/lib/pibake/apply-ownership.sh');
    const files = path.join(tmp, 'ownership-files');
    await mkdir(files);
    await writeFile(path.join(files, 'pgpass'), 'x', { mode: 0o644 });
    await writeFile(path.join(files, 'cfg'), 'y', { mode: 0o600 });
    const list = path.join(files, 'ownership.list');
    await writeFile(list, [
      '# comment', '', `${files}/pgpass postgres postgres 0600`, `${files}/cfg root postgres 0640`, '',
    ].join('\n'));
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
