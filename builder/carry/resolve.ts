/**
 * Reading apt's answers: which .debs an install needs (`--print-uris`), which sources did not
 * answer, and what a failure means for the user, in one line with the fix. Pure functions over
 * apt's text output (run with LC_ALL=C), tested against apt's real wording.
 */
import { PibakeError } from '../common/errors.ts';
import { describeSource, type AptSource } from './sources.ts';

/** One .deb apt decided the install needs, as the archive's signed index describes it. */
export interface PlannedDeb {
  /** e.g. haproxy_3.0.11-1_arm64.deb (apt's archive file name, epoch colon as %3a). */
  file: string;
  uri: string;
  size: number;
  sha256: string;
  name: string;
  version: string;
  architecture: string;
}

/** What the build tells the user when it cannot fetch, whatever the cause. */
export const FETCH_FIX = 'name a mirror (packages.mirrors in cluster.yaml) or a proxy (packages.proxy) this machine can reach, or build with --packages online';

/** apt's `'URI' FILE SIZE [HASH]` lines of `apt-get install --print-uris` (apt 2.6 prints at most an MD5Sum). */
export function parsePrintUris(stdout: string): Omit<PlannedDeb, 'sha256'>[] {
  const debs: Omit<PlannedDeb, 'sha256'>[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^'([^']+)' (\S+\.deb) (\d+)(?: \S+)?$/.exec(line.trim());
    if (!m) continue;
    const file = m[2] as string;
    const [name = '', version = '', architecture = ''] = decodeURIComponent(file.replace(/\.deb$/, '')).split('_');
    debs.push({ uri: m[1] as string, file, size: Number(m[3]), name, version, architecture });
  }
  return debs.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
}

/** Packages apt would remove from the image to install the role's packages. */
export function parseRemovals(stdout: string): string[] {
  const m = /The following packages will be REMOVED:\n((?:[ \t]+.*\n?)+)/.exec(stdout);
  return m ? (m[1] as string).trim().split(/\s+/).map((p) => p.replace(/\*$/, '')) : [];
}

/** Sources `apt-get update` could not reach, with apt's reason ("Could not resolve 'host'"). */
export function unreachableSources(output: string): { url: string; reason: string }[] {
  const failed = new Map<string, string>();
  for (const m of output.matchAll(/^W: Failed to fetch (\S+)\s+(.*)$/gm)) failed.set(m[1] as string, (m[2] as string).trim());
  return [...failed].map(([url, reason]) => ({ url, reason }));
}

/** The sources an unreachable index URL belongs to. */
export function sourcesOf(sources: readonly AptSource[], url: string): AptSource[] {
  return sources.filter((s) => s.uris.some((u) => url.startsWith(u.endsWith('/') ? u : `${u}/`)));
}

/**
 * A failed `apt-get update` (it exits non-zero for signature problems, not for unreachable
 * sources: those keep the lists of the last fetch and are reported by unreachableSources).
 */
export function updateError(output: string): PibakeError {
  const gpg = /^W: GPG error: (\S+) (\S+) (?:In)?Release: (.*)$/m.exec(output);
  if (gpg) {
    return new PibakeError(`the package lists of ${gpg[1]} ${gpg[2]} do not verify with the keyring the image names for it: ${gpg[3]}`, {
      hint: `a mirror must serve the same signed archive as the source it stands in for; check packages.mirrors in cluster.yaml, or build with --packages online`,
    });
  }
  const err = /^E: (.*)$/m.exec(output)?.[1] ?? lastLine(output);
  return new PibakeError(`apt-get update failed: ${err}`, { hint: FETCH_FIX });
}

export interface InstallContext {
  architecture: string;
  sources: readonly AptSource[];
  unreachable: { url: string; reason: string }[];
  /** Which role asked for which package, for the message. */
  requestedBy: (pkg: string) => string | undefined;
}

/** A failed resolution (`--print-uris`), in one line. */
export function resolutionError(output: string, context: InstallContext): PibakeError {
  const missing = /^E: (?:Unable to locate package (\S+)|Package '([^']+)' has no installation candidate)$/m.exec(output);
  const where = context.sources.map(describeSource).join(', ');
  const silent = context.unreachable.map((u) => `${u.url} (${u.reason})`);
  if (missing) {
    const pkg = (missing[1] ?? missing[2]) as string;
    const role = context.requestedBy(pkg);
    return new PibakeError(`package "${pkg}"${role ? ` (role ${role})` : ''} is not available for ${context.architecture} from the image's sources: ${where}`, {
      hint: silent.length > 0
        ? `these did not answer: ${silent.join('; ')}; ${FETCH_FIX}`
        : `check the name in roles/${role ?? '<role>'}.yaml against the image's Debian release and architecture (apt-cache policy ${pkg} on a card)`,
    });
  }
  const unmet = /^ (\S+) : (Depends|PreDepends|Conflicts|Breaks): (.*)$/m.exec(output);
  if (unmet) {
    return new PibakeError(`apt cannot install ${unmet[1]} on this image: ${unmet[2]} ${unmet[3]!.trim()}`, {
      hint: silent.length > 0 ? `these sources did not answer: ${silent.join('; ')}; ${FETCH_FIX}` : 'the role\'s packages do not fit the image\'s release; check roles/ against the base image',
    });
  }
  const err = /^E: (.*)$/m.exec(output)?.[1] ?? lastLine(output);
  return new PibakeError(`apt cannot resolve the role packages: ${err}`, { hint: FETCH_FIX });
}

/** A failed download (`--download-only`). */
export function downloadError(output: string): PibakeError {
  if (/Hash Sum mismatch|Hashes of expected file/.test(output)) {
    const url = /^E: Failed to fetch (\S+)/m.exec(output)?.[1] ?? 'a package';
    return new PibakeError(`${url} does not match the archive's signed index (hash mismatch)`, {
      hint: `something between this machine and the archive altered it; ${FETCH_FIX}`,
    });
  }
  const failed = /^E: Failed to fetch (\S+)\s+(.*)$/m.exec(output);
  if (failed) return new PibakeError(`cannot download ${failed[1]}: ${failed[2]!.trim()}`, { hint: FETCH_FIX });
  const err = /^E: (.*)$/m.exec(output)?.[1] ?? lastLine(output);
  return new PibakeError(`downloading the role packages failed: ${err}`, { hint: FETCH_FIX });
}

function lastLine(output: string): string {
  return output.trim().split('\n').filter(Boolean).pop() ?? 'no output';
}

/**
 * apt's index record (as `apt-cache show` prints it from the signed lists) of each planned .deb,
 * found by package, version and architecture and checked by size; its SHA256 is what the
 * download, the cache and the card's apt are held to.
 */
export function indexRecords(showOutput: string, planned: readonly Omit<PlannedDeb, 'sha256'>[]): { deb: PlannedDeb; stanza: string }[] {
  const stanzas = showOutput.split(/\n\s*\n/).map((s) => s.trim()).filter(Boolean);
  const field = (stanza: string, name: string) => new RegExp(`^${name}: (.*)$`, 'm').exec(stanza)?.[1]?.trim();
  return planned.map((deb) => {
    const stanza = stanzas.find((s) => field(s, 'Package') === deb.name && field(s, 'Version') === deb.version &&
      field(s, 'Architecture') === deb.architecture && Number(field(s, 'Size')) === deb.size);
    const sha256 = stanza ? field(stanza, 'SHA256') : undefined;
    if (!stanza || !sha256 || !/^[0-9a-f]{64}$/.test(sha256)) {
      throw new PibakeError(`apt has no index record with a SHA256 for ${deb.file}`, { hint: 'the package lists changed while building; run the build again' });
    }
    return { deb: { ...deb, sha256 }, stanza };
  });
}

/** The local repository's `Packages` index: the archive's records, each pointing at its file in the repo. */
export function packagesIndex(records: readonly { deb: PlannedDeb; stanza: string }[], fileName: (deb: PlannedDeb) => string): string {
  return records.map(({ deb, stanza }) => `${stanza.replace(/^Filename: .*$/m, `Filename: ./${fileName(deb)}`)}\n`).join('\n');
}

/**
 * A carried .deb's name on the card: name_version_arch.deb without the epoch, so nothing in it
 * needs URL-quoting (apt names archive files with "%3a" for the epoch's colon, and a file: source
 * would decode it). One version per package is carried, so names stay unique.
 */
export function cardFileName(deb: Pick<PlannedDeb, 'name' | 'version' | 'architecture'>): string {
  return `${deb.name}_${deb.version.replace(/^\d+:/, '')}_${deb.architecture}.deb`;
}

/** Sum of Installed-Size (KiB) over the index: room the packages take once installed. */
export function installedBytes(index: string): number {
  let kib = 0;
  for (const m of index.matchAll(/^Installed-Size: (\d+)$/gm)) kib += Number(m[1]);
  return kib * 1024;
}
