/**
 * apt-get on the build machine, told about nothing but the base image: its own etc, state and
 * cache folders under pibake's cache (APT_CONFIG, so the host's apt configuration is never read),
 * the image's architecture, apt sources, keyrings and pinning, and `Dir::State::status` = the
 * image's package database, so dependencies resolve against what the card will have. No root:
 * apt downloads and verifies (signed InRelease, then every file's SHA256) as the calling user.
 * Thin adapter; the interpretation of apt's output is in resolve.ts.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PibakeError } from '../common/errors.ts';
import { toolError } from '../common/exec.ts';
import type { AptFacts } from './facts.ts';
import {
  FETCH_FIX, downloadError, parsePrintUris, parseRemovals, resolutionError, sourcesOf, unreachableSources, updateError,
  type InstallContext, type PlannedDeb,
} from './resolve.ts';
import { applyMirrors, renderDeb822, type AptSource, type Mirror } from './sources.ts';

export interface AptSettings {
  mirrors: Mirror[];
  /** HTTP(S) proxy for the build's downloads. */
  proxy?: string;
}

export interface UpdateResult {
  /** Index URLs that did not answer (apt kept the lists of an earlier fetch, if any). */
  unreachable: { url: string; reason: string }[];
}

/** Options every resolution and the card's first boot share (the card installs what was resolved). */
export const INSTALL_OPTIONS = [
  // Recommends stay off: each role lists what it needs; recommended extras (e.g. sysstat's cron
  // jobs for PostgreSQL) would add megabytes and daemons to every card without being asked for.
  '-o', 'APT::Install-Recommends=false',
  '-o', 'APT::Install-Suggests=false',
];

function sha(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export class AptSandbox {
  private constructor(
    readonly dir: string,
    readonly sources: AptSource[],
    private readonly facts: AptFacts,
    /** What differs between builds sharing the sandbox, given to every apt run: status, proxy, cache. */
    private readonly perBuild: string[],
    /** This build's own folder in the sandbox (apt's binary cache of the lists); close() removes it. */
    private readonly runDir: string,
  ) {}

  /** Removes this build's folder (the lists and .debs stay for the next build). */
  async close(): Promise<void> {
    await rm(this.runDir, { recursive: true, force: true });
  }

  /**
   * The sandbox for these facts: one folder per set of sources, keys, pinning and architectures,
   * so its package lists are reused by every build from the same image (and by other images with
   * the same sources); the image's status file and the proxy are this build's own.
   */
  static async open(cacheDir: string, facts: AptFacts, settings: AptSettings): Promise<AptSandbox> {
    const sources = applyMirrors(facts.sources, settings.mirrors);
    const keyName = (data: Buffer) =>
      `${sha(data).slice(0, 16)}${data.includes('-----BEGIN PGP') ? '.asc' : '.gpg'}`;
    const keyringFiles = new Map<string, { name: string; data: Buffer }>();
    for (const [imagePath, data] of facts.keyrings) keyringFiles.set(imagePath, { name: keyName(data), data });
    const trusted = [...facts.trusted.values()].map((data) => ({ name: keyName(data), data }));
    const identity = sha(JSON.stringify({
      arch: [facts.architecture, ...facts.foreignArchitectures],
      sources: renderDeb822(sources, (p) => keyringFiles.get(p)?.name ?? p),
      trusted: trusted.map((t) => t.name).sort(),
      preferences: [...facts.preferences].map(([p, d]) => `${p} ${sha(d)}`),
    })).slice(0, 16);
    // apt resolves relative Dir:: settings against Dir ("/"): every path in apt.conf is absolute.
    const dir = path.resolve(cacheDir, 'apt', identity);
    const etc = path.join(dir, 'etc');
    for (const sub of ['apt.conf.d', 'sources.list.d', 'trusted.gpg.d', 'preferences.d', 'keyrings']) await mkdir(path.join(etc, sub), { recursive: true });
    for (const sub of ['lists/partial', 'log', 'cache']) await mkdir(path.join(dir, sub), { recursive: true });
    for (const { name, data } of keyringFiles.values()) await writeShared(path.join(etc, 'keyrings', name), data);
    for (const { name, data } of trusted) await writeShared(path.join(etc, 'trusted.gpg.d', name), data);
    let n = 0;
    for (const [imagePath, data] of facts.preferences) await writeShared(path.join(etc, 'preferences.d', `${String(n++).padStart(2, '0')}-${path.basename(imagePath).replace(/[^A-Za-z0-9_-]/g, '_')}`), data);
    await writeShared(path.join(etc, 'sources.list.d', 'image.sources'),
      renderDeb822(sources, (p) => path.join(etc, 'keyrings', (keyringFiles.get(p) as { name: string }).name)));
    await writeShared(path.join(dir, 'apt.conf'), aptConf(dir, facts));
    const runDir = await makeWorkDir(dir);
    const statusFile = path.join(runDir, 'status');
    await writeFile(statusFile, facts.status);
    const perBuild = ['-o', `Dir::State::status=${statusFile}`];
    if (settings.proxy) perBuild.push('-o', `Acquire::http::Proxy=${settings.proxy}`, '-o', `Acquire::https::Proxy=${settings.proxy}`);
    return new AptSandbox(dir, sources, facts, perBuild, runDir);
  }

  /** Fetches the package lists (signed InRelease first); a bad signature fails, a silent source is reported. */
  async update(): Promise<UpdateResult> {
    const result = await this.apt('apt-get', ['update']);
    const output = `${result.stdout}\n${result.stderr}`;
    if (result.exitCode !== 0) throw updateError(output);
    const unreachable = unreachableSources(output);
    const silent = new Set(unreachable.flatMap((u) => sourcesOf(this.sources, u.url)));
    if (silent.size === this.sources.length && !(await this.hasLists())) {
      throw new PibakeError(`no package source of the image answered: ${unreachable.map((u) => `${u.url} (${u.reason})`).join('; ')}`, { hint: FETCH_FIX });
    }
    return { unreachable };
  }

  /** The .debs installing `packages` on the image takes: exactly what the card lacks, per apt. */
  async plan(packages: string[], context: Omit<InstallContext, 'architecture' | 'sources'>): Promise<Omit<PlannedDeb, 'sha256'>[]> {
    const work = await this.workDir();
    try {
      const result = await this.apt('apt-get', ['install', '--print-uris', '-y', ...INSTALL_OPTIONS, '-o', `Dir::Cache::Archives=${work}/`, ...packages]);
      const output = `${result.stdout}\n${result.stderr}`;
      if (result.exitCode !== 0) throw resolutionError(output, { ...context, architecture: this.facts.architecture, sources: this.sources });
      const removals = parseRemovals(result.stdout);
      if (removals.length > 0) {
        throw new PibakeError(`installing ${packages.join(', ')} would remove ${removals.join(', ')} from the image`, {
          hint: 'the role packages conflict with the base image; check roles/ against the image\'s release',
        });
      }
      return parsePrintUris(result.stdout);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** Downloads the planned .debs into `into` (apt checks each against the signed index). */
  async download(packages: string[], into: string): Promise<void> {
    const result = await this.apt('apt-get', ['install', '--download-only', '-y', ...INSTALL_OPTIONS, '-o', `Dir::Cache::Archives=${into}/`, ...packages]);
    if (result.exitCode !== 0) throw downloadError(`${result.stdout}\n${result.stderr}`);
  }

  /** apt's index records of these exact versions (for their SHA256 and the card's local repository). */
  async show(planned: readonly Omit<PlannedDeb, 'sha256'>[]): Promise<string> {
    if (planned.length === 0) return '';
    const result = await this.apt('apt-cache', ['show', ...planned.map((d) => `${d.name}:${d.architecture}=${d.version}`)]);
    if (result.exitCode !== 0) throw new PibakeError(`apt-cache show failed: ${result.stderr.trim().split('\n').pop()}`, { hint: 'run the build again' });
    return result.stdout;
  }

  /** A temp folder in the sandbox (same filesystem as the cache, so files can be hard-linked). */
  async workDir(): Promise<string> {
    return makeWorkDir(this.dir);
  }

  private async hasLists(): Promise<boolean> {
    const names = await readdir(path.join(this.dir, 'lists')).catch(() => [] as string[]);
    return names.some((n) => /_Packages(\.|$)/.test(n));
  }

  /**
   * One apt run. apt locks the package lists itself while updating them; a build that finds them
   * locked by a concurrent build waits its turn.
   */
  private async apt(tool: 'apt-get' | 'apt-cache', args: string[]) {
    const deadline = Date.now() + 15 * 60_000;
    const { execa } = await import('execa');
    for (;;) {
      let result;
      try {
        // The lists only change in `update`; the other calls of a build share apt's parse of them.
        const cache = args[0] === 'update' ? [] : ['-o', `Dir::Cache::pkgcache=${path.join(this.runDir, 'pkgcache.bin')}`];
        result = await execa(tool, ['-q', ...this.perBuild, ...cache, ...args], {
          env: { APT_CONFIG: path.join(this.dir, 'apt.conf'), LC_ALL: 'C', DEBIAN_FRONTEND: 'noninteractive' },
          reject: false,
          stdin: 'ignore',
          timeout: 30 * 60_000,
        });
      } catch (error) {
        throw toolError(tool, args, error);
      }
      if (result.exitCode === 0 || !/Could not get lock/.test(result.stderr) || Date.now() > deadline) return result;
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

}

/** Sandbox files other builds may be reading: written whole under a temp name, then renamed. */
async function writeShared(file: string, data: string | Buffer): Promise<void> {
  const temp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  await writeFile(temp, data);
  await rename(temp, file);
}

async function makeWorkDir(sandbox: string): Promise<string> {
  const work = path.join(sandbox, `work-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`);
  await mkdir(path.join(work, 'partial'), { recursive: true });
  return work;
}

/** What every build from these facts shares; the status file and the proxy come per build. */
function aptConf(dir: string, facts: AptFacts): string {
  const q = (value: string) => `"${value.replace(/["\\]/g, '')}"`;
  const etc = path.join(dir, 'etc');
  const lines = [
    '// pibake: apt for one base image (see builder/carry/apt.ts). The host\'s apt configuration is not read.',
    `Dir ${q('/')};`,
    `Dir::Etc ${q(etc)};`,
    `Dir::Etc::main ${q('/dev/null')};`,
    `Dir::Etc::Parts ${q(path.join(etc, 'apt.conf.d'))};`,
    `Dir::Etc::sourcelist ${q('/dev/null')};`,
    `Dir::Etc::sourceparts ${q(path.join(etc, 'sources.list.d'))};`,
    `Dir::Etc::trusted ${q(path.join(etc, 'trusted.gpg'))};`,
    `Dir::Etc::trustedparts ${q(path.join(etc, 'trusted.gpg.d'))};`,
    `Dir::Etc::preferences ${q(path.join(etc, 'preferences'))};`,
    `Dir::Etc::preferencesparts ${q(path.join(etc, 'preferences.d'))};`,
    `Dir::State ${q(dir)};`,
    `Dir::State::Lists ${q(path.join(dir, 'lists'))};`,
    `Dir::State::extended_states ${q(path.join(dir, 'extended_states'))};`,
    `Dir::Cache ${q(path.join(dir, 'cache'))};`,
    // Binary caches per build (apt.ts passes Dir::Cache::pkgcache): several images (status files)
    // and concurrent builds share one sandbox, and apt would rebuild a shared one every time.
    `Dir::Cache::pkgcache ${q('')};`,
    `Dir::Cache::srcpkgcache ${q('')};`,
    `Dir::Log ${q(path.join(dir, 'log'))};`,
    `APT::Architecture ${q(facts.architecture)};`,
    `APT::Architectures { ${[facts.architecture, ...facts.foreignArchitectures].map((a) => `${q(a)}; `).join('')}};`,
    `Acquire::Languages ${q('none')};`,
    `Acquire::Retries ${q('2')};`,
    `Acquire::http::Timeout ${q('30')};`,
    `Acquire::https::Timeout ${q('30')};`,
  ];
  // As root, apt would hand downloads to the _apt user, who cannot write a home-folder cache.
  if (process.getuid?.() === 0) lines.push(`APT::Sandbox::User ${q('root')};`);
  return `${lines.join('\n')}\n`;
}
