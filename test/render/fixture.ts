/** Shared fixtures for the render tests: a 7-node inventory object and the fixture roles/overlays. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Inventory } from '../../builder/inventory/types.ts';
import { bindBuildId } from '../../builder/render/build-id.ts';
import { selectNodes } from '../../builder/render/project.ts';
import { renderNode, type RenderInput } from '../../builder/render/render.ts';
import type { RenderedNode } from '../../builder/render/types.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
export const FIXTURE_ROLES = path.resolve(here, '../fixtures/roles');
export const FIXTURE_OVERLAYS = path.resolve(here, '../fixtures/overlays');
export const BUILD_ID = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';
export const OPERATOR_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAzBWgULh9SpzEg34Rhct3qPTRY1UYKuFP7D06b1rpaR operator@laptop';

/** The named node rendered, with BUILD_ID bound as a build binds its own. */
export async function renderNamed(input: Omit<RenderInput, 'node'> & { nodeName: string }, buildId = BUILD_ID): Promise<RenderedNode> {
  const { nodeName, ...rest } = input;
  const [node] = selectNodes(input.inventory, [nodeName]);
  return bindBuildId(await renderNode({ ...rest, node: node! }), buildId);
}

export function sevenNodeInventory(dir: string, overrides: Partial<Inventory> = {}): Inventory {
  return {
    file: path.join(dir, 'cluster.yaml'),
    cluster: { name: 'pilab', domain: 'pilab.lan' },
    network: { cidr: '10.0.0.0/24', prefixLength: 24, gateway: '10.0.0.1', dns: ['10.0.0.1', '9.9.9.9'] },
    base: { path: path.join(dir, 'base.img') },
    admin: { user: 'admin', sshKeys: [OPERATOR_KEY], generateSshKey: true, password: 'generate' },
    locale: { timezone: 'Europe/Berlin', locale: 'en_GB.UTF-8', keyboard: 'gb' },
    wifi: { country: 'DE', ssid: 'pilab-wifi', passphrase: 'correct horse battery staple' },
    nodes: [
      { name: 'lb', role: 'lb', ip: '10.0.0.10', mac: 'DC:A6:32:00:00:10' },
      { name: 'db1', role: 'primary', ip: '10.0.0.11' },
      { name: 'db2', role: 'replica', ip: '10.0.0.12' },
      { name: 'db3', role: 'replica', ip: '10.0.0.13' },
      { name: 'web-4', role: 'replica', ip: '10.0.0.14' },
      { name: 'Web5', role: 'replica', ip: '10.0.0.15' },
      { name: 'web6', role: 'replica', ip: '10.0.0.16', mac: 'dc:a6:32:00:00:16' },
    ],
    roles: {
      postgresql: { port: 5432, database: 'app', maxSlotWalKeepSize: '1GB' },
      web: { port: 80, appPort: 8080 },
      lb: { statsPort: 8404, statsUser: 'stats', pgWritePort: 5000, pgReadPort: 5001, vrrpRouterId: 51, monitorPort: 8405 },
      patroni: { loopWait: 2, retryTimeout: 4, synchronousMode: true, failsafeMode: true, restPort: 8008 },
      etcd: { members: ['db1', 'db2', 'db3'], clientPort: 2379, peerPort: 2380 },
    },
    packages: { mirrors: [] },
    warnings: [],
    locations: new Map(),
    ...overrides,
  };
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pibake-render-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A typical Raspberry Pi OS Lite package set (trimmed), as the build passes the base's facts. */
export const LITE_PACKAGES = new Set(['openssh-server', 'cloud-init', 'python3', 'sudo', 'network-manager', 'systemd']);
