/**
 * Proof on real parts, end to end: `pibake build` bakes lb1 and web1 (the PostgreSQL primary with
 * nginx and the web app) from the test base, shaped like Raspberry Pi OS Lite and without the role
 * packages, carrying them on the card (the default). Both cards then boot under qemu with no route
 * anywhere — no mirror, no internet — and must come up with their role installed from the card:
 * HAProxy / PostgreSQL / nginx of the base's Debian release, pibake-firstboot done, cloud-init done
 * with no error of any kind (trixie), the static address NetworkManager's, every role service
 * active, no failed unit, no error of pibake's units in the journal.
 *
 * Before booting, the built images are judged without booting: e2fsck, fsck.vfat and sfdisk,
 * debugfs read-back of the carried repository against the cache. web1's packages do not fit the
 * test base's root filesystem, so its image was grown (the boot then proves the grown image too).
 *
 * Runs on the trixie and the bookworm test base (PIBAKE_BOOT_SUITES picks).
 */
import { execa } from 'execa';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRaspiosImage } from '../../builder/image/raspios.ts';
import { loadInventory } from '../../builder/inventory/load.ts';
import { loadRoles } from '../../builder/render/roles.ts';
import { createHash } from 'node:crypto';
import { debugfs, debugfsCat, expectCleanImage, sfdiskJson } from '../helpers/image.ts';
import { bootAndCheck, expectationsFor } from './boot-and-check.ts';
import { buildBootCluster } from './boot-cluster.ts';
import { bootSuites, consoleLogPath, ensureTestBase, type Suite } from './test-base.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let dir: string;
let keyFile: string;
const bases = new Map<Suite, string>();

/** What each role must have installed from the card, per Debian release. */
const VERSIONS: Record<Suite, Record<string, { name: string; version: RegExp }[]>> = {
  trixie: {
    lb: [{ name: 'haproxy', version: /^3\.0\./ }],
    primary: [{ name: 'postgresql-17', version: /^17\./ }, { name: 'nginx', version: /^1\.26\./ }],
  },
  bookworm: {
    lb: [{ name: 'haproxy', version: /^2\.6\./ }],
    primary: [{ name: 'postgresql-15', version: /^15\./ }, { name: 'nginx', version: /^1\.22\./ }],
  },
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pibake-boot-build-'));
  keyFile = join(dir, 'admin_ed25519');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pibake-boot-test', '-f', keyFile]);
  // Built (minutes) or found in the cache before the tests' own clocks start.
  for (const suite of bootSuites()) bases.set(suite, await ensureTestBase('amd64', suite));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.each(bootSuites())('pibake-built lb1 and web1 on the %s test base, booted offline', (suite) => {
  it('come up with their roles installed from the card', async () => {
    const base = bases.get(suite)!;
    const firstBoot = (await openRaspiosImage(base)).generation === 'trixie' ? 'cloud-init' : 'firstrun';
    expect(firstBoot).toBe(suite === 'trixie' ? 'cloud-init' : 'firstrun');
    const work = join(dir, suite);
    await execa('mkdir', ['-p', work]);
    const t0 = Date.now();
    const { config, out, log } = await buildBootCluster(work, base, keyFile);
    console.log(`${suite}: pibake build of lb1 and web1 in ${((Date.now() - t0) / 1000).toFixed(0)} s\n${log.split('\n').filter((l) => /carrying|warning/.test(l)).join('\n')}`);

    const roles = await loadRoles(join(ROOT, 'roles'));
    const inventory = await loadInventory(config, roles);
    const manifest = JSON.parse(await readFile(join(out, 'boottest', 'manifest.json'), 'utf8')) as { nodes: Record<string, { files: Record<string, string> }> };
    for (const node of ['lb1', 'web1']) {
      const image = join(out, 'boottest', `${node}.img`);
      // The images themselves, judged by tools that share no code with pibake.
      await expectCleanImage(image);
      const root = (await sfdiskJson(image)).partitions[1]!;
      expect((root.start + root.size) * 512, `${node}: the root partition ends where the image ends (first-boot resize)`)
        .toBe((await openRaspiosImage(image)).layout.sizeBytes);
      // Every carried .deb is in the image, byte for byte the file apt verified against the archive.
      const offset = root.start * 512;
      const carried = Object.entries(manifest.nodes[node]!.files).filter(([k]) => k.startsWith('carry:') && k.endsWith('.deb'));
      expect(carried.length, `${node} carries .debs`).toBeGreaterThan(0);
      const index = (await debugfsCat(image, offset, '/var/lib/pibake/packages/Packages')).toString('utf8');
      const listing = await debugfs(image, offset, 'ls -p /var/lib/pibake/packages');
      for (const [, sha] of carried) {
        const stanza = index.split('\n\n').find((st) => st.includes(`\nSHA256: ${sha}\n`) || st.endsWith(`\nSHA256: ${sha}`));
        const name = /^Filename: \.\/(.+)$/m.exec(stanza ?? '')?.[1];
        expect(name, `${node}: an index record for ${sha}`).toBeDefined();
        expect(listing, `${node}: ${name}`).toContain(`/${name}/`);
        const data = await debugfsCat(image, offset, `/var/lib/pibake/packages/${name}`);
        expect(createHash('sha256').update(data).digest('hex'), `${node}: ${name} read back`).toBe(sha);
      }
    }

    const reports = await Promise.all(['lb1', 'web1'].map(async (node) => {
      const role = inventory.nodes.find((n) => n.name === node)!.role;
      const services = (roles.get(role)?.services ?? []).map((s) => s.replace(/\.service$/, ''));
      const expected = expectationsFor(inventory, node, { keyFile, services, firstBoot, packages: VERSIONS[suite][role] });
      const report = await bootAndCheck(join(out, 'boottest', `${node}.img`), expected, {
        bootTimeoutMs: 25 * 60_000,
        keepConsoleAs: consoleLogPath(`${suite}-${node}`),
      });
      return `${node} ${report.cloudInitSeconds.toFixed(0)} s`;
    }));
    console.log(`${suite}: first boot offline, qemu start to pibake-firstboot done: ${reports.join(', ')}`);
  });
});
