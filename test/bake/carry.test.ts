/**
 * `pibake build` carrying role packages (the default), through the real command line, against a
 * signed archive served on 127.0.0.1 and a base whose apt facts are shaped like Raspberry Pi OS
 * trixie Lite's: the card gets exactly the .debs its role lacks as a local repository, its root
 * filesystem grown when they do not fit, `pibake inspect` shows the room before and after; and
 * every way fetching can fail is one line with the fix, leaving nothing that looks finished.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/qemu.ts';
import { debugfs, debugfsCat, expectCleanImage, partitionOffsets, runPibake } from '../helpers/image.ts';
import { FixtureArchive, fixtureImage, otherKey } from '../carry/repo-fixture.ts';

let dir: string;
let archive: FixtureArchive;
let debianUri: string;
let raspiUri: string;
let cache: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pibake-carry-build-'));
  archive = await FixtureArchive.make(path.join(dir, 'archive'));
  debianUri = await archive.serve();
  // Raspberry Pi's archive, on another host address, where nothing answers.
  raspiUri = `http://127.0.0.2:${await freePort()}/raspi/`;
  cache = path.join(dir, 'cache');
}, 120_000);
afterAll(async () => {
  await archive?.close();
  await rm(dir, { recursive: true, force: true });
});

/** A project: its own roles (lb needs pibake-demo), a base image, cluster.yaml with `packages`. */
async function project(name: string, options: { packages?: string; lbPackages?: string[]; status?: string | null; occupyMiB?: number } = {}) {
  const root = path.join(dir, name);
  await mkdir(path.join(root, 'roles'), { recursive: true });
  await mkdir(path.join(root, 'overlays/empty'), { recursive: true });
  await writeFile(path.join(root, 'roles/lb.yaml'), `tags: [load-balancer]\noverlays: [empty]\npackages: [${(options.lbPackages ?? ['pibake-demo']).join(', ')}]\n`);
  await writeFile(path.join(root, 'roles/primary.yaml'), 'tags: [web, postgresql, postgresql-primary]\noverlays: [empty]\n');
  const base = await fixtureImage(path.join(root, 'base.img'), archive, debianUri, raspiUri, options);
  await writeFile(path.join(root, 'cluster.yaml'), [
    'cluster: { name: carry, domain: carry.lan }',
    'network: { cidr: 10.0.0.0/24, gateway: 10.0.0.1 }',
    `base: { path: ${base} }`,
    'admin: { user: pi, ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAzBWgULh9SpzEg34Rhct3qPTRY1UYKuFP7D06b1rpaR t@t"], generate_ssh_key: false }',
    'nodes:',
    '  - { name: lb1, role: lb, ip: 10.0.0.10 }',
    '  - { name: db1, role: primary, ip: 10.0.0.11 }',
    ...(options.packages ? [options.packages] : []),
    '',
  ].join('\n'));
  const out = path.join(root, 'out');
  const build = () => runPibake(['build', '--config', path.join(root, 'cluster.yaml'), '--out', out, '--cache-dir', cache, '--node', 'lb1', '--jobs', '1']);
  return { root, out, build };
}

/** One line on stderr, exit 1, and no image in the output folder (nor anything half-written). */
async function expectFailure(result: { exitCode: number; stderr: string }, out: string, pattern: RegExp): Promise<void> {
  expect(result.exitCode, result.stderr).toBe(1);
  const lines = result.stderr.trim().split('\n').filter((l) => l.startsWith('error: '));
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
  const files = await readdir(path.join(out, 'carry')).catch(() => [] as string[]);
  expect(files.filter((f) => f.endsWith('.img') || f.endsWith('.partial'))).toEqual([]);
}

describe('pibake build carrying role packages', () => {
  it('carries exactly the missing .debs, grows the root filesystem for them, and inspect shows the room', async () => {
    const { out, build } = await project('ok', { occupyMiB: 90 });
    const result = await build();
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/role lb: carrying pibake-demo — 2 \.debs, [\d.]+ KiB \([\d.]+ [KM]iB installed; 2 fetched, 0 cached\)/);
    expect(result.stderr).toMatch(/warning: http:\/\/127\.0\.0\.2:\d+\/raspi\/dists\/trixie\/InRelease did not answer/);
    expect(result.stderr).toMatch(/lb1: grow root filesystem/);
    const image = path.join(out, 'carry', 'lb1.img');
    await expectCleanImage(image);
    const { root } = await partitionOffsets(image);
    const listing = await debugfs(image, root, 'ls -p /var/lib/pibake/packages');
    expect(listing.match(/\/[^/]+\.deb\//g)?.sort()).toEqual(['/pibake-demo_1.0-1_arm64.deb/', '/pibake-lib_1.2-3_arm64.deb/']);
    const index = (await debugfsCat(image, root, '/var/lib/pibake/packages/Packages')).toString();
    for (const name of ['pibake-demo_1.0-1_arm64.deb', 'pibake-lib_1.2-3_arm64.deb']) {
      const served = await readFile(path.join(archive.dir, 'debian/pool/main', name));
      const sha = createHash('sha256').update(served).digest('hex');
      expect(index).toContain(`Filename: ./${name}\n`);
      expect(index).toContain(`SHA256: ${sha}\n`);
      expect((await debugfsCat(image, root, `/var/lib/pibake/packages/${name}`)).equals(served)).toBe(true);
    }
    expect((await debugfsCat(image, root, '/usr/local/lib/pibake/firstboot.sh')).toString()).toContain('PACKAGES=(pibake-demo)\nSERVICES=()\nFIRSTBOOT=()\nSOURCE=card\n');

    const inspect = JSON.parse((await runPibake(['inspect', '--json', image])).stdout) as { carried?: { debs: number; debBytes: number }; room?: { baseFreeBytes: number; grownBytes: number; freeBytes: number } };
    expect(inspect.carried?.debs).toBe(2);
    expect(inspect.room?.grownBytes).toBeGreaterThan(0);
    expect(inspect.room!.freeBytes).toBeGreaterThan(inspect.room!.baseFreeBytes);
    const text = (await runPibake(['inspect', image])).stdout;
    expect(text).toMatch(/^root room +[\d.]+ [KMG]iB free before pibake, [\d.]+ [KMG]iB now \(grown by [\d.]+ [KMG]iB\); carries 2 \.debs/m);

    // Unchanged inputs, a second build: nothing fetched, nothing baked.
    const again = await build();
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/2 fetched|0 fetched, 2 cached/);
    expect(again.stderr).toMatch(/lb1: up to date/);
  });

  it('a sealed build carries the same packages and grows the card alike: same size, same room and packages in the card\'s manifest', async () => {
    const { root, out, build } = await project('sealed', { occupyMiB: 90 });
    // A secret-bearing file big enough to change the growth if a sealed build (which leaves it out)
    // did not count it.
    await mkdir(path.join(root, 'overlays/secret/etc'), { recursive: true });
    await writeFile(path.join(root, 'overlays/secret/etc/demo.conf.hbs'), `password={{secrets.demo_password}}\n${`#${' '.repeat(62)}\n`.repeat(64 * 1024)}`);
    await writeFile(path.join(root, 'roles/lb.yaml'),
      'tags: [load-balancer]\noverlays: [empty, secret]\npackages: [pibake-demo]\nsecrets: [demo_password]\nfiles: { /etc/demo.conf: { mode: "0600" } }\n');
    const plain = await build();
    expect(plain.exitCode, plain.stderr).toBe(0);
    const sealedOut = path.join(root, 'sealed');
    const sealed = await runPibake(['build', '--config', path.join(root, 'cluster.yaml'), '--out', sealedOut, '--cache-dir', cache, '--node', 'lb1', '--jobs', '1', '--sealed']);
    expect(sealed.exitCode, sealed.stderr).toBe(0);
    const images = [path.join(out, 'carry', 'lb1.img'), path.join(sealedOut, 'carry', 'lb1.img')];
    const cards = await Promise.all(images.map(async (image) => {
      const { root: offset } = await partitionOffsets(image);
      return {
        size: (await stat(image)).size,
        manifest: JSON.parse((await debugfsCat(image, offset, '/etc/pibake/manifest.json')).toString()) as { room: { grownBytes: number }; packages: { debs: number } },
      };
    }));
    expect(cards[0]!.manifest.room.grownBytes).toBeGreaterThan(0);
    expect(cards[0]!.manifest.packages.debs).toBe(2);
    expect(JSON.parse(await readFile(path.join(sealedOut, 'carry/manifest.json'), 'utf8')).nodes.lb1.secretFiles).toContain('/etc/demo.conf');
    expect(cards[1]!.size).toBe(cards[0]!.size);
    // The card's record is the same whether sealed or not (its digest is the public one).
    expect(cards[1]!.manifest).toEqual(cards[0]!.manifest);
  });

  it('unreadable package database: one line, nothing finished', async () => {
    const { out, build } = await project('nostatus', { status: null });
    await expectFailure(await build(), out, /^error: .*base\.img: cannot read the base image's package database \/var\/lib\/dpkg\/status \(does not exist in the root filesystem\) \(hint: .*--packages online\)$/);
  });

  it('a package missing for the image\'s architecture: one line, nothing finished', async () => {
    const { out, build } = await project('arch', { lbPackages: ['amd64-only'] });
    await expectFailure(await build(), out, /^error: package "amd64-only" \(role lb\) is not available for arm64 from the image's sources: .*\(hint: these did not answer: .*--packages online\)$/);
  });

  it('a mirror that does not answer: one line with the fix, nothing finished', async () => {
    const dead = `http://127.0.0.3:${await freePort()}/debian`;
    const { out, build } = await project('mirror', { packages: `packages: { mirrors: [{ from: ${debianUri}, to: ${dead} }] }` });
    await expectFailure(await build(), out, /^error: no package source of the image answered: http:\/\/127\.0\.0\.3:\d+\/debian\/dists\/trixie\/InRelease .*\(hint: name a mirror \(packages\.mirrors in cluster\.yaml\) or a proxy \(packages\.proxy\) this machine can reach, or build with --packages online\)$/);
  });

  it('a bad signature: one line, nothing finished', async () => {
    const forged = await FixtureArchive.make(path.join(dir, 'forged'), { gnupgHome: await otherKey(dir) });
    const uri = await forged.serve();
    try {
      const { out, build } = await project('forged', { packages: `packages: { mirrors: [{ from: ${debianUri}, to: ${uri} }] }` });
      await expectFailure(await build(), out, /^error: the package lists of http:\/\/127\.0\.0\.1:\d+\/debian trixie(-updates)? do not verify with the keyring the image names for it: .*NO_PUBKEY/);
    } finally {
      await forged.close();
    }
  });

  it('no room even after growing: one line, nothing finished', async () => {
    const { out, build } = await project('full', { occupyMiB: 90, packages: 'packages: { max_image_size: 200MB }' });
    await expectFailure(await build(), out, /^error: no room for the carried packages: the image would grow to \d+ MB, more than packages\.max_image_size \(200 MB\) \(hint: raise packages\.max_image_size/);
  });
});
