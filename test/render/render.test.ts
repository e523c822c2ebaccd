/* eslint-disable @typescript-eslint/no-explicit-any -- assertions walk parsed YAML/JSON documents */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { load } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../builder/common/exec.ts';
import type { Generation, Inventory } from '../../builder/inventory/types.ts';
import { secretValues } from '../../builder/render/render.ts';
import { loadRoles, type RoleCatalog } from '../../builder/render/roles.ts';
import { loadOrCreateSecrets, standInSecrets, type ClusterSecrets } from '../../builder/render/secrets.ts';
import { wifiPsk } from '../../builder/render/seeds.ts';
import type { RenderedNode } from '../../builder/render/types.ts';
import { BUILD_ID, FIXTURE_OVERLAYS, FIXTURE_ROLES, LITE_PACKAGES, renderNamed, sevenNodeInventory } from './fixture.ts';

const CMDLINE = 'console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet resize\n';

interface World { dir: string; inventory: Inventory; roles: RoleCatalog; secrets: ClusterSecrets }

async function renderAll(world: World, generation: Generation, installed: ReadonlySet<string> = LITE_PACKAGES): Promise<RenderedNode[]> {
  return Promise.all(world.inventory.nodes.map((n) => renderNamed({
    inventory: world.inventory, nodeName: n.name, roles: world.roles, secrets: world.secrets,
    base: { generation, installedPackages: installed }, overlaysDir: FIXTURE_OVERLAYS,
  })));
}

const text = (node: RenderedNode, p: string): string => {
  const f = node.bootFiles.find((b) => b.path === p) ?? node.rootEntries.find((e) => e.path === p);
  if (!f || !('data' in f)) throw new Error(`${p} missing in ${node.node}`);
  return f.data.toString('utf8');
};

function serialise(nodes: RenderedNode[]): string {
  return JSON.stringify(nodes.map((n) => ({
    ...n,
    rootEntries: n.rootEntries.map((e) => ({ ...e, data: 'data' in e ? e.data.toString('base64') : undefined })),
    bootFiles: n.bootFiles.map((f) => ({ ...f, data: f.data.toString('base64') })),
    bootEdits: n.bootEdits.map((e) => ({ path: e.path, describe: e.describe, result: e.edit(CMDLINE) })),
  })));
}

describe('renderNode', () => {
  let world: World;
  beforeAll(async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pibake-render-'));
    const inventory = sevenNodeInventory(dir);
    const roles = await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS);
    world = { dir, inventory, roles, secrets: await loadOrCreateSecrets(inventory, roles) };
  });
  afterAll(async () => {
    await rm(world.dir, { recursive: true, force: true });
  });

  it('renders a 7-node cluster whose user-data passes cloud-init schema -c', async () => {
    const nodes = await renderAll(world, 'trixie');
    expect(nodes.map((n) => n.node)).toEqual(['lb', 'db1', 'db2', 'db3', 'web-4', 'Web5', 'web6']);
    for (const node of nodes) {
      const file = path.join(world.dir, `${node.node}.user-data`);
      const userData = text(node, 'user-data');
      expect(userData.startsWith('#cloud-config\n')).toBe(true);
      await writeFile(file, userData);
      const result = await runTool('cloud-init', ['schema', '-c', file], { reject: false, all: true });
      expect(result.exitCode, `${node.node}: ${String(result.all)}`).toBe(0);
      expect(String(result.all)).toMatch(/Valid cloud-config/);
      const cfg = load(userData) as Record<string, any>;
      expect(cfg.hostname).toBe(node.node);
      expect(cfg.fqdn).toBe(`${node.node}.pilab.lan`);
      expect(cfg.manage_etc_hosts).toBe(true);
      expect(cfg.ssh_pwauth).toBe(false);
      expect(cfg.disable_root).toBe(true);
      // The hash is in the root filesystem (0600), never in user-data on the world-readable boot partition.
      expect(cfg.users[0]).toMatchObject({ name: 'admin', lock_passwd: true });
      expect(cfg.users[0].hashed_passwd).toBeUndefined();
      expect(userData).not.toContain(world.secrets.admin.passwordHash);
      const hashFile = node.rootEntries.find((e) => e.path === '/etc/pibake/admin-password');
      expect(hashFile).toMatchObject({ kind: 'file', mode: 0o600, uid: 0, gid: 0 });
      expect(text(node, '/etc/pibake/admin-password')).toBe(`admin:${world.secrets.admin.passwordHash}\n`);
      // The generated cluster key comes from the secrets file: root filesystem only, where sshd's
      // AuthorizedKeysFile (50-pibake.conf) finds it, so a sealed build's user-data is the same.
      expect(cfg.users[0].ssh_authorized_keys).toEqual([world.inventory.admin.sshKeys[0]]);
      expect(text(node, '/etc/pibake/ssh/authorized_keys/admin')).toBe(`${world.secrets.admin.sshKey!.publicKey}\n`);
      expect(text(node, '/etc/ssh/sshd_config.d/50-pibake.conf')).toContain('AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 /etc/pibake/ssh/authorized_keys/%u\n');
      const meta = load(text(node, 'meta-data')) as Record<string, string>;
      expect(meta).toEqual({ 'instance-id': `${node.node}-a1b2c3d4e5f6`, 'local-hostname': node.node });
      const role = world.roles.get(node.role)!;
      // Packages and the role setup are pibake-firstboot's, not cloud-init's (one try, no retry).
      expect(cfg.packages).toBeUndefined();
      expect(cfg.package_update).toBe(false);
      expect(cfg.runcmd).toBeUndefined();
      const firstboot = text(node, '/usr/local/lib/pibake/firstboot.sh');
      expect(firstboot).toContain(`PACKAGES=(${role.packages.filter((p) => !LITE_PACKAGES.has(p)).sort().join(' ')})\n`);
      expect(firstboot).toContain(`SERVICES=(${role.services.join(' ')})\n`);
      expect(firstboot).toContain('FIRSTBOOT=(pibake-ownership.service)\n');
      expect(firstboot).toContain('SOURCE=card\n');
      expect(node.rootEntries.find((e) => e.path === '/etc/systemd/system/multi-user.target.wants/pibake-firstboot.service'))
        .toMatchObject({ kind: 'symlink', target: '/etc/systemd/system/pibake-firstboot.service' });
      const hostsTemplate = text(node, '/etc/cloud/templates/hosts.debian.tmpl');
      expect(hostsTemplate.startsWith('## template:jinja\n')).toBe(true);
      // A node names itself, the load balancers and the primary; a load balancer names everyone.
      const tagsOf = (name: string) => world.roles.get(world.inventory.nodes.find((n) => n.name === name)!.role)!.tags;
      for (const other of world.inventory.nodes) {
        const line = `${other.ip}\t${other.name}.pilab.lan ${other.name}\n`;
        const named = tagsOf(node.node).includes('load-balancer') || other.name === node.node ||
          tagsOf(other.name).includes('load-balancer') || tagsOf(other.name).includes('postgresql-primary');
        if (named) expect(hostsTemplate).toContain(line);
        else expect(hostsTemplate).not.toContain(line);
      }
    }
  });

  it('asks for no package installation when the base already has every package', async () => {
    const all = new Set([...LITE_PACKAGES, 'haproxy', 'postgresql', 'nginx']);
    const [lb] = await renderAll(world, 'trixie', all);
    const cfg = load(text(lb!, 'user-data')) as Record<string, unknown>;
    expect(cfg.package_update).toBe(false);
    expect(cfg.packages).toBeUndefined();
    expect(text(lb!, '/usr/local/lib/pibake/firstboot.sh')).toContain('PACKAGES=()\n');
  });

  it('writes network-config that cloud-init itself parses and renders for NetworkManager', async () => {
    const nodes = await renderAll(world, 'trixie');
    const files: string[] = [];
    for (const node of nodes) {
      const file = path.join(world.dir, `${node.node}.network-config`);
      await writeFile(file, text(node, 'network-config'));
      files.push(file);
      const net = (load(text(node, 'network-config')) as { network: Record<string, any> }).network;
      expect(net.version).toBe(2);
      const spec = world.inventory.nodes.find((n) => n.name === node.node)!;
      expect(net.ethernets.eth0).toMatchObject({
        addresses: [`${spec.ip}/24`], routes: [{ to: '0.0.0.0/0', via: '10.0.0.1' }],
        nameservers: { addresses: ['10.0.0.1', '9.9.9.9'], search: ['pilab.lan'] },
      });
      if (spec.mac) expect(net.ethernets.eth0.match).toEqual({ macaddress: spec.mac.toLowerCase() });
      else expect(net.ethernets.eth0.match).toBeUndefined();
      // Wi-Fi is not on the world-readable boot partition: a root-only NetworkManager keyfile.
      expect(net.wifis).toBeUndefined();
      expect(text(node, 'network-config')).not.toContain(wifiPsk('pilab-wifi', world.inventory.wifi!.passphrase));
      const keyfile = node.rootEntries.find((e) => e.path === '/etc/NetworkManager/system-connections/wlan0.nmconnection');
      expect(keyfile).toMatchObject({ kind: 'file', mode: 0o600, uid: 0, gid: 0, secrets: ['wifi_passphrase'] });
      expect(text(node, '/etc/NetworkManager/system-connections/wlan0.nmconnection')).toContain(`psk=${wifiPsk('pilab-wifi', world.inventory.wifi!.passphrase)}\n`);
      expect(node.bootEdits.reduce((t, e) => (e.path === 'cmdline.txt' ? e.edit(t) : t), CMDLINE)).toContain(' cfg80211.ieee80211_regdom=DE');
    }
    // The real parser: cloud-init's network_state (v2) and its NetworkManager renderer.
    const script = `
import json, sys, tempfile, os, yaml
from cloudinit.net import network_state, network_manager
out = {}
for f in sys.argv[1:]:
    ns = network_state.parse_net_config_data(yaml.safe_load(open(f))['network'], skip_broken=False)
    d = tempfile.mkdtemp()
    network_manager.Renderer({}).render_network_state(ns, target=d)
    conn = open(os.path.join(d, 'etc/NetworkManager/system-connections/cloud-init-eth0.nmconnection')).read()
    out[os.path.basename(f)] = {'ifaces': list(ns.iter_interfaces()), 'nm': conn}
print(json.dumps(out, default=str))
`;
    const { stdout } = await runTool('/usr/bin/python3', ['-c', script, ...files]);
    const parsed = JSON.parse(stdout) as Record<string, { ifaces: any[]; nm: string }>;
    for (const spec of world.inventory.nodes) {
      const { ifaces, nm } = parsed[`${spec.name}.network-config`]!;
      const eth0 = ifaces.find((i) => i.name === 'eth0');
      expect(eth0.subnets[0]).toMatchObject({ type: 'static', address: spec.ip, prefix: 24 });
      expect(nm).toContain(`address1=${spec.ip}/24\n`);
      expect(nm).toContain('route1=0.0.0.0/0,10.0.0.1\n');
      expect(nm).toContain('dns=10.0.0.1;9.9.9.9;\n');
      if (spec.mac) expect(nm).toContain(`mac-address=${spec.mac.toUpperCase()}\n`);
    }
  });

  it('computes the WPA PSK like wpa_passphrase (IEEE 802.11i test vector)', () => {
    expect(wifiPsk('IEEE', 'password')).toBe('f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e');
    // A PSK given as 64 hex digits is used as it is, as wpa_supplicant does.
    expect(wifiPsk('IEEE', 'F42C6FC52DF0EBEF9EBB4B90B38A5F902E83FE1B135A70E23AED762E9710A12E')).toBe('f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e');
  });

  it.each(['trixie', 'bookworm'] as const)('puts no secret on the boot partition and only in private root files (%s)', async (generation) => {
    const nodes = await renderAll(world, generation);
    const values = secretValues(world.secrets);
    // Every line of every private key too, so a partial key cannot slip through.
    const needles = [...values];
    for (const key of [world.secrets.admin.sshKey!, ...Object.values(world.secrets.hostKeys)]) {
      for (const line of key.privateKey.split('\n').filter((l) => l && !l.startsWith('-----'))) needles.push({ label: 'private key line', value: line });
    }
    needles.push({ label: 'admin password', value: world.secrets.admin.password! });
    needles.push({ label: 'wifi passphrase', value: world.inventory.wifi!.passphrase });
    expect(needles.length).toBeGreaterThan(20);
    let privateHits = 0;
    for (const node of nodes) {
      for (const f of node.bootFiles) {
        for (const { label, value } of needles) expect(f.data.includes(value), `${label} in boot file ${f.path} of ${node.node}`).toBe(false);
      }
      const edited = node.bootEdits.reduce((t, e) => e.edit(t), CMDLINE);
      for (const { value } of needles) expect(edited.includes(value)).toBe(false);
      for (const e of node.rootEntries) {
        if (e.kind !== 'file') continue;
        for (const { label, value } of needles) {
          if (!e.data.includes(value)) continue;
          privateHits++;
          expect(e.mode & 0o007, `${label} in ${e.path} (mode ${e.mode.toString(8)}) of ${node.node}`).toBe(0);
          if (label !== 'secret haproxy_stats_password' && label !== 'secret replication_password') {
            expect(e.mode, `${label} in ${e.path}`).toBe(0o600);
          }
          expect(label).not.toBe('admin password');
          expect(label).not.toBe('wifi passphrase');
        }
      }
    }
    expect(privateHits).toBeGreaterThan(7); // host keys and role secrets did land, privately
  });

  it.each(['trixie', 'bookworm'] as const)('marks every file made from a secret, and the guard checks exactly those (%s)', async (generation) => {
    const nodes = await renderAll(world, generation);
    const values = secretValues(world.secrets);
    for (const node of nodes) {
      const marked = node.rootEntries.filter((e) => e.kind === 'file' && (e.secrets?.length ?? 0) > 0).map((e) => e.path);
      for (const e of node.rootEntries) {
        if (e.kind !== 'file') continue;
        const holds = values.filter((v) => e.data.includes(v.value)).map((v) => v.label);
        if (holds.length > 0) expect(marked, `${e.path} of ${node.node} holds ${holds.join(', ')}`).toContain(e.path);
      }
      const expected = ['/etc/NetworkManager/system-connections/wlan0.nmconnection', '/etc/pibake/admin-password',
        '/etc/pibake/ssh/authorized_keys/admin', '/etc/ssh/ssh_host_ed25519_key', '/etc/ssh/ssh_host_ed25519_key.pub'];
      if (generation === 'bookworm') expected.push('/etc/pibake/ssh/ssh_host_ed25519_key', '/etc/pibake/ssh/ssh_host_ed25519_key.pub');
      if (node.node === 'lb') expected.push('/etc/haproxy/haproxy.cfg');
      expect(marked.filter((p) => !p.startsWith('/etc/pibake/postgresql') && !p.startsWith('/etc/postgresql')).sort()).toEqual(expected.sort());
      expect(node.rootEntries.find((e) => e.path === '/etc/haproxy/haproxy.cfg')).toSatisfy((e) => !e || ('secrets' in e && e.secrets?.[0] === 'haproxy_stats_password'));
      const guard = text(node, '/usr/local/lib/pibake/secrets-check.sh');
      for (const p of marked) {
        const checked = guard.includes(`'${p}'`);
        expect(checked, `${p} in the guard of ${node.node}`).toBe(!(generation === 'bookworm' && p.startsWith('/etc/ssh/')));
      }
    }
  });

  it('renders from stand-ins without the secrets file: the same files apart from the secret-bearing ones', async () => {
    const real = await renderAll(world, 'trixie');
    const standIn = await renderAll({ ...world, secrets: standInSecrets(world.inventory, world.roles) }, 'trixie');
    const publicPart = (n: RenderedNode) => serialise([{ ...n, rootEntries: n.rootEntries.filter((e) => e.kind !== 'file' || !e.secrets?.length) }]);
    for (const [i, node] of real.entries()) {
      expect(publicPart(standIn[i]!)).toBe(publicPart(node));
      const secretPaths = (n: RenderedNode) => n.rootEntries.filter((e) => e.kind === 'file' && e.secrets?.length).map((e) => `${e.path} ${e.mode}`);
      expect(secretPaths(standIn[i]!)).toEqual(secretPaths(node));
    }
  });

  it('refuses a secret copied into a file that is not a template reading it', async () => {
    const overlays = path.join(world.dir, 'overlays-copied');
    await runTool('cp', ['-a', FIXTURE_OVERLAYS, overlays]);
    await writeFile(path.join(overlays, 'lb/etc/stats.txt'), `stats:${world.secrets.values.haproxy_stats_password}\n`, { mode: 0o600 });
    const roles = await loadRoles(FIXTURE_ROLES, overlays);
    const lbRole = roles.get('lb')!;
    roles.set('lb', { ...lbRole, files: [...lbRole.files, { ...lbRole.files[0]!, pattern: '/etc/stats.txt', matcher: /^\/etc\/stats\.txt$/, mode: 0o600, owner: undefined, group: undefined }] });
    await expect(renderNamed({
      inventory: world.inventory, nodeName: 'lb', roles, secrets: world.secrets,
      base: { generation: 'trixie', installedPackages: LITE_PACKAGES }, overlaysDir: overlays,
    })).rejects.toThrow(/\/etc\/stats\.txt of lb contains the secret haproxy_stats_password but is not a template that reads it/);
  });

  it('refuses a secret in a world-readable root file', async () => {
    const roles: RoleCatalog = new Map([...world.roles].map(([k, v]) => [k, { ...v, files: v.files.filter((f) => !f.pattern.includes('haproxy')) }]));
    await expect(renderNamed({
      inventory: world.inventory, nodeName: 'lb', roles, secrets: world.secrets,
      base: { generation: 'trixie', installedPackages: LITE_PACKAGES }, overlaysDir: FIXTURE_OVERLAYS,
    })).rejects.toThrow(/\/etc\/haproxy\/haproxy\.cfg of lb contains the secret haproxy_stats_password but would be readable by everyone/);
  });

  it('is deterministic, sorted, and bakes host keys, node facts and the ownership list', async () => {
    const a = await renderAll(world, 'trixie');
    const b = await renderAll(world, 'trixie');
    expect(serialise(a)).toBe(serialise(b));
    const lb = a[0]!;
    const paths = lb.rootEntries.map((e) => e.path);
    expect(paths).toEqual([...paths].sort());
    expect(lb.rootEntries.find((e) => e.path === '/etc/ssh/ssh_host_ed25519_key')).toMatchObject({ mode: 0o600, uid: 0, gid: 0 });
    expect(text(lb, '/etc/ssh/ssh_host_ed25519_key.pub')).toBe(`${world.secrets.hostKeys.lb!.publicKey}\n`);
    expect(lb.rootEntries.find((e) => e.path === '/etc/systemd/system/regenerate_ssh_host_keys.service')).toMatchObject({ kind: 'symlink', target: '/dev/null' });
    expect(lb.rootEntries.find((e) => e.path === '/etc/systemd/system/multi-user.target.wants/ssh.service')).toMatchObject({ kind: 'symlink', target: '/lib/systemd/system/ssh.service' });
    expect(lb.bootFiles.map((f) => f.path)).toEqual(['meta-data', 'network-config', 'ssh', 'user-data']);
    expect(text(lb, '/etc/pibake/ownership.list')).toBe('/etc/haproxy/haproxy.cfg root haproxy 0640\n');
    expect(JSON.parse(text(lb, '/etc/pibake/node.json'))).toMatchObject({ node: 'lb', role: 'lb', cluster: 'pilab', buildId: BUILD_ID });
    expect(paths).not.toContain('/etc/machine-id');
    const cfg = text(lb, '/etc/haproxy/haproxy.cfg');
    expect(cfg).toContain(`stats auth stats:${world.secrets.values.haproxy_stats_password}`);
    expect(cfg).toContain('server db1 10.0.0.11:5432');
    expect(text(a[2]!, '/etc/postgresql/pibake.conf')).toContain("primary_slot_name = 'db2'");
    expect(text(a[5]!, '/etc/postgresql/pibake.conf')).toContain("primary_slot_name = 'web5'");
    expect(text(a[1]!, '/etc/postgresql/pibake.conf')).toContain('PostgreSQL 17');
  });

  it('edits cmdline.txt idempotently, replacing an earlier ds= token', async () => {
    const [lb] = await renderAll(world, 'trixie');
    const edit = lb!.bootEdits.find((e) => e.path === 'cmdline.txt')!;
    const once = edit.edit(CMDLINE);
    expect(once).toBe(`${CMDLINE.trim()} ds=nocloud;i=lb-a1b2c3d4e5f6\n`);
    expect(edit.edit(once)).toBe(once);
    expect(edit.edit(CMDLINE.replace('quiet', 'ds=nocloud;i=old-000000000000 quiet'))).toBe(once);
    expect(once.split('\n')).toHaveLength(2);
  });

  it('renders bookworm first-run files that bash and sh accept, without cloud-init seeds', async () => {
    const nodes = await renderAll(world, 'bookworm');
    for (const node of nodes) {
      // No userconf.txt: the password hash stays in the root filesystem (0600), applied at first boot.
      expect(node.bootFiles.map((f) => f.path)).toEqual(['firstrun.sh', 'ssh']);
      expect(text(node, '/etc/pibake/admin-password')).toBe(`admin:${world.secrets.admin.passwordHash}\n`);
      for (const file of node.bootFiles) expect(file.data.toString('utf8')).not.toContain(world.secrets.admin.passwordHash);
      const firstrun = path.join(world.dir, `${node.node}.firstrun.sh`);
      await writeFile(firstrun, text(node, 'firstrun.sh'));
      await runTool('bash', ['-n', firstrun]);
      const firstboot = path.join(world.dir, `${node.node}.firstboot.sh`);
      await writeFile(firstboot, text(node, '/usr/local/lib/pibake/firstboot.sh'));
      await runTool('bash', ['-n', firstboot]);
      const edit = node.bootEdits.find((e) => e.path === 'cmdline.txt')!;
      const once = edit.edit(CMDLINE);
      expect(once).toBe(`${CMDLINE.trim()} systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n`);
      expect(edit.edit(once)).toBe(once);
      const nm = node.rootEntries.find((e) => e.path === '/etc/NetworkManager/system-connections/eth0.nmconnection');
      expect(nm).toMatchObject({ mode: 0o600 });
      const spec = world.inventory.nodes.find((n) => n.name === node.node)!;
      expect(text(node, '/etc/NetworkManager/system-connections/eth0.nmconnection')).toContain(`address1=${spec.ip}/24,10.0.0.1\n`);
      expect(text(node, '/etc/hostname')).toBe(`${node.node}\n`);
      expect(text(node, '/etc/pibake/ssh/ssh_host_ed25519_key')).toBe(world.secrets.hostKeys[node.node]!.privateKey);
      expect(text(node, '/etc/pibake/node.json')).toContain('"generation": "bookworm"');
    }
    expect(text(nodes[1]!, '/etc/postgresql/pibake.conf')).toContain('PostgreSQL 15');
  });

  it('refuses unknown nodes and roles', async () => {
    await expect(renderNamed({
      inventory: world.inventory, nodeName: 'nope', roles: world.roles, secrets: world.secrets,
      base: { generation: 'trixie', installedPackages: LITE_PACKAGES }, overlaysDir: FIXTURE_OVERLAYS,
    })).rejects.toThrow(/no node named nope in /);
  });
});

describe('renderNode refuses overlays that touch reserved paths', () => {
  it.each([['etc/machine-id', /may not provide \/etc\/machine-id/], ['boot/firmware/config.txt', /may not provide \/boot\/firmware\/config\.txt/]])('%s', async (rel, pattern) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pibake-render-'));
    try {
      const inventory = sevenNodeInventory(dir);
      const roles = await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS);
      const secrets = await loadOrCreateSecrets(inventory, roles);
      const overlays = path.join(dir, 'overlays');
      await mkdir(path.join(overlays, 'evil', path.dirname(rel)), { recursive: true });
      await writeFile(path.join(overlays, 'evil', rel), 'x\n');
      roles.set('lb', { ...roles.get('lb')!, overlays: ['evil'], secrets: [] });
      await expect(renderNamed({
        inventory, nodeName: 'lb', roles, secrets, base: { generation: 'trixie', installedPackages: LITE_PACKAGES }, overlaysDir: overlays,
      })).rejects.toThrow(pattern);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('renderNode with a minimal inventory (no password, no wifi, no MAC, nothing to install)', () => {
  it('still yields valid cloud-config with a locked password and no package step', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pibake-render-'));
    try {
      const inventory = sevenNodeInventory(dir, {
        admin: { user: 'ops', sshKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAzBWgULh9SpzEg34Rhct3qPTRY1UYKuFP7D06b1rpaR me@host'], generateSshKey: false, password: 'none' },
        wifi: undefined,
      });
      inventory.nodes = inventory.nodes.map(({ mac: _mac, ...n }) => n);
      const roles = await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS);
      const secrets = await loadOrCreateSecrets(inventory, roles);
      expect(secrets.admin).toEqual({});
      const installed = new Set([...LITE_PACKAGES, 'haproxy', 'postgresql', 'nginx']);
      for (const generation of ['trixie', 'bookworm'] as const) {
        const node = await renderNamed({
          inventory, nodeName: 'db2', roles, secrets, base: { generation, installedPackages: installed }, overlaysDir: FIXTURE_OVERLAYS,
        });
        if (generation === 'bookworm') {
          expect(node.bootFiles.map((f) => f.path)).toEqual(['firstrun.sh', 'ssh']); // no userconf.txt without a hash
          expect(text(node, '/usr/local/lib/pibake/firstboot.sh')).toContain('PACKAGES=()\n');
          continue;
        }
        const file = path.join(dir, 'user-data');
        await writeFile(file, text(node, 'user-data'));
        const result = await runTool('cloud-init', ['schema', '-c', file], { reject: false, all: true });
        expect(result.exitCode, String(result.all)).toBe(0);
        const cfg = load(text(node, 'user-data')) as Record<string, any>;
        expect(cfg.users[0]).toMatchObject({ name: 'ops', lock_passwd: true });
        expect(cfg.users[0].hashed_passwd).toBeUndefined();
        expect(cfg.package_update).toBe(false);
        expect(cfg.packages).toBeUndefined();
        const net = (load(text(node, 'network-config')) as { network: Record<string, any> }).network;
        expect(net.wifis).toBeUndefined();
        expect(net.ethernets.eth0.match).toBeUndefined();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
