/**
 * The boot tests' cluster: lb1 and web1 (the PostgreSQL primary) on a test base, built with the
 * real command line. Package lists and .debs come from (and stay in) the machine's pibake cache.
 */
import { execa } from 'execa';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** cluster.yaml for lb1 and web1 on the test base, and `pibake build` of both with the real CLI. */
export async function buildBootCluster(work: string, base: string, key: string, extraArgs: string[] = []): Promise<{ config: string; out: string; log: string }> {
  const config = join(work, 'cluster.yaml');
  await writeFile(config, [
    'cluster: { name: boottest, domain: boottest.internal }',
    'network: { cidr: 10.0.0.0/24, gateway: 10.0.0.1, dns: [10.0.0.1] }',
    `base: { path: ${JSON.stringify(base)} }`,
    'admin:',
    '  user: admin',
    `  ssh_keys: [${JSON.stringify(`${key}.pub`)}]`,
    'locale: { timezone: Europe/London, locale: en_GB.UTF-8, keyboard: gb }',
    'nodes:',
    '  - { name: lb1, role: lb, ip: 10.0.0.10 }',
    '  - { name: web1, role: primary, ip: 10.0.0.11 }',
    '',
  ].join('\n'));
  const out = join(work, 'output');
  const result = await execa('node', [join(ROOT, 'bin/pibake.js'), 'build', '--config', config, '--out', out, ...extraArgs],
    { cwd: work, stdin: 'ignore', all: true });
  return { config, out, log: result.all ?? '' };
}

