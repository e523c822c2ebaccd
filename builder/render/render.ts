/**
 * renderNode: everything one node's image needs, as pure data (RenderedNode). Same inputs give
 * byte-identical output: entries are sorted, secrets and their hashes come from the secrets file,
 * and nothing depends on time or the host.
 *
 * SSH host keys: each node gets its own ed25519 host key (from the secrets file) in
 * /etc/ssh/ssh_host_ed25519_key (0600) so the operator's known_hosts is right from the first boot.
 * Raspberry Pi OS would throw them away: raspberrypi-sys-mods ships regenerate_ssh_host_keys.service
 * (Before=ssh.service; runs /usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys, which does
 * `rm -f /etc/ssh/ssh_host_*_key*; ssh-keygen -A` and disables itself) and, on bookworm, the
 * `init=/usr/lib/raspberrypi-sys-mods/firstboot` script calls that same script directly during the
 * first boot. sshswitch.service only enables ssh when /boot/firmware/ssh exists and does not touch
 * keys. pi-gen deletes the build host's keys from the image (stage2/01-sys-tweaks/01-run.sh).
 * So pibake masks the unit (/etc/systemd/system/regenerate_ssh_host_keys.service -> /dev/null), and
 * on bookworm, where the initramfs-less firstboot script bypasses systemd, also keeps a copy in
 * /etc/pibake/ssh/ that firstrun.sh (which runs on the boot after firstboot) restores.
 * On trixie cloud-init is told ssh_deletekeys: false and ssh_genkeytypes: [] (Raspberry Pi's
 * 99_raspberry-pi.cfg already says so).
 */
import { PibakeError } from '../common/errors.ts';
import type { Generation, Inventory, NodeSpec } from '../inventory/types.ts';
import { NODE_FILE, type UnboundNode } from './build-id.ts';
import { buildContext } from './context.ts';
import { collectOverlays, overlayEntries, ownershipList, type OverlayReader } from './overlay.ts';
import type { RoleCatalog } from './roles.ts';
import { GENERATED_SECRET, type ClusterSecrets } from './secrets.ts';
import { firstBootEntries, type PackageSource } from './firstboot.ts';
import { GENERATED_KEYS_DIR, bookwormSeeds, cloudInitSeeds, wifiPsk, type NodeFacts } from './seeds.ts';
import { guardEntries } from './secrets-guard.ts';
import { isSecretBearing, type BootFile, type RootEntry } from './types.ts';

export interface RenderInput {
  inventory: Inventory;
  /** One of inventory.nodes (selectNodes). */
  node: NodeSpec;
  roles: RoleCatalog;
  secrets: ClusterSecrets;
  base: { generation: Generation; installedPackages: ReadonlySet<string> };
  overlaysDir: string;
  /** Reads overlaysDir once for all the nodes rendered from it (Project.overlays); default: a reader of its own. */
  overlays?: OverlayReader;
  /** Where first boot takes the role packages from (default: the card's local repository). */
  packages?: PackageSource;
}

const HOST_KEY = '/etc/ssh/ssh_host_ed25519_key';
/** Paths overlays must leave alone. */
const RESERVED = [/^\/etc\/machine-id$/, /^\/var\/lib\/dbus\/machine-id$/, /^\/boot\/firmware(\/|$)/];
const OWNERSHIP_LIST = '/etc/pibake/ownership.list';

/**
 * The node's files, all but the few that carry its build id: bindBuildId adds those once the id,
 * a digest of this rendering, is known.
 */
export async function renderNode(input: RenderInput): Promise<UnboundNode> {
  const { inventory, roles, secrets, base, node: spec } = input;
  const nodeName = spec.name;
  const role = roles.get(spec.role);
  if (!role) throw new PibakeError(`node "${nodeName}" has role "${spec.role}", which has no file in roles/`, { hint: `known roles: ${[...roles.keys()].join(', ')}` });

  const roleSecrets: Record<string, string> = {};
  for (const name of role.secrets) {
    const value = secrets.values[name];
    if (value === undefined) throw new PibakeError(`secret "${name}" of role "${role.name}" is missing from ${secrets.file}`, { hint: 'load secrets with loadOrCreateSecrets for this inventory and these roles' });
    roleSecrets[name] = value;
  }
  const context = buildContext({ inventory, roles, nodeName, generation: base.generation, installedPackages: base.installedPackages, secrets: roleSecrets });
  const items = await collectOverlays(input.overlaysDir, role, context, input.overlays);
  const { entries: overlay, ownership } = overlayEntries(role, items);

  const hostKey = secrets.hostKeys[nodeName];
  if (!hostKey) throw new PibakeError(`no SSH host key for node "${nodeName}" in ${secrets.file}`, { hint: 'load secrets with loadOrCreateSecrets for this inventory' });
  const adminKeys = [...inventory.admin.sshKeys];
  const generatedAdminKey = secrets.admin.sshKey?.publicKey;
  if (adminKeys.length === 0 && !generatedAdminKey) {
    throw new PibakeError('no SSH key would let the admin log in', { hint: 'set admin.ssh_keys or admin.generate_ssh_key in the inventory', location: { file: inventory.file } });
  }
  const facts: NodeFacts = {
    inventory,
    node: context.node,
    nodes: context.nodes,
    adminKeys,
    generatedAdminKey,
    passwordHash: secrets.admin.passwordHash,
    wifiPassphrase: secrets.wifi?.passphrase,
  };
  const seeds = base.generation === 'trixie' ? cloudInitSeeds(facts) : bookwormSeeds(facts);

  // The public half too: it comes from the secrets file, which a sealed build does not have.
  const hostKeySecret = [GENERATED_SECRET.hostKey];
  const generated: RootEntry[] = [
    fileEntry(HOST_KEY, hostKey.privateKey, 0o600, hostKeySecret),
    fileEntry(`${HOST_KEY}.pub`, `${hostKey.publicKey}\n`, 0o644, hostKeySecret),
    { kind: 'symlink', path: '/etc/systemd/system/regenerate_ssh_host_keys.service', target: '/dev/null', mode: 0o777, uid: 0, gid: 0 },
    // sshd enabled the way `systemctl enable ssh` does it: pi-gen disables ssh unless asked, and
    // nodes must be reachable even if the boot partition's `ssh` flag is not honoured.
    { kind: 'symlink', path: '/etc/systemd/system/multi-user.target.wants/ssh.service', target: '/lib/systemd/system/ssh.service', mode: 0o777, uid: 0, gid: 0 },
    fileEntry('/etc/ssh/sshd_config.d/50-pibake.conf', '# Baked by pibake: key-only logins; the generated cluster admin key is kept in the root filesystem.\n' +
      'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n' +
      `AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 ${GENERATED_KEYS_DIR}/%u\n`, 0o644),
    fileEntry(OWNERSHIP_LIST, ownershipList(ownership), 0o644),
    ...seeds.rootEntries,
    ...firstBootEntries({
      node: nodeName,
      packages: missingPackages(role.packages, base.installedPackages),
      source: input.packages ?? 'card',
      services: role.services,
      firstboot: role.firstboot,
    }),
  ];
  if (base.generation === 'bookworm') {
    generated.push(fileEntry(`/etc/pibake/ssh/ssh_host_ed25519_key`, hostKey.privateKey, 0o600, hostKeySecret));
    generated.push(fileEntry(`/etc/pibake/ssh/ssh_host_ed25519_key.pub`, `${hostKey.publicKey}\n`, 0o644, hostKeySecret));
  }

  const byPath = new Map<string, RootEntry>();
  for (const entry of overlay) {
    const reserved = RESERVED.find((r) => r.test(entry.path));
    if (reserved) {
      throw new PibakeError(`overlays of role "${role.name}" may not provide ${entry.path}`, {
        hint: entry.path.startsWith('/boot/')
          ? 'the boot partition is mounted over /boot/firmware; nothing baked below it would be visible'
          : '/etc/machine-id must stay as the image has it so every card becomes its own machine at first boot',
      });
    }
    byPath.set(entry.path, entry);
  }
  const secretFiles = [...overlay, ...generated].filter(isSecretBearing).map((e) => e.path).sort(compare);
  generated.push(...guardEntries({ node: nodeName, cluster: inventory.cluster.name, generation: base.generation, secretFiles }));
  const claim = (rootPath: string) => {
    if (!byPath.has(rootPath)) return;
    throw new PibakeError(`overlay file ${rootPath} collides with a file pibake generates for node "${nodeName}"`, {
      hint: 'remove it from the overlay; pibake owns this path',
    });
  };
  // The node file is bound after rendering (bindBuildId), but is pibake's all the same.
  claim(NODE_FILE);
  for (const entry of generated) {
    claim(entry.path);
    byPath.set(entry.path, entry);
  }
  const rootEntries = [...byPath.values()].sort((a, b) => compare(a.path, b.path));
  for (const entry of rootEntries) checkEntry(entry);
  checkNothingBelowSymlinks(byPath);
  const bootFiles: BootFile[] = [...seeds.bootFiles].sort((a, b) => compare(a.path, b.path));
  assertNoSecretLeak(nodeName, secrets, rootEntries, bootFiles);
  const nodeFile = {
    node: nodeName, role: role.name, tags: role.tags, cluster: inventory.cluster.name, domain: inventory.cluster.domain,
    fqdn: context.node.fqdn, ip: spec.ip, generation: base.generation,
  };
  return { node: nodeName, role: role.name, rootEntries, bootFiles, bootEdits: seeds.bootEdits, identity: { generation: base.generation, nodeFile } };
}

/** The role's packages the base image does not have, sorted: what first boot installs. */
export function missingPackages(wanted: readonly string[], installed: ReadonlySet<string>): string[] {
  return [...new Set(wanted)].filter((p) => !installed.has(p)).sort();
}

function fileEntry(path: string, data: string, mode: number, secrets?: string[]): RootEntry {
  return { kind: 'file', path, mode, uid: 0, gid: 0, data: Buffer.from(data), ...(secrets ? { secrets } : {}) };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Every root path is absolute and normalised; nothing can name a place outside the root filesystem. */
function checkEntry(entry: RootEntry): void {
  const segs = entry.path.split('/');
  if (!entry.path.startsWith('/') || entry.path === '/' || segs.slice(1).some((s) => s === '' || s === '.' || s === '..')) {
    throw new PibakeError(`refusing root entry with unsafe path "${entry.path}"`);
  }
  if ((entry.mode & ~0o7777) !== 0) throw new PibakeError(`refusing root entry ${entry.path} with invalid mode ${entry.mode.toString(8)}`);
}

/** No entry may be written through a symlink entry (e.g. an overlay symlink /etc/pibake -> …). */
function checkNothingBelowSymlinks(byPath: Map<string, RootEntry>): void {
  for (const entry of byPath.values()) {
    const segs = entry.path.split('/').filter(Boolean);
    for (let i = 1; i < segs.length; i++) {
      const parent = `/${segs.slice(0, i).join('/')}`;
      if (byPath.get(parent)?.kind === 'symlink') {
        throw new PibakeError(`${entry.path} would be written through the symlink ${parent}`, { hint: 'make that overlay path a real folder' });
      }
    }
  }
}

/** Every secret value this cluster has, with a label for messages. */
export function secretValues(secrets: ClusterSecrets): { label: string; value: string }[] {
  const out: { label: string; value: string }[] = [];
  for (const [name, value] of Object.entries(secrets.values)) out.push({ label: `secret ${name}`, value });
  if (secrets.admin.password) out.push({ label: 'admin password', value: secrets.admin.password });
  // A hash is attackable offline: it gets the same protection as the password.
  if (secrets.admin.passwordHash) out.push({ label: 'admin password hash', value: secrets.admin.passwordHash });
  if (secrets.admin.sshKey) out.push({ label: 'admin SSH private key', value: privateKeyBody(secrets.admin.sshKey.privateKey) });
  for (const [node, key] of Object.entries(secrets.hostKeys)) out.push({ label: `host key of ${node}`, value: privateKeyBody(key.privateKey) });
  if (secrets.wifi) {
    out.push({ label: 'Wi-Fi passphrase', value: secrets.wifi.passphrase });
    out.push({ label: 'Wi-Fi PSK', value: wifiPsk(secrets.wifi.ssid, secrets.wifi.passphrase) });
  }
  return out;
}

function privateKeyBody(pem: string): string {
  return pem.split('\n').filter((l) => l && !l.startsWith('-----')).slice(1, 2).join('') || pem;
}

/**
 * The boot partition may hold no secret at all; a root file holding one must be marked
 * secret-bearing (or sealed images would carry it) and must not be readable by others (a role's
 * files: rule must give it e.g. "0600" or "0640").
 */
function assertNoSecretLeak(node: string, secrets: ClusterSecrets, root: RootEntry[], boot: BootFile[]): void {
  const values = secretValues(secrets);
  for (const f of boot) {
    const text = f.data.toString('latin1');
    for (const { label, value } of values) {
      if (text.includes(value)) throw new PibakeError(`${label} would be written to the boot partition file ${f.path} of ${node}`, { hint: 'the boot partition is world-readable FAT; this is a pibake bug' });
    }
  }
  for (const e of root) {
    if (e.kind !== 'file') continue;
    const text = e.data.toString('latin1');
    for (const { label, value } of values) {
      if (!text.includes(value)) continue;
      if (!isSecretBearing(e)) {
        throw new PibakeError(`${e.path} of ${node} contains the ${label} but is not a template that reads it, so a sealed image would carry it`, {
          hint: 'make it a .hbs template that reads the value from {{secrets.NAME}}, or take the value out of the overlay',
        });
      }
      if ((e.mode & 0o007) !== 0) {
        throw new PibakeError(`${e.path} of ${node} contains the ${label} but would be readable by everyone (mode ${e.mode.toString(8).padStart(4, '0')})`, {
          hint: `give it a mode without "other" bits in the role's files: map, e.g. ${e.path}: { mode: "0640" }`,
        });
      }
    }
  }
}
