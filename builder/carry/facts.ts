/**
 * What apt on the build machine must know about a base image to resolve packages the way apt on
 * the card would: its package database, architectures, apt sources and the keyrings they trust.
 * Read from the image's root filesystem with debugfs (no root, no mount); the parsing is pure.
 */
import { PibakeError } from '../common/errors.ts';
import type { Ext4Fs } from '../image/ext4.ts';
import { keyringPaths, parseSourcesFile, type AptSource } from './sources.ts';

export interface AptFacts {
  /** dpkg's native architecture (the Architecture of the installed `dpkg` package). */
  architecture: string;
  /** Further architectures dpkg was told about (`dpkg --add-architecture`, /var/lib/dpkg/arch). */
  foreignArchitectures: string[];
  /** /var/lib/dpkg/status as the image has it: apt resolves against exactly these packages. */
  status: Buffer;
  /** Installed packages (status "install ok installed") and their versions. */
  installed: Map<string, string>;
  sources: AptSource[];
  /** Keyring files named by Signed-By, by their path in the image. */
  keyrings: Map<string, Buffer>;
  /** /etc/apt/trusted.gpg and trusted.gpg.d/*: the keys of sources without Signed-By. */
  trusted: Map<string, Buffer>;
  /** /etc/apt/preferences and preferences.d/*: pinning changes what apt picks. */
  preferences: Map<string, Buffer>;
}

const STATUS = '/var/lib/dpkg/status';
const NO_FACTS_HINT = 'use the Raspberry Pi OS image as released (its package database is part of it), or build with --packages online';

/** One stanza per package of a dpkg status file, with the fields pibake uses. */
export function parseStatusStanzas(text: string): { name: string; architecture: string; version: string; installed: boolean }[] {
  return text.split(/\n\s*\n/).flatMap((stanza) => {
    const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'mi').exec(stanza)?.[1]?.trim();
    const name = field('Package');
    if (!name) return [];
    return [{ name, architecture: field('Architecture') ?? '', version: field('Version') ?? '', installed: field('Status')?.split(/\s+/)[2] === 'installed' }];
  });
}

/** dpkg's own architecture: what its installed `dpkg` package was built for. */
export function nativeArchitecture(statusText: string, where: string): string {
  const dpkg = parseStatusStanzas(statusText).find((p) => p.name === 'dpkg' && p.installed);
  if (!dpkg?.architecture || dpkg.architecture === 'all') {
    throw new PibakeError(`${where}: the package database names no installed dpkg, so the image's architecture is unknown`, { hint: NO_FACTS_HINT });
  }
  return dpkg.architecture;
}

/** The image's /var/lib/dpkg/status, or one line saying it cannot be read and what to do. */
export async function readStatus(root: Ext4Fs, imagePath: string): Promise<Buffer> {
  return root.readFile(STATUS).catch((error: unknown) => {
    throw new PibakeError(`${imagePath}: cannot read the base image's package database ${STATUS} (${(error as Error).message.replace(/^.*: \/var\/lib\/dpkg\/status /, '')})`, {
      hint: NO_FACTS_HINT, cause: error,
    });
  });
}

export async function readAptFacts(root: Ext4Fs, imagePath: string): Promise<AptFacts> {
  const status = await readStatus(root, imagePath);
  const statusText = status.toString('utf8');
  const stanzas = parseStatusStanzas(statusText);
  const architecture = nativeArchitecture(statusText, `${imagePath}: ${STATUS}`);
  const archFile = await readOptional(root, '/var/lib/dpkg/arch');
  const foreignArchitectures = (archFile?.toString('utf8') ?? '').split(/\s+/).filter((a) => a !== '' && a !== architecture);

  const sources: AptSource[] = [];
  const listFile = await readOptional(root, '/etc/apt/sources.list');
  if (listFile) sources.push(...parseSourcesFile('/etc/apt/sources.list', listFile.toString('utf8')));
  for (const name of await fileNames(root, '/etc/apt/sources.list.d', /\.(list|sources)$/)) {
    const path = `/etc/apt/sources.list.d/${name}`;
    sources.push(...parseSourcesFile(path, (await root.readFile(path)).toString('utf8')));
  }
  if (sources.length === 0) {
    throw new PibakeError(`${imagePath}: the base image lists no apt sources (/etc/apt/sources.list, sources.list.d/)`, {
      hint: 'pibake resolves the role packages against the image\'s own sources; use an image that has them, or build with --packages online',
    });
  }

  const keyrings = new Map<string, Buffer>();
  for (const path of keyringPaths(sources)) {
    const data = await readOptional(root, path);
    if (!data) {
      const user = sources.find((s) => s.signedBy && 'files' in s.signedBy && s.signedBy.files.includes(path));
      throw new PibakeError(`${imagePath}: the keyring ${path} named by ${user?.origin ?? 'the apt sources'} is missing from the image`, {
        hint: 'apt on the card could not verify that source either; fix the image or build with --packages online',
      });
    }
    keyrings.set(path, data);
  }
  const trusted = new Map<string, Buffer>();
  const legacy = await readOptional(root, '/etc/apt/trusted.gpg');
  if (legacy) trusted.set('/etc/apt/trusted.gpg', legacy);
  for (const name of await fileNames(root, '/etc/apt/trusted.gpg.d', /\.(gpg|asc)$/)) {
    trusted.set(`/etc/apt/trusted.gpg.d/${name}`, await root.readFile(`/etc/apt/trusted.gpg.d/${name}`));
  }
  const preferences = new Map<string, Buffer>();
  const pinning = await readOptional(root, '/etc/apt/preferences');
  if (pinning) preferences.set('/etc/apt/preferences', pinning);
  // apt reads preferences.d files without an extension or ending in .pref.
  for (const name of await fileNames(root, '/etc/apt/preferences.d', /^([^.]+|.*\.pref)$/)) {
    preferences.set(`/etc/apt/preferences.d/${name}`, await root.readFile(`/etc/apt/preferences.d/${name}`));
  }

  return {
    architecture,
    foreignArchitectures,
    status,
    installed: new Map(stanzas.filter((p) => p.installed).map((p) => [p.name, p.version])),
    sources,
    keyrings,
    trusted,
    preferences,
  };
}

async function readOptional(root: Ext4Fs, path: string): Promise<Buffer | undefined> {
  const info = await root.stat(path);
  if (!info) return undefined;
  return root.readFile(path);
}

/** Regular files (or links to them) of a directory whose names match, sorted as apt reads them. */
async function fileNames(root: Ext4Fs, dir: string, pattern: RegExp): Promise<string[]> {
  const entries = (await root.list(dir)) ?? [];
  return entries.filter((e) => (e.kind === 'file' || e.kind === 'symlink') && pattern.test(e.name)).map((e) => e.name).sort();
}
