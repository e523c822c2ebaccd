/**
 * Bench sections for whole builds (issues: one more node image; cold, warm and 16-node builds),
 * measured on a Raspberry Pi OS-layout image (`--image synth`), against the bare tools doing the
 * same work on the same bytes: `cp --sparse=always`, one `debugfs -w -f` batch, one `mcopy`.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildCluster } from '../builder/build/build-cluster.ts';
import { bakeNodeImage } from '../builder/bake/bake-node.ts';
import { lineReporter } from '../builder/build/report.ts';
import { packageRoot } from '../builder/common/paths.ts';
import { readDiskLayout } from '../builder/image/disk.ts';
import type { BenchContext, BenchSection } from './bench.ts';

type Fixture = (ctx: BenchContext, name: 'raw' | 'xz') => Promise<string>;

const silent = lineReporter(() => {});

/** A project folder with the shipped cluster.yaml grown to `nodes` nodes, secrets made once. */
async function project(ctx: BenchContext, nodes: number): Promise<string> {
  const dir = join(ctx.work, `project-${nodes}`);
  const config = join(dir, 'cluster.yaml');
  if (existsSync(config)) return config;
  await mkdir(dir, { recursive: true });
  let text = await readFile(join(packageRoot, 'cluster.yaml'), 'utf8');
  // The shipped file has five nodes: the 4-node project leaves out lb2, bigger ones add db nodes.
  if (nodes < 5) text = text.replace(/^ {2}- \{ name: lb2, [^\n]*\n/m, '');
  const extra = Array.from({ length: Math.max(0, nodes - 5) }, (_, i) => `  - { name: web${i + 4}, role: db, ip: 10.0.0.${i + 20} }`);
  text = text.replace(/( {2}- \{ name: web3, [^\n]*\n)/, `$1${extra.map((l) => `${l}\n`).join('')}`);
  await writeFile(config, text);
  return config;
}

async function build(ctx: BenchContext, nodes: number, base: string, out: string): Promise<void> {
  await buildCluster({
    config: await project(ctx, nodes), base, out, jobs: 2, bmap: false, force: false, packages: 'online',
    cacheDir: join(ctx.work, 'build-cache'), reporter: silent,
  });
}

/**
 * The bare-tool script for one node: the same files pibake bakes for lb1 (taken from
 * `pibake render`), written with one debugfs batch and one mcopy onto a sparse copy.
 */
async function bareNodeScript(ctx: BenchContext, base: string, target: string): Promise<string> {
  const rendered = join(ctx.work, 'rendered');
  if (!existsSync(rendered)) {
    await execa(process.execPath, [join(packageRoot, 'bin/pibake.js'), 'render', '--config', await project(ctx, 4), '--node', 'lb1', '--out', rendered]);
  }
  const layout = await readDiskLayout(base);
  const [boot, root] = layout.partitions;
  const modes = (await readFile(join(rendered, 'lb1', 'modes.txt'), 'utf8')).trim().split('\n').filter((l) => !l.startsWith('#'));
  const commands: string[] = [];
  const made = new Set<string>();
  const mkdirs = (path: string) => {
    const parts = path.split('/').filter(Boolean);
    for (let i = 1; i < parts.length; i += 1) {
      const dir = `/${parts.slice(0, i).join('/')}`;
      if (!made.has(dir)) commands.push(`mkdir ${dir}`);
      made.add(dir);
    }
  };
  for (const line of modes) {
    const [mode, uid, gid, kind, path] = line.split(/\s+/) as [string, string, string, string, string];
    mkdirs(path);
    if (kind === 'file') commands.push(`rm ${path}`, `write ${join(rendered, 'lb1', 'rootfs', path)} ${path}`, `sif ${path} mode 0100${mode.slice(-3)}`);
    else if (kind === 'symlink') commands.push(`rm ${path}`, `symlink ${path} /dev/null`);
    else continue;
    commands.push(`sif ${path} uid ${uid}`, `sif ${path} gid ${gid}`);
  }
  const cmdFile = join(ctx.work, 'bare-node.debugfs');
  await writeFile(cmdFile, `${commands.join('\n')}\n`);
  const bootDir = join(rendered, 'lb1', 'bootfs');
  const bootFiles = (await readdir(bootDir)).map((n) => join(bootDir, n)).join(' ');
  return `cp --sparse=always ${base} ${target} && debugfs -w -f ${cmdFile} '${target}?offset=${root!.startBytes}' >/dev/null 2>&1 && ` +
    `MTOOLS_SKIP_CHECK=1 mcopy -o -i ${target}@@${boot!.startBytes} ${bootFiles} ::`;
}

export function buildSections(fixture: Fixture): BenchSection[] {
  const out = (ctx: BenchContext, name: string) => join(ctx.work, name);
  const sections: BenchSection[] = [
    {
      name: 'extra-node',
      bare: async (ctx) => bareNodeScript(ctx, await fixture(ctx, 'raw'), out(ctx, 'bare-node.img')),
      ours: async (ctx) => {
        // One more card: what `pibake build` does per node, minus rendering and checksums.
        const { renderForBench } = await import('./bench-render.ts');
        const rendered = await renderForBench(await project(ctx, 4), await fixture(ctx, 'raw'), 'lb1');
        await bakeNodeImage({
          basePath: await fixture(ctx, 'raw'), target: out(ctx, 'node.img'), diskId: '1234abcd', rendered,
          extraRootEntries: () => [], onStage: () => {},
        });
      },
      cleanup: async (ctx) => {
        await rm(out(ctx, 'node.img'), { force: true });
        await rm(out(ctx, 'bare-node.img'), { force: true });
      },
    },
    {
      name: 'build-cold-4',
      prepare: async (ctx) => {
        await fixture(ctx, 'xz');
        await project(ctx, 4);
      },
      bare: async (ctx) => {
        const base = out(ctx, 'bare-base.img');
        const copies = [1, 2, 3, 4].map((i) => `cp --sparse=always ${base} ${out(ctx, `bare-${i}.img`)}`).join(' && ');
        return `xz -T0 -dc ${await fixture(ctx, 'xz')} | cp --sparse=always /dev/stdin ${base} && ${copies}`;
      },
      ours: async (ctx) => build(ctx, 4, await fixture(ctx, 'xz'), out(ctx, 'out-cold')),
      cleanup: async (ctx) => {
        for (const name of ['out-cold', 'build-cache', 'bare-base.img', 'bare-1.img', 'bare-2.img', 'bare-3.img', 'bare-4.img']) {
          await rm(out(ctx, name), { recursive: true, force: true });
        }
      },
    },
    {
      name: 'build-warm-noop',
      prepare: async (ctx) => build(ctx, 4, await fixture(ctx, 'raw'), out(ctx, 'out-warm')),
      ours: async (ctx) => build(ctx, 4, await fixture(ctx, 'raw'), out(ctx, 'out-warm')),
      report: async () => 'nothing changed: every image checked and kept',
    },
    {
      name: 'build-16',
      prepare: async (ctx) => {
        await project(ctx, 16);
        // Warm the base cache so the section measures baking, not intake.
        await build(ctx, 4, await fixture(ctx, 'raw'), out(ctx, 'out-warm'));
      },
      bare: async (ctx) =>
        Array.from({ length: 16 }, (_, i) => `cp --sparse=always ${'$BASE'} ${out(ctx, `bare16-${i}.img`)}`)
          .join(' && ')
          .replaceAll('$BASE', await fixture(ctx, 'raw')),
      ours: async (ctx) => build(ctx, 16, await fixture(ctx, 'raw'), out(ctx, 'out-16')),
      report: async () => 'compare with build-cold-4 minus intake: per node cost should stay flat',
      cleanup: async (ctx) => {
        await rm(out(ctx, 'out-16'), { recursive: true, force: true });
        for (let i = 0; i < 16; i += 1) await rm(out(ctx, `bare16-${i}.img`), { force: true });
      },
    },
  ];
  return sections.map((s) => ({ ...s, needsSynth: true }));
}

