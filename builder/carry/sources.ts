/**
 * The base image's apt sources, as apt itself reads them: one-line `.list` files
 * (`deb [signed-by=…] URI SUITE COMPONENT…`) and deb822 `.sources` stanzas (Types/URIs/Suites/
 * Components/Signed-By, where Signed-By may also hold a key inline). Pure: text in, data out, so
 * resolution against Raspberry Pi OS's own sources is tested without an image.
 */
import { PibakeError, type Problem } from '../common/errors.ts';

export interface AptSource {
  uris: string[];
  suites: string[];
  /** Empty for a flat repository (a suite ending in "/"). */
  components: string[];
  /** Architectures the source is limited to (`arch=` / `Architectures:`); undefined: all the image has. */
  architectures?: string[];
  /** Keyrings by path in the image, fingerprints, or one inline key block. Undefined: apt's trusted.gpg.d. */
  signedBy?: SignedBy;
  /** `trusted=yes`: apt skips signature checks for this source (kept as the image has it). */
  trusted?: boolean;
  /** Where it came from, for messages: /etc/apt/sources.list.d/debian.sources:7. */
  origin: string;
}

export type SignedBy = { files: string[]; fingerprints: string[] } | { inline: string };

/** A mirror the build uses in place of a source the image lists (cluster.yaml packages.mirrors). */
export interface Mirror {
  from: string;
  to: string;
}

/** Every `deb` source of one sources file; `deb-src` and disabled stanzas are left out. */
export function parseSourcesFile(path: string, text: string): AptSource[] {
  return path.endsWith('.sources') ? parseDeb822(path, text) : parseOneLine(path, text);
}

function parseOneLine(path: string, text: string): AptSource[] {
  const sources: AptSource[] = [];
  const problems: Problem[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    const origin = `${path}:${index + 1}`;
    const match = /^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)((?:\s+\S+)*)$/.exec(line);
    if (!match) {
      problems.push({ message: `not a sources.list line: ${line}`, hint: 'apt expects "deb [options] URI SUITE [COMPONENT...]"', location: { file: path, line: index + 1 } });
      return;
    }
    if (match[1] !== 'deb') return;
    const options = new Map<string, string>();
    for (const option of (match[2] ?? '').trim().split(/\s+/).filter(Boolean)) {
      const eq = option.indexOf('=');
      if (eq > 0) options.set(option.slice(0, eq).toLowerCase(), option.slice(eq + 1));
    }
    const suite = match[4] as string;
    const source: AptSource = {
      uris: [match[3] as string],
      suites: [suite],
      components: (match[5] ?? '').trim().split(/\s+/).filter(Boolean),
      origin,
    };
    const arch = options.get('arch');
    if (arch) source.architectures = arch.split(',');
    const signed = options.get('signed-by');
    if (signed) source.signedBy = splitSignedBy(signed.split(','));
    if (options.get('trusted') === 'yes') source.trusted = true;
    sources.push(source);
  });
  if (problems.length > 0) throw PibakeError.fromProblems(`the base image's apt sources in ${path} cannot be read`, problems);
  return sources;
}

/** deb822 paragraphs: `Field: value`, continuation lines indented, ` .` an empty line inside a value. */
function parseDeb822(path: string, text: string): AptSource[] {
  const sources: AptSource[] = [];
  const lines = text.split('\n');
  let fields = new Map<string, string>();
  let current: string | undefined;
  let start = 0;
  const flush = () => {
    if (fields.size > 0) {
      const source = stanzaToSource(fields, `${path}:${start + 1}`);
      if (source) sources.push(source);
    }
    fields = new Map();
    current = undefined;
  };
  lines.forEach((line, index) => {
    if (line.startsWith('#')) return;
    if (line.trim() === '') {
      flush();
      return;
    }
    if (/^[ \t]/.test(line)) {
      if (!current) throw new PibakeError('continuation line outside a field', { hint: 'check the deb822 syntax of this file', location: { file: path, line: index + 1 } });
      const value = line.trim() === '.' ? '' : line.trim();
      fields.set(current, `${fields.get(current) ?? ''}\n${value}`);
      return;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new PibakeError(`not a "Field: value" line: ${line.trim()}`, { hint: 'check the deb822 syntax of this file', location: { file: path, line: index + 1 } });
    if (fields.size === 0) start = index;
    current = line.slice(0, colon).trim().toLowerCase();
    fields.set(current, line.slice(colon + 1).trim());
  });
  flush();
  return sources;
}

function stanzaToSource(fields: Map<string, string>, origin: string): AptSource | undefined {
  const words = (name: string) => (fields.get(name) ?? '').split(/\s+/).filter(Boolean);
  if (!words('types').includes('deb')) return undefined;
  if (/^(no|false)$/i.test(fields.get('enabled') ?? '')) return undefined;
  const uris = words('uris');
  const suites = words('suites');
  if (uris.length === 0 || suites.length === 0) {
    throw new PibakeError(`${origin}: a deb822 source needs URIs and Suites`, { hint: 'check this stanza of the image\'s apt sources' });
  }
  const source: AptSource = { uris, suites, components: words('components'), origin };
  const arch = words('architectures');
  if (arch.length > 0) source.architectures = arch;
  const signed = fields.get('signed-by');
  if (signed !== undefined && signed.trim() !== '') {
    source.signedBy = signed.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')
      ? { inline: `${signed.trim()}\n` }
      : splitSignedBy(signed.split(/[\s,]+/));
  }
  if (/^yes$/i.test(fields.get('trusted') ?? '')) source.trusted = true;
  return source;
}

/** Signed-By holds keyring paths and/or key fingerprints. */
function splitSignedBy(values: string[]): SignedBy {
  const items = values.map((v) => v.trim()).filter(Boolean);
  return { files: items.filter((v) => v.startsWith('/')), fingerprints: items.filter((v) => !v.startsWith('/')) };
}

/** The keyring files (paths in the image) the sources name. */
export function keyringPaths(sources: readonly AptSource[]): string[] {
  const paths = new Set<string>();
  for (const s of sources) if (s.signedBy && 'files' in s.signedBy) for (const f of s.signedBy.files) paths.add(f);
  return [...paths].sort();
}

function withSlash(uri: string): string {
  return uri.endsWith('/') ? uri : `${uri}/`;
}

/** The image's sources with every URI under a mirror's `from` moved to its `to` (same suites and keys). */
export function applyMirrors(sources: readonly AptSource[], mirrors: readonly Mirror[]): AptSource[] {
  if (mirrors.length === 0) return [...sources];
  return sources.map((source) => ({
    ...source,
    uris: source.uris.map((uri) => {
      const mirror = mirrors.find((m) => withSlash(uri).startsWith(withSlash(m.from)));
      return mirror ? withSlash(mirror.to) + withSlash(uri).slice(withSlash(mirror.from).length) : uri;
    }),
  }));
}

/**
 * The sources as one deb822 file for the build's own apt, each keyring path mapped to the copy
 * the build made of the image's file (`keyringFor`), inline keys kept inline.
 */
export function renderDeb822(sources: readonly AptSource[], keyringFor: (imagePath: string) => string): string {
  return sources.map((s) => {
    const lines = [`# ${s.origin}`, 'Types: deb', `URIs: ${s.uris.join(' ')}`, `Suites: ${s.suites.join(' ')}`];
    if (s.components.length > 0) lines.push(`Components: ${s.components.join(' ')}`);
    if (s.architectures) lines.push(`Architectures: ${s.architectures.join(' ')}`);
    if (s.trusted) lines.push('Trusted: yes');
    if (s.signedBy && 'inline' in s.signedBy) {
      lines.push('Signed-By:', ...s.signedBy.inline.trimEnd().split('\n').map((l) => ` ${l === '' ? '.' : l}`));
    } else if (s.signedBy) {
      lines.push(`Signed-By: ${[...s.signedBy.files.map(keyringFor), ...s.signedBy.fingerprints].join(' ')}`);
    }
    return `${lines.join('\n')}\n`;
  }).join('\n');
}

/** "http://deb.debian.org/debian trixie trixie-updates" for messages. */
export function describeSource(source: AptSource): string {
  return `${source.uris.join(' ')} ${source.suites.join(' ')}`;
}
