/** IPv4 and name syntax, pure functions used by the inventory schema and its cross-checks. */

/** Dotted quad without leading zeros (010 would mean octal to some tools, decimal to others). */
export const IPV4_PATTERN = /^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/;
export const CIDR_PATTERN =
  /^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\/([0-9]|[12][0-9]|3[0-2])$/;
/** RFC 1123 host name label, lowercase only (hostnames end up in file names, DNS and PostgreSQL slot names). */
export const LABEL_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const DOMAIN_PATTERN = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
export const MAC_PATTERN = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;

export function ipToNumber(ip: string): number {
  return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
}

export function numberToIp(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

export interface Subnet {
  network: number;
  prefixLength: number;
  broadcast: number;
}

/** Parses a.b.c.d/n (already pattern-checked). */
export function parseCidr(cidr: string): Subnet & { address: number } {
  const [ip = '', length = '0'] = cidr.split('/');
  const prefixLength = Number(length);
  const address = ipToNumber(ip);
  const size = 2 ** (32 - prefixLength);
  const network = Math.floor(address / size) * size;
  return { address, network, prefixLength, broadcast: network + size - 1 };
}

export function netmask(prefixLength: number): string {
  return numberToIp(2 ** 32 - 2 ** (32 - prefixLength));
}

export function inSubnet(ip: number, subnet: Subnet): boolean {
  return ip >= subnet.network && ip <= subnet.broadcast;
}

/** IPv4 ranges no cluster network or name server can be in, by their first address and prefix. */
const RESERVED: [string, number, number][] = [
  ['0.0.0.0/8 ("this network")', 0, 8],
  ['127.0.0.0/8 (loopback)', 127 * 2 ** 24, 8],
  ['224.0.0.0/4 (multicast)', 224 * 2 ** 24, 4],
  ['240.0.0.0/4 (reserved, and broadcast)', 240 * 2 ** 24, 4],
];

/** The reserved range an address lies in, described; undefined for a usable one. */
export function reservedRange(ip: number): string | undefined {
  for (const [name, start, prefix] of RESERVED) {
    if (Math.floor(ip / 2 ** (32 - prefix)) === Math.floor(start / 2 ** (32 - prefix))) return name;
  }
  return undefined;
}

/** Why an address cannot be a host of the subnet, or undefined when it can. */
export function hostProblem(ip: number, subnet: Subnet, cidr: string): string | undefined {
  if (!inSubnet(ip, subnet)) return `is outside the network ${cidr}`;
  if (ip === subnet.network) return `is the network address of ${cidr}`;
  if (ip === subnet.broadcast) return `is the broadcast address of ${cidr}`;
  return undefined;
}
