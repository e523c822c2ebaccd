/**
 * The cluster's secrets: one YAML file beside the inventory (`<inventory-basename>.secrets.yaml`,
 * mode 0600), generated once from node:crypto's CSPRNG and reused by every later build, so images
 * rebuilt tomorrow still share passwords and host keys with the running cluster. New names are
 * added when roles declare new secrets or new nodes appear; nothing is ever regenerated.
 *
 * It also writes `<cluster>-admin` / `<cluster>-admin.pub` beside the inventory when the inventory
 * asks for a generated admin key, so the operator can `ssh -i cluster-admin admin@node`.
 */
import { randomBytes } from 'node:crypto';
import { chmod, link, lstat, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { dump, load } from 'js-yaml';
import { PibakeError } from '../common/errors.ts';
import { READ_LIMITS, readInputFile } from '../common/read-input.ts';
import { CRYPT_HASH_PATTERN } from '../inventory/schema.ts';
import { parsePublicKey } from '../inventory/ssh-keys.ts';
import type { Inventory } from '../inventory/types.ts';
import { hashForImage } from './crypt.ts';
import type { RoleCatalog } from './roles.ts';
import { generateEd25519, publicFromPrivate, type SshKeyPair } from './ssh-keys.ts';

export interface ClusterSecrets {
  /** Absolute path of the secrets file. */
  file: string;
  /** Role-declared secrets by name (random url-safe passwords). */
  values: Record<string, string>;
  admin: {
    /** Plaintext, only when the inventory says `password: generate`; never baked. */
    password?: string;
    /** Crypt hash baked into images: generated (kept stable) or the inventory's own hash. */
    passwordHash?: string;
    /** Generated admin key pair when `generate_ssh_key` is set. */
    sshKey?: SshKeyPair;
  };
  /** Per-node SSH host keys (ed25519). */
  hostKeys: Record<string, SshKeyPair>;
  /** The inventory's Wi-Fi network: its passphrase is a secret too (it is kept in cluster.yaml). */
  wifi?: { ssid: string; passphrase: string };
}

/**
 * The names pibake's own secret-bearing files are marked with (RootEntry.secrets); role secrets
 * keep the names their role file declares.
 */
export const GENERATED_SECRET = {
  hostKey: 'ssh_host_key',
  adminPassword: 'admin_password',
  adminSshKey: 'admin_ssh_key',
  wifi: 'wifi_passphrase',
} as const;

interface SecretsFile {
  version: 1;
  secrets: Record<string, string>;
  admin: { password?: string; password_hash?: string; ssh_private_key?: string; ssh_public_key?: string };
  host_keys: Record<string, { private: string; public: string }>;
}

export function secretsPath(inventoryFile: string): string {
  const dir = path.dirname(inventoryFile);
  const base = path.basename(inventoryFile).replace(/\.ya?ml$/, '');
  return path.join(dir, `${base}.secrets.yaml`);
}

/** A random password: 32 url-safe characters (192 bits). */
export function randomPassword(): string {
  return randomBytes(24).toString('base64url');
}

export interface SecretsOptions {
  /** Hash a generated admin password with yescrypt (the base's libc checks it); else SHA-512 crypt. */
  yescrypt?: boolean;
}

export async function loadOrCreateSecrets(inventory: Inventory, roles: RoleCatalog, options: SecretsOptions = {}, attempt = 0): Promise<ClusterSecrets> {
  const file = secretsPath(inventory.file);
  const existing = await readSecretsFile(file);
  const data: SecretsFile = existing ?? { version: 1, secrets: {}, admin: {}, host_keys: {} };
  let changed = existing === undefined;

  const usedRoles = new Set(inventory.nodes.map((n) => n.role));
  const names = [...roles.values()].filter((r) => usedRoles.has(r.name)).flatMap((r) => r.secrets);
  for (const name of [...new Set(names)].sort()) {
    if (typeof data.secrets[name] !== 'string' || data.secrets[name] === '') {
      data.secrets[name] = randomPassword();
      changed = true;
    }
  }
  if (inventory.admin.password === 'generate') {
    if (!data.admin.password) {
      data.admin.password = randomPassword();
      delete data.admin.password_hash;
      changed = true;
    }
    if (!data.admin.password_hash) {
      data.admin.password_hash = await hashForImage(data.admin.password, options.yescrypt ?? false);
      changed = true;
    }
  }
  const adminComment = `${inventory.admin.user}@${inventory.cluster.name}`;
  if (inventory.admin.generateSshKey && !data.admin.ssh_private_key) {
    const pair = generateEd25519(adminComment);
    data.admin.ssh_private_key = pair.privateKey;
    data.admin.ssh_public_key = pair.publicKey;
    changed = true;
  }
  for (const node of inventory.nodes) {
    if (!data.host_keys[node.name]?.private) {
      const pair = generateEd25519(`root@${node.name}.${inventory.cluster.domain}`);
      data.host_keys[node.name] = { private: pair.privateKey, public: pair.publicKey };
      changed = true;
    }
  }
  if (existing === undefined) {
    // First creation: publish with link(2), which fails if another build created the file meanwhile;
    // then use that build's secrets so both produce images that agree.
    const created = await createExclusively(file, secretsYaml(inventory, data));
    if (!created) {
      if (attempt > 0) throw new PibakeError(`${file} keeps appearing and vanishing; is another pibake running?`);
      return loadOrCreateSecrets(inventory, roles, options, attempt + 1);
    }
  } else if (changed) await writeAtomically(file, secretsYaml(inventory, data), 0o600);

  const secrets = clusterSecretsFrom(inventory, file, data);
  if (secrets.admin.sshKey) await writeAdminKeyFiles(inventory, secrets.admin.sshKey);
  return secrets;
}

/**
 * The secrets of an existing secrets file, never generating anything: what sealing a card needs.
 * A fresh value would not match the cluster the card joins, so a missing file or a missing entry
 * (for `nodes`, default all) is an error naming what is missing, never a value.
 */
export async function readExistingSecrets(inventory: Inventory, roles: RoleCatalog, nodes = inventory.nodes.map((n) => n.name)): Promise<ClusterSecrets> {
  const file = secretsPath(inventory.file);
  const data = await readSecretsFile(file);
  if (!data) {
    throw new PibakeError(`no secrets file ${file}: adding a node's secrets to its card needs the secrets file the cluster was built with`, {
      hint: 'restore cluster.secrets.yaml from your backup beside the inventory (pibake never makes new secrets for a card)',
    });
  }
  const missing: string[] = [];
  const wanted = inventory.nodes.filter((n) => nodes.includes(n.name));
  const names = new Set(wanted.flatMap((n) => roles.get(n.role)?.secrets ?? []));
  for (const name of [...names].sort()) if (!data.secrets[name]) missing.push(`secrets.${name}`);
  for (const node of wanted) if (!data.host_keys[node.name]?.private) missing.push(`host_keys.${node.name}`);
  if (inventory.admin.password === 'generate' && !data.admin.password_hash) missing.push('admin.password_hash');
  if (inventory.admin.generateSshKey && !data.admin.ssh_private_key) missing.push('admin.ssh_private_key');
  if (missing.length > 0) {
    throw new PibakeError(`${file} lacks ${missing.join(', ')}`, {
      hint: 'use the secrets file the images were built with; a build without --sealed adds what is missing, but then the cluster\'s cards get new values',
    });
  }
  return clusterSecretsFrom(inventory, file, data);
}

/**
 * Stand-ins for every secret the inventory's nodes use, for `pibake build --sealed`: that build
 * never reads cluster.secrets.yaml (CI need not have it), and every file made from these is left out
 * of the image (RootEntry.secrets), so no stand-in reaches a card. Fixed strings, so sealed images
 * are reproducible; each names itself, so one that did slip through would be recognised at once.
 */
export function standInSecrets(inventory: Inventory, roles: RoleCatalog): ClusterSecrets {
  const standIn = (what: string) => `pibake-sealed-stand-in:${what}`;
  const usedRoles = new Set(inventory.nodes.map((n) => n.role));
  const names = [...roles.values()].filter((r) => usedRoles.has(r.name)).flatMap((r) => r.secrets);
  const data: SecretsFile = { version: 1, secrets: {}, admin: {}, host_keys: {} };
  for (const name of names) data.secrets[name] = standIn(name);
  data.admin.password = standIn('admin-password');
  data.admin.password_hash = standIn('admin-password-hash');
  data.admin.ssh_private_key = standIn('admin-ssh-private-key');
  data.admin.ssh_public_key = standIn('admin-ssh-public-key');
  for (const node of inventory.nodes) data.host_keys[node.name] = { private: standIn(`host-key:${node.name}`), public: standIn(`host-key.pub:${node.name}`) };
  return clusterSecretsFrom(inventory, '(none: a sealed build reads no secrets file)', data);
}

function clusterSecretsFrom(inventory: Inventory, file: string, data: SecretsFile): ClusterSecrets {
  const secrets: ClusterSecrets = { file, values: { ...data.secrets }, admin: {}, hostKeys: {} };
  if (inventory.admin.password === 'generate') {
    secrets.admin.password = data.admin.password;
    secrets.admin.passwordHash = data.admin.password_hash;
  } else if (typeof inventory.admin.password === 'object') {
    secrets.admin.passwordHash = inventory.admin.password.hash;
  }
  if (inventory.admin.generateSshKey && data.admin.ssh_private_key) {
    const adminComment = `${inventory.admin.user}@${inventory.cluster.name}`;
    const publicKey = data.admin.ssh_public_key ?? publicFromPrivate(data.admin.ssh_private_key, adminComment);
    secrets.admin.sshKey = { privateKey: data.admin.ssh_private_key, publicKey };
  }
  for (const node of inventory.nodes) {
    const stored = data.host_keys[node.name];
    if (stored) secrets.hostKeys[node.name] = { privateKey: stored.private, publicKey: stored.public };
  }
  if (inventory.wifi) secrets.wifi = { ssid: inventory.wifi.ssid, passphrase: inventory.wifi.passphrase };
  return secrets;
}

/** `<cluster>-admin` (0600) and `.pub` (0644) beside the inventory, rewritten only when they differ. */
export function adminKeyPaths(inventory: Inventory): { privateKey: string; publicKey: string } {
  const base = path.join(path.dirname(inventory.file), `${inventory.cluster.name}-admin`);
  return { privateKey: base, publicKey: `${base}.pub` };
}

async function writeAdminKeyFiles(inventory: Inventory, pair: SshKeyPair): Promise<void> {
  const paths = adminKeyPaths(inventory);
  await syncFile(paths.privateKey, pair.privateKey, 0o600);
  await syncFile(paths.publicKey, `${pair.publicKey}\n`, 0o644);
}

async function syncFile(file: string, content: string, mode: number): Promise<void> {
  const info = await lstat(file).catch(() => undefined);
  if (info?.isSymbolicLink()) throw new PibakeError(`${file} is a symlink; refusing to write a key through it`);
  if (info && !info.isFile()) throw new PibakeError(`${file} is not a regular file`, { hint: 'move it away; pibake writes the cluster admin key there' });
  const current = info ? (await readInputFile(file, 'admin key file', READ_LIMITS.sshKeys)).toString('utf8') : undefined;
  if (current === content) {
    if (info && (info.mode & 0o777) !== mode) await chmod(file, mode);
    return;
  }
  await writeAtomically(file, content, mode);
}

async function readSecretsFile(file: string): Promise<SecretsFile | undefined> {
  const info = await lstat(file).catch(() => undefined);
  if (!info) return undefined;
  if (!info.isFile()) throw new PibakeError(`${file} is not a regular file`, { hint: 'the secrets file must be a plain file' });
  if ((info.mode & 0o077) !== 0) {
    throw new PibakeError(`${file} is readable by others (mode ${(info.mode & 0o777).toString(8).padStart(4, '0')})`, {
      hint: `its secrets may have leaked; check, then run: chmod 600 ${file}`,
    });
  }
  if (typeof process.getuid === 'function' && info.uid !== process.getuid()) {
    throw new PibakeError(`${file} belongs to another user (uid ${info.uid})`, { hint: 'run pibake as the owner of the secrets file' });
  }
  let parsed: unknown;
  try {
    parsed = load((await readInputFile(file, 'the secrets file', READ_LIMITS.secrets)).toString('utf8'));
  } catch (error) {
    if (error instanceof PibakeError) throw error;
    throw new PibakeError(`${file} is not valid YAML`, { hint: 'restore it from backup; deleting it regenerates every secret', cause: error });
  }
  const bad = () => new PibakeError(`${file} does not look like a pibake secrets file`, { hint: 'restore it from backup' });
  if (!isRecord(parsed) || parsed.version !== 1) throw bad();
  const secrets = parsed.secrets ?? {};
  const admin = parsed.admin ?? {};
  const hostKeys = parsed.host_keys ?? {};
  if (!isRecord(secrets) || !isRecord(admin) || !isRecord(hostKeys)) throw bad();
  const strings = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
  const keys: SecretsFile['host_keys'] = {};
  for (const [node, v] of Object.entries(hostKeys)) {
    if (isRecord(v) && typeof v.private === 'string' && typeof v.public === 'string') keys[node] = { private: v.private, public: v.public };
  }
  const data: SecretsFile = { version: 1, secrets: strings(secrets), admin: strings(admin), host_keys: keys };
  checkSecretValues(file, data);
  return data;
}

/**
 * Role secrets go into SQL, pgpass (':' separated), HAProxy's `stats auth user:password` and shell
 * scripts: only characters all of them carry unquoted. What pibake generates is base64url; a hand-
 * edited value with a quote, a colon or a newline would break (or inject into) those files.
 */
const SAFE_SECRET = /^[A-Za-z0-9._~+/=-]{1,256}$/;
const OPENSSH_PRIVATE = /^-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END OPENSSH PRIVATE KEY-----\n?$/;

/** Refuses hand-edited values the images cannot carry safely; the message never shows a value. */
function checkSecretValues(file: string, data: SecretsFile): void {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(data.secrets)) {
    if (!SAFE_SECRET.test(value)) problems.push(`secrets.${name} has characters pibake cannot write safely into SQL, pgpass and HAProxy files`);
  }
  if (data.admin.password_hash !== undefined && !CRYPT_HASH_PATTERN.test(data.admin.password_hash)) problems.push('admin.password_hash is not a crypt hash');
  if (data.admin.password !== undefined && !/^[\x20-\x7e]{1,256}$/.test(data.admin.password)) problems.push('admin.password has control or non-ASCII characters');
  if (data.admin.ssh_private_key !== undefined && !OPENSSH_PRIVATE.test(data.admin.ssh_private_key)) problems.push('admin.ssh_private_key is not an OpenSSH private key');
  for (const [node, pair] of Object.entries(data.host_keys)) {
    if (!OPENSSH_PRIVATE.test(pair.private)) problems.push(`host_keys.${node}.private is not an OpenSSH private key`);
    if (typeof parsePublicKey(pair.public) !== 'string') problems.push(`host_keys.${node}.public is not an SSH public key`);
  }
  if (problems.length > 0) {
    throw new PibakeError(`${file}: ${problems.join('; ')}`, {
      hint: 'restore the file from backup, or delete the damaged entries to have pibake generate them again',
    });
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function secretsYaml(inventory: Inventory, data: SecretsFile): string {
  const sorted = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const body = dump({ version: 1, secrets: sorted(data.secrets), admin: sorted(data.admin), host_keys: sorted(data.host_keys) }, { lineWidth: -1 });
  return `# pibake secrets of cluster "${inventory.cluster.name}": generated once, reused by every build.\n` +
    '# Keep it private (mode 0600) and backed up; never commit it. Deleting it regenerates everything.\n' + body;
}

/** Create `file` (0600) with `content` unless it exists; false when it already did. */
async function createExclusively(file: string, content: string): Promise<boolean> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(tmp, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new PibakeError(`cannot create ${file}`, { cause: error });
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Write via a 0600 temporary file in the same folder and rename it over the target. */
export async function writeAtomically(file: string, content: string | Buffer, mode: number): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(content);
    await handle.chmod(mode);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(tmp, { force: true });
    throw error;
  }
  await handle.close();
  await rename(tmp, file);
}

/** `name,fqdn,ip ssh-ed25519 AAAA…` lines for every node, for the operator's known_hosts. */
export function knownHosts(inventory: Inventory, secrets: ClusterSecrets): string {
  return inventory.nodes
    .map((node) => {
      const key = secrets.hostKeys[node.name];
      if (!key) throw new PibakeError(`no SSH host key for node "${node.name}" in ${secrets.file}`);
      const [type, blob] = key.publicKey.split(' ');
      return `${node.name},${node.name}.${inventory.cluster.domain},${node.ip} ${type} ${blob}\n`;
    })
    .join('');
}
