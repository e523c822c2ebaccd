/** A two-node cluster project (load balancer + database/web node) for tests that run whole builds. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildCluster, type BuildOptions } from '../../builder/build/build-cluster.ts';
import { lineReporter } from '../../builder/build/report.ts';
import { formatError } from '../../builder/common/errors.ts';

export const SMALL_CLUSTER_NODES = ['  - { name: lb1, role: lb, ip: 10.0.0.10 }', '  - { name: web1, role: db, ip: 10.0.0.11 }'];

/** `dir/cluster.yaml` for cluster `small` (admin key generated on first build); returns its path. */
export async function smallProject(dir: string, nodes = SMALL_CLUSTER_NODES, extra: string[] = []): Promise<string> {
  await mkdir(dir, { recursive: true });
  const config = path.join(dir, 'cluster.yaml');
  await writeFile(config, [
    'cluster: { name: small, domain: small.lan }',
    'network: { cidr: 10.0.0.0/24, gateway: 10.0.0.1 }',
    'base: { path: ./unused.img }',
    'admin: { user: pi, generate_ssh_key: true }',
    ...extra,
    'nodes:',
    ...nodes,
    '',
  ].join('\n'));
  return config;
}

/** Build options with a silent reporter; the output goes to `<config dir>/output` unless given. */
export function buildOptions(config: string, base: string, cacheDir: string, extra: Partial<BuildOptions> = {}): BuildOptions {
  return {
    config, base, cacheDir,
    out: path.join(path.dirname(config), 'output'),
    jobs: 2, bmap: false, force: false,
    // The synthesized bases have no reachable apt sources: their cards install role packages online.
    packages: 'online',
    reporter: lineReporter(() => {}),
    ...extra,
  };
}

/** The lines the CLI would print for the build's failure; throws if the build succeeds. */
export async function buildErrorLines(options: BuildOptions): Promise<string[]> {
  const outcome = await buildCluster(options).then(() => undefined, (error: unknown) => error);
  if (outcome === undefined) throw new Error('the build succeeded');
  return formatError(outcome);
}
