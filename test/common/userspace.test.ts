/**
 * pibake edits images in user space: nothing under builder/ may run sudo, mount, losetup or chroot
 * (the flash command may unmount a card the user asked it to write; that is umount, not mount).
 */
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

async function sources(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(entries.map(async (e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') ? [full] : [];
  }));
  return nested.flat();
}

describe('pibake needs no privileges', () => {
  it('never runs sudo, mount, losetup or chroot', async () => {
    const files = await sources(path.resolve('builder'));
    expect(files.length).toBeGreaterThan(20);
    const offenders: string[] = [];
    for (const file of files) {
      const lines = (await readFile(file, 'utf8')).split('\n');
      lines.forEach((line, i) => {
        const code = line.replace(/\/\/.*$/, '');
        // A program run by name, or a command line that starts with one of them.
        const runs = /\b(runTool|execa|execaSync|spawn|spawnSync|execFile|execFileSync)\(\s*['"`](sudo|mount|losetup|chroot)['"`]/;
        const commandLine = /['"`](sudo|mount|losetup|chroot) /;
        if (runs.test(code) || commandLine.test(code)) {
          offenders.push(`${path.relative(process.cwd(), file)}:${i + 1}: ${line.trim()}`);
        }
      });
    }
    expect(offenders).toEqual([]);
  });
});
