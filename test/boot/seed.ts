/**
 * Hand-written cloud-init NoCloud seeds for the test base, written to the boot partition with
 * mtools, the way Raspberry Pi Imager (and pibake) leave them: meta-data, user-data, network-config.
 * Used until the boot test runs on pibake-built images, which carry their own seeds.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool } from '../../builder/common/exec.ts';
import { readBootPartition } from '../helpers/qemu.ts';

export interface SeedNode {
  hostname: string;
  domain: string;
  /** Static address with prefix, e.g. 10.0.0.10/24. */
  address: string;
  gateway: string;
  dns: string[];
  adminUser: string;
  adminPublicKey: string;
  timezone: string;
  locale: string;
  /** Files written by cloud-init's write_files, to prove user-data content reaches the node. */
  files: { path: string; content: string; permissions: string }[];
}

export function seedFiles(node: SeedNode): { name: string; text: string }[] {
  // Unique per node and per build: cloud-init skips a seed whose instance-id it has already run.
  const instanceId = `${node.hostname}-${randomBytes(6).toString('hex')}`;
  const metaData = `instance-id: ${instanceId}\nlocal-hostname: ${node.hostname}\n`;
  const userData = [
    '#cloud-config',
    `hostname: ${node.hostname}`,
    `fqdn: ${node.hostname}.${node.domain}`,
    'manage_etc_hosts: true',
    `timezone: ${node.timezone}`,
    `locale: ${node.locale}`,
    'users:',
    `  - name: ${node.adminUser}`,
    '    groups: [sudo, adm]',
    '    shell: /bin/bash',
    '    sudo: "ALL=(ALL) NOPASSWD:ALL"',
    '    lock_passwd: true',
    '    ssh_authorized_keys:',
    `      - ${node.adminPublicKey.trim()}`,
    'ssh_pwauth: false',
    'write_files:',
    ...node.files.flatMap((f) => [
      `  - path: ${f.path}`,
      `    permissions: '${f.permissions}'`,
      '    content: |',
      ...f.content.trimEnd().split('\n').map((l) => `      ${l}`),
    ]),
    '',
  ].join('\n');
  // Netplan v2 as Imager writes it, with the static address a cluster wants.
  const networkConfig = [
    'network:',
    '  version: 2',
    '  ethernets:',
    '    eth0:',
    `      addresses: [${node.address}]`,
    // `to: default` is netplan's spelling, but cloud-init 22.4 (bookworm) rejects it and skips
    // the whole network config; 0.0.0.0/0 means the same to every cloud-init version.
    `      routes: [{to: 0.0.0.0/0, via: ${node.gateway}}]`,
    `      nameservers: {addresses: [${node.dns.join(', ')}], search: [${node.domain}]}`,
    '',
  ].join('\n');
  return [
    { name: 'meta-data', text: metaData },
    { name: 'user-data', text: userData },
    { name: 'network-config', text: networkConfig },
  ];
}

/** Writes the seeds onto the image's boot partition (replacing any there). */
export async function writeSeeds(image: string, node: SeedNode): Promise<void> {
  const { offsetBytes } = await readBootPartition(image);
  const dir = await mkdtemp(join(tmpdir(), 'pibake-seed-'));
  try {
    const paths: string[] = [];
    for (const file of seedFiles(node)) {
      const path = join(dir, file.name);
      await writeFile(path, file.text);
      paths.push(path);
    }
    await runTool('mcopy', ['-o', '-i', `${image}@@${offsetBytes}`, ...paths, '::/']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
