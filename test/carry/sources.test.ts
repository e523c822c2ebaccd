/**
 * The image's apt sources as apt reads them, from files shaped like Raspberry Pi OS's own:
 * trixie's deb822 debian.sources and raspi.sources (pi-gen stage0), bookworm's one-line
 * sources.list and raspi.list.
 */
import { describe, expect, it } from 'vitest';
import { formatError } from '../../builder/common/errors.ts';
import { applyMirrors, keyringPaths, parseSourcesFile, renderDeb822 } from '../../builder/carry/sources.ts';

const DEBIAN_SOURCES = `Types: deb
URIs: http://deb.debian.org/debian/
Suites: trixie trixie-updates
Components: main contrib non-free non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp

Types: deb
URIs: http://deb.debian.org/debian-security/
Suites: trixie-security
Components: main contrib non-free non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp
`;

const RASPI_SOURCES = `Types: deb
URIs: http://archive.raspberrypi.com/debian/
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/raspberrypi-archive-keyring.pgp
`;

describe('parseSourcesFile', () => {
  it('reads trixie Lite\'s deb822 debian.sources and raspi.sources', () => {
    const debian = parseSourcesFile('/etc/apt/sources.list.d/debian.sources', DEBIAN_SOURCES);
    expect(debian).toEqual([
      {
        uris: ['http://deb.debian.org/debian/'], suites: ['trixie', 'trixie-updates'], components: ['main', 'contrib', 'non-free', 'non-free-firmware'],
        signedBy: { files: ['/usr/share/keyrings/debian-archive-keyring.pgp'], fingerprints: [] }, origin: '/etc/apt/sources.list.d/debian.sources:1',
      },
      {
        uris: ['http://deb.debian.org/debian-security/'], suites: ['trixie-security'], components: ['main', 'contrib', 'non-free', 'non-free-firmware'],
        signedBy: { files: ['/usr/share/keyrings/debian-archive-keyring.pgp'], fingerprints: [] }, origin: '/etc/apt/sources.list.d/debian.sources:7',
      },
    ]);
    const raspi = parseSourcesFile('/etc/apt/sources.list.d/raspi.sources', RASPI_SOURCES);
    expect(keyringPaths([...debian, ...raspi])).toEqual(['/usr/share/keyrings/debian-archive-keyring.pgp', '/usr/share/keyrings/raspberrypi-archive-keyring.pgp']);
  });

  it('reads bookworm Lite\'s one-line sources.list and raspi.list, with options and comments', () => {
    const list = parseSourcesFile('/etc/apt/sources.list', [
      'deb http://deb.debian.org/debian bookworm main contrib non-free non-free-firmware',
      'deb http://deb.debian.org/debian-security/ bookworm-security main contrib non-free non-free-firmware',
      '# Uncomment deb-src lines below then \'apt-get update\' to enable \'apt-get source\'',
      '#deb-src http://deb.debian.org/debian bookworm main contrib non-free non-free-firmware',
      'deb-src http://deb.debian.org/debian bookworm main',
      'deb [arch=arm64,armhf signed-by=/usr/share/keyrings/raspberrypi-archive-keyring.gpg] http://archive.raspberrypi.com/debian/ bookworm main # Raspberry Pi',
      '',
    ].join('\n'));
    expect(list.map((s) => [s.uris[0], s.suites[0], s.components.join(' '), s.origin])).toEqual([
      ['http://deb.debian.org/debian', 'bookworm', 'main contrib non-free non-free-firmware', '/etc/apt/sources.list:1'],
      ['http://deb.debian.org/debian-security/', 'bookworm-security', 'main contrib non-free non-free-firmware', '/etc/apt/sources.list:2'],
      ['http://archive.raspberrypi.com/debian/', 'bookworm', 'main', '/etc/apt/sources.list:6'],
    ]);
    expect(list[0]!.signedBy).toBeUndefined(); // bookworm: keys in trusted.gpg.d
    expect(list[2]).toMatchObject({ architectures: ['arm64', 'armhf'], signedBy: { files: ['/usr/share/keyrings/raspberrypi-archive-keyring.gpg'] } });
  });

  it('keeps an inline Signed-By key, skips disabled stanzas, and says where a broken line is', () => {
    const inline = parseSourcesFile('/etc/apt/sources.list.d/x.sources', [
      'Types: deb', 'URIs: https://example.org/apt', 'Suites: stable/', 'Signed-By:', ' -----BEGIN PGP PUBLIC KEY BLOCK-----', ' .', ' mQINBF', ' -----END PGP PUBLIC KEY BLOCK-----',
      '', 'Enabled: no', 'Types: deb', 'URIs: http://off.example.org/', 'Suites: x', 'Components: main', '',
    ].join('\n'));
    expect(inline).toHaveLength(1);
    expect(inline[0]!.components).toEqual([]);
    expect(inline[0]!.signedBy).toEqual({ inline: '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF\n-----END PGP PUBLIC KEY BLOCK-----\n' });
    expect(renderDeb822(inline, (p) => p)).toContain('Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBF\n');
    const broken = (() => { try { parseSourcesFile('/etc/apt/sources.list', 'deb http://x\n'); } catch (e) { return e; } })();
    expect(formatError(broken)).toEqual(['error: /etc/apt/sources.list:1: not a sources.list line: deb http://x (hint: apt expects "deb [options] URI SUITE [COMPONENT...]")']);
  });
});

describe('applyMirrors and renderDeb822', () => {
  it('moves the sources a mirror stands in for, keeping suites and keys; the rest stays the image\'s', () => {
    const sources = [...parseSourcesFile('/etc/apt/sources.list.d/debian.sources', DEBIAN_SOURCES), ...parseSourcesFile('/etc/apt/sources.list.d/raspi.sources', RASPI_SOURCES)];
    const mirrored = applyMirrors(sources, [{ from: 'http://deb.debian.org/debian', to: 'http://mirror.lan/debian' }]);
    expect(mirrored.map((s) => s.uris[0])).toEqual(['http://mirror.lan/debian/', 'http://deb.debian.org/debian-security/', 'http://archive.raspberrypi.com/debian/']);
    const text = renderDeb822(mirrored, (p) => `/cache/keyrings/${p.split('/').pop()}`);
    expect(text).toBe([
      '# /etc/apt/sources.list.d/debian.sources:1', 'Types: deb', 'URIs: http://mirror.lan/debian/', 'Suites: trixie trixie-updates',
      'Components: main contrib non-free non-free-firmware', 'Signed-By: /cache/keyrings/debian-archive-keyring.pgp', '',
      '# /etc/apt/sources.list.d/debian.sources:7', 'Types: deb', 'URIs: http://deb.debian.org/debian-security/', 'Suites: trixie-security',
      'Components: main contrib non-free non-free-firmware', 'Signed-By: /cache/keyrings/debian-archive-keyring.pgp', '',
      '# /etc/apt/sources.list.d/raspi.sources:1', 'Types: deb', 'URIs: http://archive.raspberrypi.com/debian/', 'Suites: trixie',
      'Components: main', 'Signed-By: /cache/keyrings/raspberrypi-archive-keyring.pgp', '',
    ].join('\n'));
  });
});
