/**
 * Test helpers for the shipped roles: an inventory on loopback, rendering a node with the real
 * engine (loadRoles + renderNode) into a directory tree, and small process utilities for running
 * the real daemons (PostgreSQL, the demo app) as children of the test.
 */
import { execa } from 'execa';
import { chmod, chown, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultEtcdMembers } from '../../builder/inventory/checks-ha.ts';
import type { Generation, Inventory } from '../../builder/inventory/types.ts';
import { bindBuildId } from '../../builder/render/build-id.ts';
import { selectNodes } from '../../builder/render/project.ts';
import { renderNode } from '../../builder/render/render.ts';
import { loadRoles, type RoleCatalog } from '../../builder/render/roles.ts';
import { loadOrCreateSecrets, type ClusterSecrets } from '../../builder/render/secrets.ts';
import type { RenderedNode } from '../../builder/render/types.ts';

export { waitFor } from './wait.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROLES_DIR = path.resolve(here, '../../roles');
export const OVERLAYS_DIR = path.resolve(here, '../../overlays');
const OPERATOR_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAzBWgULh9SpzEg34Rhct3qPTRY1UYKuFP7D06b1rpaR operator@laptop';
const BUILD_ID = 'c0ffee00'.repeat(8);

/** Major versions of the PostgreSQL server packages installed here (/usr/lib/postgresql/<v>). */
export async function installedPostgresqlVersions(): Promise<number[]> {
  const names = await readdir('/usr/lib/postgresql').catch(() => [] as string[]);
  return names.map(Number).filter((v) => Number.isInteger(v) && v > 0).sort((a, b) => a - b);
}

/**
 * `loadBalancers` lb nodes (default 1: `lb`; more: `lb1`, `lb2`, ... and the floating address
 * `${prefix}.9`), then database nodes db1.. up to `nodeCount` nodes in all. Addresses are
 * `${prefix}.10` onwards: with the default 127.0.0 prefix and a 127.0.0.0/8 cluster network every
 * node address is a loopback address, so rendered files work unchanged against servers started by
 * the tests. etcd runs on the first three database nodes (or the first), as loadInventory decides.
 */
export function clusterInventory(dir: string, opts: {
  nodeCount: number; loadBalancers?: number; postgresqlPort?: number; appPort?: number; postgresqlVersion?: number;
  patroniRestPort?: number; etcdClientPort?: number;
  network?: { cidr: string; prefixLength: number; gateway: string; prefix: string };
}): Inventory {
  const net = opts.network ?? { cidr: '127.0.0.0/8', prefixLength: 8, gateway: '127.0.0.1', prefix: '127.0.0' };
  const lbCount = opts.loadBalancers ?? 1;
  const nodes = Array.from({ length: lbCount }, (_, i) => ({ name: lbCount === 1 ? 'lb' : `lb${i + 1}`, role: 'lb' }));
  for (let i = 1; nodes.length < opts.nodeCount; i++) nodes.push({ name: `db${i}`, role: 'db' });
  const databases = nodes.filter((n) => n.role === 'db').map((n) => n.name);
  return {
    file: path.join(dir, 'cluster.yaml'),
    cluster: { name: 'pitest', domain: 'pitest.lan' },
    network: {
      cidr: net.cidr, prefixLength: net.prefixLength, gateway: net.gateway, dns: [net.gateway], ...(lbCount > 1 ? { vip: `${net.prefix}.9` } : {}),
    },
    base: { path: path.join(dir, 'base.img') },
    admin: { user: 'admin', sshKeys: [OPERATOR_KEY], generateSshKey: false, password: 'none' },
    locale: { timezone: 'UTC', locale: 'en_GB.UTF-8', keyboard: 'gb' },
    nodes: nodes.map((n, i) => ({ ...n, ip: `${net.prefix}.${10 + i}` })),
    roles: {
      postgresql: { version: opts.postgresqlVersion, port: opts.postgresqlPort ?? 5432, database: 'pibake', maxSlotWalKeepSize: '256MB' },
      web: { port: 80, appPort: opts.appPort ?? 8080 },
      lb: { statsPort: 8404, statsUser: 'stats', pgWritePort: 5000, pgReadPort: 5001, vrrpRouterId: 51, monitorPort: 8405 },
      patroni: { loopWait: 2, retryTimeout: 4, synchronousMode: true, failsafeMode: true, restPort: opts.patroniRestPort ?? 8008 },
      etcd: { members: defaultEtcdMembers(databases), clientPort: opts.etcdClientPort ?? 2379, peerPort: 2380 },
    },
    packages: { mirrors: [] },
    warnings: [],
    locations: new Map(),
  };
}

export interface RenderedCluster {
  roles: RoleCatalog;
  secrets: ClusterSecrets;
  render(nodeName: string, generation?: Generation): Promise<RenderedNode>;
}

/** Load the shipped roles and the cluster's secrets (created beside inventory.file). */
export async function renderedCluster(inventory: Inventory): Promise<RenderedCluster> {
  const roles = await loadRoles(ROLES_DIR, OVERLAYS_DIR);
  const secrets = await loadOrCreateSecrets(inventory, roles);
  return {
    roles,
    secrets,
    render: async (nodeName, generation = 'bookworm') => bindBuildId(await renderNode({
      inventory, node: selectNodes(inventory, [nodeName])[0]!, roles, secrets, overlaysDir: OVERLAYS_DIR,
      base: { generation, installedPackages: new Set(['python3', 'openssh-server']) },
    }), BUILD_ID),
  };
}

/** The rendered file at `rootPath`, as text; fails the test when the node has no such file. */
export function fileText(node: RenderedNode, rootPath: string): string {
  const entry = node.rootEntries.find((e) => e.path === rootPath);
  if (!entry || entry.kind !== 'file') throw new Error(`${node.node} has no rendered file ${rootPath}`);
  return entry.data.toString('utf8');
}

export function entryMode(node: RenderedNode, rootPath: string): number | undefined {
  return node.rootEntries.find((e) => e.path === rootPath)?.mode;
}

/**
 * Write a rendered node's root entries under `dir` with their modes (owned by the test user:
 * ownership is handed over by the rendered ownership script, as at first boot). Directories get
 * 0755 so that unprivileged users (postgres) can reach the files, as on the real root filesystem.
 */
export async function writeRoot(node: RenderedNode, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  for (const entry of node.rootEntries) {
    const target = path.join(dir, entry.path);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    if (entry.kind === 'dir') {
      await mkdir(target, { recursive: true });
      await chmod(target, entry.mode);
    } else if (entry.kind === 'file') {
      await writeFile(target, entry.data, { mode: entry.mode });
      await chmod(target, entry.mode);
    } else {
      await symlink(entry.target, target);
    }
  }
  return dir;
}

/** A TCP port nobody listens on at any of `hosts` right now. */
export async function freePort(hosts: string[]): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 30000);
    if ((await Promise.all(hosts.map((h) => canBind(h, port)))).every(Boolean)) return port;
  }
  throw new Error('no free port found');
}

function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}


/**
 * A credentials folder as systemd's LoadCredential= hands it to a DynamicUser service, for `user`:
 * - 'acl' is systemd 257 (trixie): folder and files owned by root and read-only, the user let in
 *   by ACL entries; a file's ACL mask shows as group bits, so `stat` says 0440.
 * - 'owner' is systemd 252 (bookworm, credentials on ramfs, which has no ACLs): files 0400 and the
 *   folder 0500, owned by the user.
 * Needs root (and setfacl from the acl package for 'acl').
 */
export async function credentialsFolder(dir: string, files: Record<string, string>, user: { uid: number; gid: number },
  style: 'acl' | 'owner'): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const [name, text] of Object.entries(files)) {
    const file = path.join(dir, name);
    await writeFile(file, text, { mode: 0o400 });
    if (style === 'acl') await execa('setfacl', ['-m', `u:${user.uid}:r`, file]);
    else await chown(file, user.uid, user.gid);
  }
  await chmod(dir, 0o500);
  if (style === 'acl') await execa('setfacl', ['-m', `u:${user.uid}:rx`, dir]);
  else await chown(dir, user.uid, user.gid);
  return dir;
}
