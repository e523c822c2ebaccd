/**
 * `npm run demo`: the whole pipeline in under a minute without the ~500 MB download. pibake
 * synthesizes a small base in the Raspberry Pi OS layout (it boots nothing, but has the same
 * partitions, first-boot contract and cloud-init configuration), then builds the shipped cluster
 * from it into output/demo/. The synthesized base has no apt sources to resolve packages against,
 * so the demo leaves the role packages to first boot (--packages online); the real build carries them.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { main } from '../builder/cli/main.ts';
import { packageRoot } from '../builder/common/paths.ts';
import { synthesizeRaspiosImage } from '../test/helpers/synthesize.ts';

const demoDir = path.join(packageRoot, 'output', 'demo');
const base = path.join(demoDir, 'demo-base-trixie.img');
await mkdir(demoDir, { recursive: true });
if (!existsSync(base)) {
  process.stderr.write(`demo: synthesizing a small Raspberry Pi OS-layout base at ${path.relative(process.cwd(), base)}\n`);
  await synthesizeRaspiosImage({ path: base, generation: 'trixie', sizeMiB: 1024 });
}
const config = process.argv[2] ?? path.join(packageRoot, 'cluster.yaml');
const code = await main(['build', '--config', config, '--base', base, '--out', demoDir, '--bmap', '--packages', 'online', ...process.argv.slice(3)]);
if (code === 0) {
  process.stderr.write(
    `\ndemo: done. Look inside a card image without root:\n  npx pibake inspect ${path.relative(process.cwd(), path.join(demoDir, 'pistack', 'lb1.img'))}\n`,
  );
}
process.exitCode = code;
