/**
 * The guard a sealed card boots with: its script run by the real /bin/sh (paths pointed into a temp
 * folder, and the halt replaced by a note: it must never halt the test machine), its unit judged by
 * systemd-analyze verify (systemd 252, bookworm's).
 */
import { execa } from 'execa';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { guardEntries, guardScript, guardUnit, guardedFiles, GUARD_UNIT, type GuardHost, type GuardInput } from '../../builder/render/secrets-guard.ts';
import { withTempDir } from './fixture.ts';

async function runGuard(dir: string, input: GuardInput): Promise<{ exitCode: number; stdout: string; host: GuardHost }> {
  const host: GuardHost = { done: path.join(dir, 'state/checked'), console: path.join(dir, 'console'), halt: `echo halted >> '${path.join(dir, 'halt')}'` };
  const script = path.join(dir, 'check.sh');
  await writeFile(script, guardScript(input, host));
  await chmod(script, 0o755);
  const result = await execa(script, [], { reject: false });
  return { exitCode: result.exitCode ?? -1, stdout: result.stdout, host };
}

describe('the guard of a sealed card', () => {
  it('passes silently and records it when every secret file is there', async () => {
    await withTempDir(async (dir) => {
      const files = [path.join(dir, 'etc/ssh/key'), path.join(dir, "it's a key file")];
      await mkdir(path.join(dir, 'etc/ssh'), { recursive: true });
      for (const f of files) await writeFile(f, 'x');
      const { exitCode, stdout, host } = await runGuard(dir, { node: 'lb1', cluster: 'small', generation: 'trixie', secretFiles: files });
      expect(exitCode).toBe(0);
      expect(stdout).toBe('');
      expect(await readFile(host.done, 'utf8')).toBe('');
      await expect(readFile(path.join(dir, 'halt'))).rejects.toThrow();
    });
  });

  it('stops with a message on the console and at journal level "crit" when secret files are missing, then halts', async () => {
    await withTempDir(async (dir) => {
      const present = path.join(dir, 'present');
      await writeFile(present, 'x');
      const files = [present, path.join(dir, 'etc/ssh/ssh_host_ed25519_key'), path.join(dir, 'etc/pibake/admin-password')];
      const { exitCode, stdout, host } = await runGuard(dir, { node: 'lb1', cluster: 'small', generation: 'trixie', secretFiles: files });
      expect(exitCode).toBe(1);
      const lines = stdout.split('\n');
      expect(lines.every((l) => l.startsWith('<2>pibake: '))).toBe(true); // syslog priority 2: crit
      expect(stdout).toContain('THIS CARD IS SEALED');
      expect(stdout).toContain(`2 of 3 secret files are missing, such as ${files[1]}.`);
      expect(stdout).toContain('pibake flash lb1 --device /dev/sdX');
      expect(stdout).toContain('pibake seal lb1.img --node lb1 --out lb1-card.img');
      expect(await readFile(host.console, 'utf8')).toBe(lines.map((l) => `${l.slice(3)}\n`).join(''));
      expect(await readFile(path.join(dir, 'halt'), 'utf8')).toBe('halted\n');
      await expect(readFile(host.done)).rejects.toThrow();
    });
  });

  it('checks the host key copies firstrun.sh restores on bookworm, not the keys Raspberry Pi OS replaces before systemd', () => {
    const secretFiles = ['/etc/pibake/ssh/ssh_host_ed25519_key', '/etc/ssh/ssh_host_ed25519_key', '/etc/ssh/ssh_host_ed25519_key.pub'];
    expect(guardedFiles({ node: 'n', cluster: 'c', generation: 'bookworm', secretFiles })).toEqual(['/etc/pibake/ssh/ssh_host_ed25519_key']);
    expect(guardedFiles({ node: 'n', cluster: 'c', generation: 'trixie', secretFiles })).toEqual(secretFiles);
  });

  it('is a unit systemd accepts, ordered before every ordinary unit and cloud-init, enabled for sysinit', async () => {
    await withTempDir(async (dir) => {
      const input: GuardInput = { node: 'lb1', cluster: 'small', generation: 'trixie', secretFiles: ['/etc/ssh/ssh_host_ed25519_key'] };
      for (const entry of guardEntries(input)) {
        const target = path.join(dir, entry.path);
        await mkdir(path.dirname(target), { recursive: true });
        if (entry.kind === 'file') await writeFile(target, entry.data, { mode: entry.mode });
        if (entry.kind === 'symlink') await execa('ln', ['-s', entry.target, target]);
      }
      const result = await execa('systemd-analyze', ['verify', `--root=${dir}`, GUARD_UNIT], { reject: false, all: true });
      expect(result.all).toBe('');
      expect(result.exitCode).toBe(0);
      const unit = guardUnit();
      expect(unit).toMatch(/^DefaultDependencies=no$/m);
      expect(unit).toMatch(/^Before=sysinit\.target cloud-init-local\.service /m);
      expect(unit).toMatch(/^WantedBy=sysinit\.target$/m);
    });
  });
});
