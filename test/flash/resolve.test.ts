import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { bmapBeside, resolveImage } from '../../builder/flash/resolve.ts';
import { smallProject } from '../helpers/build-project.ts';
import { makeImageWithBmap, sameBytes, withTempDir } from './helpers.ts';
import { readBmap } from '../../builder/package/bmap-format.ts';

const repo = new URL('../../', import.meta.url).pathname;

describe('flash NODE|IMAGE resolution', () => {
  it('finds <out>/<cluster>/<node>.img* where build writes it (the inventory read as build reads it), and the bmap beside the image', async () => {
    await withTempDir(async (dir) => {
      // The inventory in its own folder, the build's output under the folder the command runs in
      // (--out defaults to ./output, as for build).
      const config = await smallProject(join(dir, 'project'));
      const out = join(dir, 'output', 'small');
      await mkdir(out, { recursive: true });
      const { image, bmap } = await makeImageWithBmap(out, 'web1.img');
      await execa('zstd', ['-q', '--rm', image, '-o', `${image}.zst`]);
      expect(await resolveImage('web1', { config, out: join(dir, 'output') })).toBe(`${image}.zst`);
      expect(bmapBeside(`${image}.zst`)).toBe(bmap);
      await expect(resolveImage('lb1', { config, out: join(dir, 'output') })).rejects.toThrow(/no image for node "lb1" in .*output\/small/);
      await expect(resolveImage('web1', { config, out: join(dir, 'project', 'output') })).rejects.toThrow(/no image for node "web1"/);
      await expect(resolveImage('web9', { config, out: join(dir, 'output') })).rejects.toThrow(/no node named web9 in .*cluster\.yaml/);
      await expect(resolveImage('web1', { config: join(dir, 'missing.yaml'), out: join(dir, 'output') })).rejects.toThrow(/missing\.yaml/);
      await writeFile(join(dir, 'bad.yaml'), 'cluster:\n  name: demo\nnodes: []\n');
      await expect(resolveImage('web1', { config: join(dir, 'bad.yaml'), out: join(dir, 'output') })).rejects.toThrow(/bad\.yaml/);

      // The whole command, as a user runs it: node name, config, a file target, no terminal.
      const card = join(dir, 'card.img');
      const run = await execa('node', [join(repo, 'bin/pibake.js'), 'flash', 'web1', '--config', config, '--device', card], { cwd: dir, stdin: 'ignore', reject: false });
      expect(run.stderr).not.toContain('error');
      expect(run.exitCode).toBe(0);
      expect(run.stdout).toMatch(/^flashed .*web1\.img\.zst to .*card\.img: .* written \(bmap\), verified/);
      await execa('zstd', ['-q', '-d', `${image}.zst`, '-o', image]);
      expect(await sameBytes(image, card, (await readBmap(bmap)).ranges)).toBe(true);
    });
  });
});
