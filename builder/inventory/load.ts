/**
 * loadInventory: cluster.yaml -> a validated Inventory, or one PibakeError listing every problem
 * with file:line:column. Reads the inventory and the SSH key files it names, nothing else.
 */
import { resolve } from 'node:path';
import { PibakeError } from '../common/errors.ts';
import { READ_LIMITS, readInputFile } from '../common/read-input.ts';
import type { Location, Problem } from '../common/errors.ts';
import { crossCheck } from './checks.ts';
import { databaseNodeNames, defaultEtcdMembers } from './checks-ha.ts';
import type { RawInventory, RoleTags } from './raw.ts';
import { parseCidr } from './net.ts';
import { INVENTORY_SPEC } from './schema.ts';
import { validateShape } from './shape.ts';
import { readSshKeyEntry, resolveUserPath } from './ssh-keys.ts';
import type { Inventory } from './types.ts';
import { parseYamlTree } from '../common/yaml-tree.ts';

/**
 * @param roles role name -> its tags (from loadRoles): which roles exist and which node is the
 *   PostgreSQL primary, a load balancer or a web node.
 */
export async function loadInventory(file: string, roles: RoleTags): Promise<Inventory> {
  const path = resolve(file);
  let source: string;
  try {
    source = (await readInputFile(path, 'the inventory', READ_LIMITS.inventory)).toString('utf8');
  } catch (error) {
    if (error instanceof PibakeError) throw new PibakeError(error.message, { hint: error.hint, location: { file: path } });
    const code = (error as NodeJS.ErrnoException).code;
    throw new PibakeError(`cannot read the inventory ${path}${code ? ` (${code})` : ''}`, {
      hint: code === 'ENOENT' ? 'pass the path of your cluster.yaml (start from the one shipped with pibake)' : 'check the file permissions',
      cause: error,
      location: { file: path },
    });
  }
  return parseInventory(source, path, roles);
}

/** The same as loadInventory for text already in memory; `file` is used for locations and relative paths. */
export async function parseInventory(source: string, file: string, roles: RoleTags): Promise<Inventory> {
  const parsed = parseYamlTree(source, file);
  const shape = validateShape(parsed.root, INVENTORY_SPEC, file);
  const problems: Problem[] = [...parsed.problems, ...shape.problems];
  const raw = (shape.value ?? {}) as RawInventory & Record<string, unknown>;
  const warnings: Problem[] = [];
  problems.push(...crossCheck(raw, roles, { file, locations: shape.locations, keyLocations: shape.keyLocations, warnings }));
  const sshKeys = await readSshKeys(raw, file, shape.locations, problems);

  if (problems.length > 0) {
    problems.sort(byLocation);
    const count = problems.length === 1 ? 'a problem' : `${problems.length} problems`;
    throw PibakeError.fromProblems(`${file} has ${count}`, problems);
  }
  return toInventory(raw, file, sshKeys, shape.locations, roles, warnings.sort(byLocation));
}

async function readSshKeys(raw: RawInventory, file: string, locations: ReadonlyMap<string, Location>, problems: Problem[]): Promise<string[]> {
  const keys: string[] = [];
  const entries = raw.admin?.sshKeys ?? [];
  for (const [index, entry] of entries.entries()) {
    if (entry === undefined) continue;
    const result = await readSshKeyEntry(entry, file);
    if (Array.isArray(result)) keys.push(...result);
    else problems.push({ ...result, location: locations.get(`admin.ssh_keys.${index}`) ?? { file } });
  }
  return [...new Set(keys)];
}

/** Only called when there were no problems, so every required value is present and valid. */
function toInventory(
  raw: Record<string, unknown>, file: string, sshKeys: string[], locations: Map<string, Location>, roles: RoleTags, warnings: Problem[],
): Inventory {
  const data = raw as unknown as ValidData;
  const { cidr, gateway, dns, vip } = data.network;
  const nodes = data.nodes.map((node) => ({ name: node.name, role: node.role, ip: node.ip, ...(node.mac ? { mac: node.mac } : {}) }));
  const base = { ...data.base };
  if (base.path !== undefined) base.path = resolveUserPath(base.path, file);
  const password = data.admin.password;
  return {
    file,
    cluster: data.cluster,
    network: { cidr, prefixLength: parseCidr(cidr).prefixLength, gateway, dns: dns ?? [gateway], ...(vip ? { vip } : {}) },
    base,
    admin: {
      user: data.admin.user,
      sshKeys,
      generateSshKey: data.admin.generateSshKey,
      password: password === 'none' || password === 'generate' ? password : { hash: password },
    },
    locale: data.locale,
    ...(data.wifi ? { wifi: data.wifi } : {}),
    nodes,
    roles: {
      ...data.roles,
      etcd: { ...data.roles.etcd, members: data.roles.etcd.members ?? defaultEtcdMembers(databaseNodeNames(nodes, roles)) },
    },
    packages: {
      mirrors: data.packages.mirrors,
      ...(data.packages.proxy ? { proxy: data.packages.proxy } : {}),
      ...(data.packages.maxImageSize ? { maxImageBytes: decimalBytes(data.packages.maxImageSize) } : {}),
    },
    warnings,
    locations,
  };
}

/** "8GB" -> 8e9 bytes: card sizes are decimal, as they are sold. */
function decimalBytes(size: string): number {
  const m = /^(\d+)(MB|GB)$/.exec(size) as RegExpExecArray;
  return Number(m[1]) * (m[2] === 'GB' ? 1e9 : 1e6);
}

/** The camelCase data the schema produces for a valid file (admin keys and password still raw). */
interface ValidData {
  cluster: Inventory['cluster'];
  network: { cidr: string; gateway: string; dns?: string[]; vip?: string };
  base: Inventory['base'];
  admin: { user: string; sshKeys: string[]; generateSshKey: boolean; password: string };
  locale: Inventory['locale'];
  wifi?: Inventory['wifi'];
  nodes: Inventory['nodes'];
  roles: Omit<Inventory['roles'], 'etcd'> & { etcd: Omit<Inventory['roles']['etcd'], 'members'> & { members?: string[] } };
  packages: { mirrors: { from: string; to: string }[]; proxy?: string; maxImageSize?: string };
}

function byLocation(a: Problem, b: Problem): number {
  return (a.location?.line ?? 0) - (b.location?.line ?? 0) || (a.location?.column ?? 0) - (b.location?.column ?? 0);
}
