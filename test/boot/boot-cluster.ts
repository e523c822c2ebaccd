/**
 * The boot tests' clusters: an inventory on 10.0.0.0/24 over a test base, built with the real
 * command line. Package lists and .debs come from (and stay in) the machine's pibake cache.
 */
import { execa } from 'execa';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface TestNode {
  name: string;
  role: string;
  ip: string;
}

export interface ClusterBuild {
  /** The cluster.yaml written. */
  config: string;
  /** The --out folder (images in <out>/<cluster>/). */
  out: string;
  /** What `pibake build` printed (stdout and stderr). */
  log: string;
  seconds: number;
}

/** Writes `<work>/cluster.yaml` for `nodes` and runs `pibake build` on it (plus `extraArgs`). */
export async function buildCluster(work: string, base: string, cluster: { name: string; nodes: TestNode[]; keyFile: string },
  extraArgs: string[] = []): Promise<ClusterBuild> {
  const config = join(work, 'cluster.yaml');
  await writeFile(config, [
    `cluster: { name: ${cluster.name}, domain: ${cluster.name}.internal }`,
    // The floating address keepalived keeps on the load balancer, as the shipped cluster has it.
    'network: { cidr: 10.0.0.0/24, gateway: 10.0.0.1, dns: [10.0.0.1], vip: 10.0.0.9 }',
    `base: { path: ${JSON.stringify(base)} }`,
    'admin:',
    '  user: admin',
    `  ssh_keys: [${JSON.stringify(`${cluster.keyFile}.pub`)}]`,
    // Generated, hashed with yescrypt, kept off the boot partition and set at first boot.
    '  password: generate',
    'locale: { timezone: Europe/London, locale: en_GB.UTF-8, keyboard: gb }',
    'nodes:',
    ...cluster.nodes.map((n) => `  - { name: ${n.name}, role: ${n.role}, ip: ${n.ip} }`),
    '',
  ].join('\n'));
  const out = join(work, 'output');
  const started = Date.now();
  const result = await execa('node', [join(ROOT, 'bin/pibake.js'), 'build', '--config', config, '--out', out, ...extraArgs],
    { cwd: work, stdin: 'ignore', all: true });
  return { config, out, log: result.all ?? '', seconds: (Date.now() - started) / 1000 };
}

/** cluster.yaml for lb1 and web1 on the test base, and `pibake build` of both with the real CLI. */
export async function buildBootCluster(work: string, base: string, key: string, extraArgs: string[] = []): Promise<{ config: string; out: string; log: string }> {
  const nodes = [{ name: 'lb1', role: 'lb', ip: '10.0.0.10' }, { name: 'web1', role: 'db', ip: '10.0.0.11' }];
  const { config, out, log } = await buildCluster(work, base, { name: 'boottest', nodes, keyFile: key }, extraArgs);
  return { config, out, log };
}
