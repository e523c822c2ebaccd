/**
 * A small signed Debian archive made here, served over HTTP on 127.0.0.1, and a base image whose
 * apt facts are shaped like Raspberry Pi OS trixie Lite's (arm64 with armhf added, deb822
 * debian.sources and raspi.sources with Signed-By keyrings, a dpkg status) pointing at it. The
 * archive is real to apt: .debs built by dpkg-deb, Packages and Release with SHA256, InRelease
 * clear-signed by gpg with a key made for the run. raspi.sources points where nothing answers.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import path from 'node:path';
import { execa } from 'execa';
import type { Ext4Fs } from '../../builder/image/ext4.ts';
import { openRaspiosImage } from '../../builder/image/raspios.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { freePort } from '../helpers/qemu.ts';

export interface FixturePackage {
  name: string;
  version: string;
  architecture: string;
  depends?: string;
  /** Bytes of payload (random, so the .deb does not compress away). */
  payloadBytes?: number;
}

/** The archive: trixie and trixie-updates, main, arm64 and amd64. */
export const PACKAGES: FixturePackage[] = [
  { name: 'pibake-demo', version: '1.0-1', architecture: 'arm64', depends: 'pibake-lib (>= 1.0), libfoo' },
  { name: 'pibake-demo', version: '1.0-1', architecture: 'amd64', depends: 'pibake-lib (>= 1.0), libfoo' },
  { name: 'pibake-lib', version: '1:1.2-3', architecture: 'arm64', payloadBytes: 200_000 },
  { name: 'pibake-lib', version: '1:1.2-3', architecture: 'amd64' },
  { name: 'libfoo', version: '2.0-1', architecture: 'arm64' },
  { name: 'amd64-only', version: '0.1-1', architecture: 'amd64' },
];

/** Installed on the image: libfoo is there already, pibake-demo and pibake-lib are not. */
export const STATUS = ['dpkg', 'base-files', 'libc6', 'libfoo'].map((name) => [
  `Package: ${name}`, 'Status: install ok installed', 'Priority: required', 'Section: admin', 'Installed-Size: 100',
  'Maintainer: Raspberry Pi OS <pibake@invalid>', 'Architecture: arm64', `Version: ${name === 'libfoo' ? '2.0-1' : '1.0'}`,
  `Description: ${name}`, '',
].join('\n')).join('\n');

export class FixtureArchive {
  private server?: Server;
  port = 0;
  /** Requests seen, by path. */
  readonly requests: string[] = [];
  /** Serve a .deb with one byte changed (the signed index then no longer matches it). */
  tamper = false;

  constructor(readonly dir: string) {}

  get keyring(): string {
    return path.join(this.dir, 'archive-keyring.pgp');
  }

  /** Builds the archive, signed by a key made now (or by `signingHome`'s key: a wrong signature). */
  static async make(dir: string, options: { gnupgHome?: string } = {}): Promise<FixtureArchive> {
    const archive = new FixtureArchive(dir);
    const repo = path.join(dir, 'debian');
    await mkdir(path.join(repo, 'pool/main'), { recursive: true });
    const home = options.gnupgHome ?? await makeKey(path.join(dir, 'gnupg'));
    // Binary: execa would otherwise strip a last byte that happens to be 0x0a, and apt would find no key.
    await writeFile(archive.keyring, (await execa('gpg', ['--homedir', home, '--export'], { encoding: 'buffer', stripFinalNewline: false })).stdout);
    const stanzas: Record<string, string[]> = { arm64: [], amd64: [] };
    for (const pkg of PACKAGES) {
      const deb = await buildDeb(path.join(dir, 'build'), pkg);
      const file = `pool/main/${path.basename(deb)}`;
      await execa('mv', [deb, path.join(repo, file)]);
      const data = await readFile(path.join(repo, file));
      const control = (await execa('dpkg-deb', ['-f', path.join(repo, file)])).stdout.trim();
      stanzas[pkg.architecture]!.push(`${control}\nFilename: ${file}\nSize: ${data.length}\nSHA256: ${sha256(data)}\n`);
    }
    for (const suite of ['trixie', 'trixie-updates']) {
      const release: string[] = [];
      for (const arch of ['arm64', 'amd64']) {
        const rel = `main/binary-${arch}/Packages`;
        const text = suite === 'trixie' ? stanzas[arch]!.join('\n') : '';
        await mkdir(path.join(repo, 'dists', suite, path.dirname(rel)), { recursive: true });
        await writeFile(path.join(repo, 'dists', suite, rel), text);
        release.push(` ${sha256(Buffer.from(text))} ${Buffer.byteLength(text)} ${rel}`);
      }
      const releaseText = [`Origin: pibake-test`, `Label: pibake-test`, `Suite: ${suite}`, `Codename: ${suite}`,
        'Date: Sat, 01 Nov 2025 00:00:00 UTC', 'Architectures: arm64 amd64', 'Components: main', 'SHA256:', ...release, ''].join('\n');
      await writeFile(path.join(repo, 'dists', suite, 'Release'), releaseText);
      await execa('gpg', ['--homedir', home, '--batch', '--yes', '--clearsign', '-o', path.join(repo, 'dists', suite, 'InRelease'), path.join(repo, 'dists', suite, 'Release')]);
    }
    return archive;
  }

  async serve(): Promise<string> {
    this.port = await freePort();
    this.server = createServer((req, res) => {
      const url = decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/');
      this.requests.push(url);
      const file = path.join(this.dir, path.normalize(url).replace(/^(\.\.[/\\])+/, ''));
      readFile(file).then((data) => {
        if (this.tamper && file.endsWith('.deb')) data[data.length - 1] = (data[data.length - 1] as number) ^ 0xff;
        res.writeHead(200, { 'content-length': data.length });
        res.end(data);
      }, () => {
        res.writeHead(404);
        res.end();
      });
    });
    this.server.listen(this.port, '127.0.0.1');
    await once(this.server, 'listening');
    return `http://127.0.0.1:${this.port}/debian/`;
  }

  async close(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
    this.server = undefined;
  }
}

async function makeKey(home: string): Promise<string> {
  await mkdir(home, { recursive: true, mode: 0o700 });
  await execa('gpg', ['--homedir', home, '--batch', '--passphrase', '', '--quick-generate-key', 'pibake test archive <test@pibake.invalid>', 'ed25519', 'sign', 'never']);
  return home;
}

/** A fresh key elsewhere: an archive signed by it does not verify with the fixture image's keyring. */
export async function otherKey(dir: string): Promise<string> {
  return makeKey(path.join(dir, 'other-gnupg'));
}

async function buildDeb(work: string, pkg: FixturePackage): Promise<string> {
  const root = path.join(work, `${pkg.name}-${pkg.architecture}`);
  await rm(root, { recursive: true, force: true });
  await mkdir(path.join(root, 'DEBIAN'), { recursive: true });
  await mkdir(path.join(root, 'usr/share', pkg.name), { recursive: true });
  const payload = Buffer.alloc(pkg.payloadBytes ?? 64);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 2654435761) >>> 24;
  await writeFile(path.join(root, 'usr/share', pkg.name, 'payload'), payload);
  await writeFile(path.join(root, 'DEBIAN/control'), [`Package: ${pkg.name}`, `Version: ${pkg.version}`, `Architecture: ${pkg.architecture}`,
    'Maintainer: pibake tests <test@pibake.invalid>', `Installed-Size: ${Math.ceil(payload.length / 1024) + 4}`,
    ...(pkg.depends ? [`Depends: ${pkg.depends}`] : []), `Description: ${pkg.name} for pibake's tests`, ''].join('\n'));
  const out = path.join(work, `${pkg.name}_${pkg.version.replace(/^\d+:/, '')}_${pkg.architecture}.deb`);
  await execa('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', root, out]);
  return out;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A small image in the Raspberry Pi OS layout whose apt facts are trixie Lite's, arm64, pointing at
 * `debianUri` (and at `raspiUri` for Raspberry Pi's archive, which answers nothing here).
 */
export async function fixtureImage(
  file: string, archive: FixtureArchive, debianUri: string, raspiUri: string, options: { status?: string | null; occupyMiB?: number } = {},
): Promise<string> {
  await synthesizeRaspiosImage({ path: file, generation: 'trixie', sizeMiB: 200, bootMiB: 64, diskId: '7e57ca55' });
  const image = await openRaspiosImage(file);
  const root: Ext4Fs = image.root;
  const entry = (p: string, data: string | Buffer) => ({ kind: 'file' as const, path: p, mode: 0o644, uid: 0, gid: 0, data: Buffer.from(data) });
  const keyring = await readFile(archive.keyring);
  const changes = [
    entry('/var/lib/dpkg/arch', 'arm64\narmhf\n'),
    entry('/etc/apt/sources.list', ''),
    entry('/etc/apt/sources.list.d/debian.sources', [
      'Types: deb', `URIs: ${debianUri}`, 'Suites: trixie trixie-updates', 'Components: main',
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp', ''].join('\n')),
    entry('/etc/apt/sources.list.d/raspi.sources', [
      'Types: deb', `URIs: ${raspiUri}`, 'Suites: trixie', 'Components: main',
      'Signed-By: /usr/share/keyrings/raspberrypi-archive-keyring.pgp', ''].join('\n')),
    entry('/usr/share/keyrings/debian-archive-keyring.pgp', keyring),
    entry('/usr/share/keyrings/raspberrypi-archive-keyring.pgp', keyring),
  ];
  if (options.status !== null) changes.push(entry('/var/lib/dpkg/status', options.status ?? STATUS));
  await root.apply(changes);
  if (options.occupyMiB) {
    // Incompressible bytes that take that much of the root filesystem (Lite leaves little free).
    const filler = `${file}.filler`;
    await writeFile(filler, randomBytes(options.occupyMiB * 1024 * 1024));
    await root.apply([{ kind: 'copy', path: '/var/cache/filler.bin', source: filler, mode: 0o644, uid: 0, gid: 0 }]);
    await rm(filler);
  }
  if (options.status === null) await root.apply([{ kind: 'delete', path: '/var/lib/dpkg/status' }]);
  return file;
}

export async function exists(file: string): Promise<boolean> {
  return stat(file).then(() => true, () => false);
}
