/**
 * Reading apt's answers, against apt 2.6's own wording (captured from real runs against the
 * Debian archive and the fixture archive), and the room a card needs for what it carries.
 */
import { describe, expect, it } from 'vitest';
import {
  cardFileName, downloadError, indexRecords, installedBytes, packagesIndex, parsePrintUris, parseRemovals, resolutionError,
  unreachableSources, updateError,
} from '../../builder/carry/resolve.ts';
import { roomNeeded, resizesAtFirstBoot } from '../../builder/carry/room.ts';
import { parseSourcesFile } from '../../builder/carry/sources.ts';

const PRINT_URIS = `Reading package lists...
Building dependency tree...
The following additional packages will be installed:
  libjemalloc2 liblua5.4-0
The following NEW packages will be installed:
  haproxy libjemalloc2 liblua5.4-0
0 upgraded, 3 newly installed, 0 to remove and 0 not upgraded.
Need to get 3049 kB of archives.
After this operation, 7604 kB of additional disk space will be used.
'http://deb.debian.org/debian/pool/main/j/jemalloc/libjemalloc2_5.3.0-3_arm64.deb' libjemalloc2_5.3.0-3_arm64.deb 274324 MD5Sum:ad0341c496ae6206c0504cec3e0db7d9
'http://deb.debian.org/debian/pool/main/l/lua5.4/liblua5.4-0_5.4.7-1%2bb2_arm64.deb' liblua5.4-0_5.4.7-1+b2_arm64.deb 146640 MD5Sum:5145bffab8ebd2e9de40fbbc13248e0e
'http://deb.debian.org/debian-security/pool/updates/main/h/haproxy/haproxy_3.0.11-1%2bdeb13u5_arm64.deb' haproxy_3.0.11-1+deb13u5_arm64.deb 2628116
'http://deb.debian.org/debian/pool/main/o/openssh/openssh-sftp-server_1%3a10.0p1-7_arm64.deb' openssh-sftp-server_1%3a10.0p1-7_arm64.deb 61000 MD5Sum:0a99c30c7aa55fef1108e0b09d530f6e
`;

const sha = (c: string) => c.repeat(64);
const stanza = (name: string, version: string, size: number, digest: string, installed = 100) =>
  `Package: ${name}\nVersion: ${version}\nInstalled-Size: ${installed}\nArchitecture: arm64\nFilename: pool/main/x/${name}.deb\nSize: ${size}\nSHA256: ${digest}\nDescription: ${name}`;

const SOURCES = [
  ...parseSourcesFile('/etc/apt/sources.list.d/debian.sources', 'Types: deb\nURIs: http://deb.debian.org/debian/\nSuites: trixie trixie-updates\nComponents: main\n'),
  ...parseSourcesFile('/etc/apt/sources.list.d/raspi.sources', 'Types: deb\nURIs: http://archive.raspberrypi.com/debian/\nSuites: trixie\nComponents: main\n'),
];
const UPDATE_RASPI_SILENT = `Ign:1 http://archive.raspberrypi.com/debian trixie InRelease
Get:2 http://deb.debian.org/debian trixie InRelease [140 kB]
Err:1 http://archive.raspberrypi.com/debian trixie InRelease
  Could not resolve 'archive.raspberrypi.com'
Reading package lists...
W: Failed to fetch http://archive.raspberrypi.com/debian/dists/trixie/InRelease  Could not resolve 'archive.raspberrypi.com'
W: Some index files failed to download. They have been ignored, or old ones used instead.
`;

describe('apt output', () => {
  it('plans the .debs of --print-uris, whatever hash apt prints (epochs and + decoded)', () => {
    const planned = parsePrintUris(PRINT_URIS);
    expect(planned.map((d) => [d.name, d.version, d.architecture, d.size])).toEqual([
      ['haproxy', '3.0.11-1+deb13u5', 'arm64', 2628116],
      ['libjemalloc2', '5.3.0-3', 'arm64', 274324],
      ['liblua5.4-0', '5.4.7-1+b2', 'arm64', 146640],
      ['openssh-sftp-server', '1:10.0p1-7', 'arm64', 61000],
    ]);
    expect(cardFileName(planned[3]!)).toBe('openssh-sftp-server_10.0p1-7_arm64.deb');
    expect(parseRemovals(PRINT_URIS)).toEqual([]);
    expect(parseRemovals('The following packages will be REMOVED:\n  dhcpcd-base* ifupdown\nThe following NEW packages will be installed:\n  x\n')).toEqual(['dhcpcd-base', 'ifupdown']);
  });

  it('takes each .deb\'s SHA256 from the signed index record of that exact version and size', () => {
    const planned = parsePrintUris(PRINT_URIS).slice(0, 3);
    const show = [
      stanza('haproxy', '3.0.11-1+deb13u4', 2628000, sha('0')), // an older version in another suite
      stanza('haproxy', '3.0.11-1+deb13u5', 2628116, sha('a'), 7000),
      stanza('libjemalloc2', '5.3.0-3', 274324, sha('b'), 600),
      stanza('liblua5.4-0', '5.4.7-1+b2', 146640, sha('c'), 400),
    ].join('\n\n');
    const records = indexRecords(show, planned);
    expect(records.map((r) => r.deb.sha256)).toEqual([sha('a'), sha('b'), sha('c')]);
    const index = packagesIndex(records, cardFileName);
    expect(index).toContain('Package: haproxy\nVersion: 3.0.11-1+deb13u5\nInstalled-Size: 7000\nArchitecture: arm64\nFilename: ./haproxy_3.0.11-1+deb13u5_arm64.deb\n');
    expect(index).not.toContain('deb13u4');
    expect(installedBytes(index)).toBe((7000 + 600 + 400) * 1024);
    expect(() => indexRecords(show.replace(sha('b'), 'nope'), planned)).toThrow(/no index record with a SHA256 for libjemalloc2_5.3.0-3_arm64.deb/);
  });

  it('reports sources that did not answer, and which sources they are', () => {
    const silent = unreachableSources(UPDATE_RASPI_SILENT);
    expect(silent).toEqual([{ url: 'http://archive.raspberrypi.com/debian/dists/trixie/InRelease', reason: "Could not resolve 'archive.raspberrypi.com'" }]);
  });

  it('turns a bad signature into one line with the fix', () => {
    const error = updateError(`W: GPG error: http://deb.debian.org/debian trixie InRelease: The following signatures couldn't be verified because the public key is not available: NO_PUBKEY 6ED0E7B82643E131
E: The repository 'http://deb.debian.org/debian trixie InRelease' is not signed.`);
    expect(error.message).toBe("the package lists of http://deb.debian.org/debian trixie do not verify with the keyring the image names for it: The following signatures couldn't be verified because the public key is not available: NO_PUBKEY 6ED0E7B82643E131");
    expect(error.hint).toMatch(/packages\.mirrors/);
  });

  it('names the missing package, its role, the architecture and the silent sources', () => {
    const context = { architecture: 'arm64', sources: SOURCES, unreachable: unreachableSources(UPDATE_RASPI_SILENT), requestedBy: () => 'lb' };
    const missing = resolutionError('Reading package lists...\nE: Unable to locate package haproxyy\n', context);
    expect(missing.message).toBe('package "haproxyy" (role lb) is not available for arm64 from the image\'s sources: http://deb.debian.org/debian/ trixie trixie-updates, http://archive.raspberrypi.com/debian/ trixie');
    expect(missing.hint).toMatch(/^these did not answer: http:\/\/archive\.raspberrypi\.com.*; name a mirror .* or build with --packages online$/);
    const candidate = resolutionError("E: Package 'rpi-eeprom' has no installation candidate\n", { ...context, unreachable: [] });
    expect(candidate.message).toMatch(/^package "rpi-eeprom" \(role lb\) is not available for arm64/);
    expect(candidate.hint).toMatch(/check the name in roles\/lb\.yaml/);
    const unmet = resolutionError(`The following packages have unmet dependencies:
 pibake-demo : Depends: pibake-lib (>= 2.0) but 1:1.2-3 is to be installed
E: Unable to correct problems, you have held broken packages.
`, context);
    expect(unmet.message).toBe('apt cannot install pibake-demo on this image: Depends pibake-lib (>= 2.0) but 1:1.2-3 is to be installed');
  });

  it('tells a failed download from a tampered one', () => {
    expect(downloadError("E: Failed to fetch http://m/pool/x.deb  Hash Sum mismatch\n   Hashes of expected file:\n").message)
      .toBe("http://m/pool/x.deb does not match the archive's signed index (hash mismatch)");
    expect(downloadError('E: Failed to fetch http://m/pool/x.deb  404  Not Found [IP: 10.0.0.1 80]\n').message)
      .toBe('cannot download http://m/pool/x.deb: 404  Not Found [IP: 10.0.0.1 80]');
  });
});

describe('room for what a card carries', () => {
  it('counts whole blocks and a margin; without a first-boot resize, the installed size too', () => {
    const MiB = 1024 * 1024;
    expect(roomNeeded({ files: [1, 4096, 4097], installedBytes: 100 * MiB, resizesAtFirstBoot: true, blockSize: 4096 })).toBe(4 * 4096 + 32 * MiB);
    expect(roomNeeded({ files: [], installedBytes: 100 * MiB, resizesAtFirstBoot: false, blockSize: 4096 })).toBe(125 * MiB + 256 * MiB + 32 * MiB);
  });

  it('knows which cmdline.txt grows the root partition at first boot', () => {
    expect(resizesAtFirstBoot('console=serial0,115200 console=tty1 root=PARTUUID=a1b2c3d4-02 rootfstype=ext4 fsck.repair=yes rootwait quiet splash resize\n')).toBe(true);
    expect(resizesAtFirstBoot('console=tty1 root=PARTUUID=a1b2c3d4-02 rootwait init=/usr/lib/raspberrypi-sys-mods/firstboot\n')).toBe(true);
    expect(resizesAtFirstBoot('console=tty1 root=PARTUUID=10e1250e-02 rootfstype=ext4 fsck.repair=yes rootwait net.ifnames=0\n')).toBe(false);
  });
});
