/**
 * The boot test's base image: built by scripts/make-test-base.sh once per machine and cached by
 * content (a hash of the script) under $PIBAKE_CACHE_DIR or ~/.cache/pibake/test-base/.
 */
import { execa } from 'execa';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { debugfsCat, partitionOffsets } from '../helpers/image.ts';
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

/** What each role must have installed from the card, per Debian release (the boot tests check it). */
export const ROLE_PACKAGES: Record<Suite, Record<string, { name: string; version: RegExp }[]>> = {
  trixie: {
    lb: [{ name: 'haproxy', version: /^3\.0\./ }, { name: 'keepalived', version: /^1:2\.3\./ }],
    primary: [{ name: 'postgresql-17', version: /^17\./ }, { name: 'nginx', version: /^1\.26\./ }],
    replica: [{ name: 'postgresql-17', version: /^17\./ }, { name: 'nginx', version: /^1\.26\./ }],
    db: [{ name: 'postgresql-17', version: /^17\./ }, { name: 'nginx', version: /^1\.26\./ }, { name: 'patroni', version: /^4\.0\./ }, { name: 'etcd-server', version: /^3\.5\./ }],
  },
  bookworm: {
    lb: [{ name: 'haproxy', version: /^2\.6\./ }, { name: 'keepalived', version: /^1:2\.2\./ }],
    primary: [{ name: 'postgresql-15', version: /^15\./ }, { name: 'nginx', version: /^1\.22\./ }],
    replica: [{ name: 'postgresql-15', version: /^15\./ }, { name: 'nginx', version: /^1\.22\./ }],
    db: [{ name: 'postgresql-15', version: /^15\./ }, { name: 'nginx', version: /^1\.22\./ }, { name: 'patroni', version: /^3\.0\./ }, { name: 'etcd-server', version: /^3\.4\./ }],
  },
};

/**
 * The suites a boot test runs on: PIBAKE_BOOT_SUITES=trixie,bookworm, or `fallback` when it is
 * unset (the boot test: both; the VM cluster test: trixie).
 */
export function bootSuites(fallback = 'trixie,bookworm'): Suite[] {
  const wanted = (process.env.PIBAKE_BOOT_SUITES ?? fallback).split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of wanted) if (s !== 'trixie' && s !== 'bookworm') throw new Error(`PIBAKE_BOOT_SUITES: unknown suite ${s}`);
  return wanted as Suite[];
}

/** Where to keep a boot's serial console: <PIBAKE_BOOT_LOGS>/<name>.console.log, or nowhere. */
export function consoleLogPath(name: string): string | undefined {
  const dir = process.env.PIBAKE_BOOT_LOGS;
  return dir ? join(dir, `${name}.console.log`) : undefined;
}

/** What a base image's first boot and network stack are, read from its dpkg status and os-release. */
export interface BaseFacts {
  /** VERSION_CODENAME of /etc/os-release, e.g. trixie. */
  suite: string;
  /** cloud-init is installed: first boot is cloud-init's (NoCloud seeds on the boot partition). */
  cloudInit: boolean;
  /** network-manager is installed: it applies the static address (as on Raspberry Pi OS). */
  networkManager: boolean;
}

/** The base's facts, by debugfs directly (not pibake's image code: the test must not trust it). */
export async function baseFacts(image: string): Promise<BaseFacts> {
  const { root } = await partitionOffsets(image);
  const status = (await debugfsCat(image, root, '/var/lib/dpkg/status')).toString('utf8');
  const installed = (name: string) =>
    status.split('\n\n').some((stanza) => stanza.includes(`\nStatus: install ok installed`) && stanza.startsWith(`Package: ${name}\n`));
  // /etc/os-release is a symlink to it (debugfs cat does not follow links).
  const osRelease = (await debugfsCat(image, root, '/usr/lib/os-release')).toString('utf8');
  return {
    suite: /^VERSION_CODENAME=(\S+)$/m.exec(osRelease)?.[1] ?? 'unknown',
    cloudInit: installed('cloud-init'),
    networkManager: installed('network-manager'),
  };
}
