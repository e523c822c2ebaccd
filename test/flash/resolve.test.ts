import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { bmapBeside, resolveImage } from '../../builder/flash/resolve.ts';
import { makeImageWithBmap, sameBytes, withTempDir } from './helpers.ts';
import { readBmap } from '../../builder/package/bmap-format.ts';

const repo = new URL('../../', import.meta.url).pathname;

describe('flash NODE|IMAGE resolution', () => {
  it('finds output/<cluster>/<node>.img* beside the config, and the bmap beside the image', async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, 'output', 'demo');
      await mkdir(out, { recursive: true });
      const config = join(dir, 'cluster.yaml');
      await writeFile(config, 'cluster:\n  name: demo\n  domain: lan\nnodes: []\n');
      const { image, bmap } = await makeImageWithBmap(out, 'web1.img');
      await execa('zstd', ['-q', '--rm', image, '-o', `${image}.zst`]);
      expect(resolveImage('web1', config)).toBe(`${image}.zst`);
      expect(bmapBeside(`${image}.zst`)).toBe(bmap);
      expect(() => resolveImage('web9', config)).toThrow(/no image for node "web9"/);
      expect(() => resolveImage('web1', join(dir, 'missing.yaml'))).toThrow(/cannot read/);

      // The whole command, as a user runs it: node name, config, a file target, no terminal.
      const card = join(dir, 'card.img');
      const run = await execa('node', [join(repo, 'bin/pibake.js'), 'flash', 'web1', '--config', config, '--device', card], { stdin: 'ignore', reject: false });
      expect(run.stderr).not.toContain('error');
      expect(run.exitCode).toBe(0);
      expect(run.stdout).toMatch(/^flashed .*web1\.img\.zst to .*card\.img: .* written \(bmap\), verified/);
      await execa('zstd', ['-q', '-d', `${image}.zst`, '-o', image]);
      expect(await sameBytes(image, card, (await readBmap(bmap)).ranges)).toBe(true);
    });
  });
});
