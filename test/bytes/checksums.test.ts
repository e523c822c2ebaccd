import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256File, writeSha256Sums } from '../../builder/bytes/checksums.ts';
import { makeDiskImage, scratchDir, sha256sum } from '../image/intake-fixture.ts';

let dir: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir('checksums'));
  await makeDiskImage(join(dir, 'lb.img'), 16);
  await writeFile(join(dir, 'web 1.img'), 'a name with a space\n');
  await writeFile(join(dir, 'odd\\name\nnewline.img'), 'a name with a backslash and a newline\n');
});
afterAll(() => cleanup());

describe('sha256File', () => {
  it('agrees with sha256sum', async () => {
    expect(await sha256File(join(dir, 'lb.img'))).toBe(await sha256sum(join(dir, 'lb.img')));
  });
});

describe('writeSha256Sums', () => {
  it('writes a file `sha256sum -c` accepts, and that catches a changed file', async () => {
    const names = ['lb.img', 'web 1.img', 'odd\\name\nnewline.img'];
    const sums = await writeSha256Sums(dir, names);
    expect(sums).toBe(join(dir, 'SHA256SUMS'));
    const ok = await execa('sha256sum', ['-c', '--strict', 'SHA256SUMS'], { cwd: dir });
    expect(ok.stdout.split('\n').filter((l) => l.endsWith(': OK'))).toHaveLength(3);

    await writeFile(join(dir, 'web 1.img'), 'changed\n');
    const bad = await execa('sha256sum', ['-c', 'SHA256SUMS'], { cwd: dir, reject: false });
    expect(bad.exitCode).toBe(1);
    expect(bad.stdout).toMatch(/web 1\.img: FAILED/);
  });

  it('refuses files outside the folder', async () => {
    await expect(writeSha256Sums(dir, ['../elsewhere.img'])).rejects.toThrow(/not inside/);
  });
});
