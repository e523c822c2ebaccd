/**
 * The validated cluster inventory, as the rest of pibake sees it (camelCase, defaults applied,
 * paths resolved against the inventory file's folder). Produced by `loadInventory` from cluster.yaml.
 */
import type { BaseImageSpec, Generation } from '../common/base-image.ts';
import type { Location, Problem } from '../common/errors.ts';

// Part of the inventory's vocabulary, declared beside the image code's (which must not import this module).
export type { BaseImageSpec, Generation };

export interface Inventory {
  /** Absolute path of the inventory file; secrets and relative paths live beside it. */
  file: string;
  cluster: { name: string; domain: string };
  network: {
    cidr: string; // e.g. 10.0.0.0/24
    prefixLength: number;
    gateway: string;
    dns: string[];
    /** The floating address clients use (keepalived); undefined: the only load balancer's own address. */
    vip?: string;
  };
  base: BaseImageSpec;
  admin: {
    user: string;
    /** Public keys, each one line as in authorized_keys (files already read). */
    sshKeys: string[];
    /** Generate a cluster admin key pair into the secrets folder and authorise it. */
    generateSshKey: boolean;
    /** 'none' = no password login at all (default); 'generate' = random one kept in secrets; or a crypt hash. */
    password: 'none' | 'generate' | { hash: string };
  };
  locale: { timezone: string; locale: string; keyboard: string };
  wifi?: { country: string; ssid: string; passphrase: string };
  nodes: NodeSpec[];
  roles: RoleSettings;
  packages: PackageSettings;
  /** Things that work but that the user should know, e.g. each single point of failure left (printed, never fatal). */
  warnings: Problem[];
  /** Where each key path of the YAML was found, for errors raised after loading ("nodes.2.ip" -> location). */
  locations: Map<string, Location>;
}

/** How the build fetches the role packages it carries on the cards. */
export interface PackageSettings {
  /** Repositories used instead of ones the image lists. */
  mirrors: { from: string; to: string }[];
  /** HTTP proxy for the build's downloads. */
  proxy?: string;
  /** Largest size (bytes) an image may grow to for the carried packages. */
  maxImageBytes?: number;
}

export interface NodeSpec {
  name: string;
  /** Name of a role file in roles/ (lb, db, allinone, or one the user added). */
  role: string;
  ip: string;
  mac?: string;
}

export interface RoleSettings {
  postgresql: {
    /** Major version; undefined = the base generation's Debian default (15 bookworm, 17 trixie). */
    version?: number;
    port: number;
    database: string;
    /** max_slot_wal_keep_size, e.g. "1GB": a dead replica's slot may not fill the card. */
    maxSlotWalKeepSize: string;
  };
  web: { port: number; appPort: number };
  lb: { statsPort: number; statsUser: string; pgWritePort: number; pgReadPort: number; vrrpRouterId: number; monitorPort: number };
  patroni: {
    /** undefined = the generation's default (10 bookworm, 20 trixie: Patroni 4's minimum). */
    ttl?: number;
    loopWait: number;
    retryTimeout: number;
    synchronousMode: boolean;
    failsafeMode: boolean;
    restPort: number;
  };
  etcd: {
    /** Node names running etcd, in inventory order (resolved by loadInventory when cluster.yaml leaves them out). */
    members: string[];
    clientPort: number;
    peerPort: number;
  };
}
