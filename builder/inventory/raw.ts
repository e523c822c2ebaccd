/**
 * The inventory as the cross-checks see it, before defaults: what shape.ts hands over, and the
 * roles' tags. Declared apart from checks.ts so the HA checks it calls can use them too.
 */
/** What shape.ts hands over: the valid parts of the file, anything may be missing. */
export interface RawInventory {
  network?: { cidr?: string; gateway?: string; dns?: (string | undefined)[]; vip?: string };
  base?: { url?: string; path?: string; sha256?: string };
  admin?: { sshKeys?: (string | undefined)[]; generateSshKey?: boolean };
  nodes?: (RawNode | undefined)[];
  roles?: Record<string, Record<string, unknown> | undefined>;
}

export interface RawNode {
  name?: string;
  role?: string;
  ip?: string;
  mac?: string;
}

/** Role name -> its tags, and the role that replaced it when it is an old name. */
export type RoleTags = ReadonlyMap<string, { tags: string[]; replacedBy?: string }>;
