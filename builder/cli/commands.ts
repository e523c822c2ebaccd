/**
 * Every pibake subcommand, in pipeline order: its usage, what it does, and where its options and
 * handler live. main() loads only the module of the command being run, so `pibake --help` and
 * `pibake --version` start without importing the pipeline.
 */
import type { CommandDefinition } from './options.ts';

export interface CommandEntry {
  /** The usage yargs parses: the name, then any positional arguments. */
  command: string;
  describe: string;
  load: () => Promise<{ command: CommandDefinition }>;
}

export const commands: readonly CommandEntry[] = [
  {
    command: 'render',
    describe: 'Render every node\'s files (rootfs, boot partition, seeds) into a folder for review; touches no image',
    load: () => import('./render.ts'),
  },
  {
    command: 'secrets',
    describe: 'Create the cluster\'s secrets file (cluster.secrets.yaml, 0600), or add what a new node or role needs; never changes a value',
    load: () => import('./secrets.ts'),
  },
  {
    command: 'build',
    describe: 'Bake output/<cluster>/<node>.img for every node of the inventory (only what changed)',
    load: () => import('./build.ts'),
  },
  {
    command: 'inspect <image>',
    describe: 'Show partitions, filesystems, OS generation, cloud-init and first-boot files of an image (.img, .img.xz, .img.zst, .zip; or its https URL with --sha256)',
    load: () => import('./inspect.ts'),
  },
  {
    command: 'seal <image>',
    describe: 'Add a node\'s secrets (from cluster.secrets.yaml) to its sealed image, into a new image file for Imager, Etcher or dd',
    load: () => import('./seal.ts'),
  },
  {
    command: 'flash <target>',
    describe: 'Write a node image (or any .img, .img.xz, .img.zst or .zip, or its https URL with --sha256, checked before anything is written) to one or more cards, then verify it',
    load: () => import('./flash.ts'),
  },
  {
    command: 'devices',
    describe: 'List disks that could be flashed, with the reasons pibake would refuse one',
    load: () => import('./devices.ts'),
  },
  {
    command: 'status',
    describe: 'Check the running cluster over ssh: each node, its card, services, replication, load balancers; exit 0 healthy, 1 degraded, 2 down',
    load: () => import('./status.ts'),
  },
];

export function commandName(entry: CommandEntry): string {
  return entry.command.split(' ')[0] as string;
}
