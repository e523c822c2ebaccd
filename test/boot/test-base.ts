/**
 * The boot test's base image: built by scripts/make-test-base.sh once per machine and cached by
 * content (a hash of the script) under $PIBAKE_CACHE_DIR or ~/.cache/pibake/test-base/.
 */
import { execa } from 'execa';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { VmArch } from '../helpers/qemu.ts';

const SCRIPT = fileURLToPath(new URL('../../scripts/make-test-base.sh', import.meta.url));

export type Suite = 'trixie' | 'bookworm';

/**
 * Path of the cached test base (building it first when the cache has none; minutes, not hours).
 * PIBAKE_TEST_BASE=<image> uses that image instead of the trixie one (same contract).
 */
export async function ensureTestBase(arch: VmArch = 'amd64', suite: Suite = 'trixie'): Promise<string> {
  if (process.env.PIBAKE_TEST_BASE && suite === 'trixie') return process.env.PIBAKE_TEST_BASE;
  const { stdout } = await execa('bash', [SCRIPT, '--arch', arch, '--suite', suite], { stderr: 'inherit', stdin: 'ignore' });
  const path = stdout.trim().split('\n').pop();
  if (!path) throw new Error('make-test-base.sh printed no image path');
  return path;
}

/** The suites the boot tests run on: PIBAKE_BOOT_SUITES=trixie,bookworm (the default: both). */
export function bootSuites(): Suite[] {
  const wanted = (process.env.PIBAKE_BOOT_SUITES ?? 'trixie,bookworm').split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of wanted) if (s !== 'trixie' && s !== 'bookworm') throw new Error(`PIBAKE_BOOT_SUITES: unknown suite ${s}`);
  return wanted as Suite[];
}

/** Where to keep a boot's serial console: <PIBAKE_BOOT_LOGS>/<name>.console.log, or nowhere. */
export function consoleLogPath(name: string): string | undefined {
  const dir = process.env.PIBAKE_BOOT_LOGS;
  return dir ? join(dir, `${name}.console.log`) : undefined;
}
