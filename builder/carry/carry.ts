/**
 * Role packages carried on the card: for the packages a role needs that the base lacks, apt works
 * out every .deb the install takes on this image, the build fetches the ones its content-addressed
 * cache does not hold, and the card gets them as a local repository in its root filesystem
 * (/var/lib/pibake/packages: the .debs and a Packages index). pibake-firstboot installs from it
 * with no network at all.
 *
 * Trust: apt verified the archive's signed InRelease and each .deb's SHA-256 against it here;
 * the card's apt checks every .deb against the same SHA-256 in the carried index (root-owned,
 * inside the image), which is why that local source may be marked trusted=yes.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Ext4Change } from '../image/ext4.ts';
import { CARD_REPO } from '../render/firstboot.ts';
import type { Ext4Fs } from '../image/ext4.ts';
import { AptSandbox, type AptSettings } from './apt.ts';
import { readAptFacts } from './facts.ts';
import { cardFileName, indexRecords, installedBytes, packagesIndex, type PlannedDeb } from './resolve.ts';
import { DebStore } from './store.ts';


export interface CarriedDeb extends PlannedDeb {
  /** The verified file in the build machine's cache. */
  source: string;
}

export interface CarriedPackages {
  /** What the role asked for (missing from the base), sorted. */
  requested: string[];
  debs: CarriedDeb[];
  /** The repository's Packages index, as the card reads it. */
  index: string;
  debBytes: number;
  /** Room the packages take once installed (sum of Installed-Size). */
  installedBytes: number;
  /** .debs that were not in the cache and were downloaded now. */
  fetched: number;
}

export async function carryPackages(
  sandbox: AptSandbox,
  store: DebStore,
  requested: string[],
  requestedBy: (pkg: string) => string | undefined,
  unreachable: { url: string; reason: string }[],
): Promise<CarriedPackages> {
  const wanted = await sandbox.plan(requested, { requestedBy, unreachable });
  const records = indexRecords(await sandbox.show(wanted), wanted);
  const planned = records.map((r) => r.deb);
  const cached = await Promise.all(planned.map((d) => store.has(d.sha256, d.size)));
  const missing = planned.filter((_, i) => !cached[i]);
  if (missing.length > 0) {
    const work = await sandbox.workDir();
    try {
      // apt fetches into a fresh folder that already holds the cached files (it skips those).
      await Promise.all(planned.filter((_, i) => cached[i]).map((d) => store.placeAt(d.sha256, path.join(work, d.file))));
      await sandbox.download(requested, work);
      for (const deb of missing) await store.put(path.join(work, deb.file), deb.sha256);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
  const index = packagesIndex(records, cardFileName);
  return {
    requested,
    debs: planned.map((d) => ({ ...d, source: store.pathOf(d.sha256) })),
    index,
    debBytes: planned.reduce((sum, d) => sum + d.size, 0),
    installedBytes: installedBytes(index),
    fetched: missing.length,
  };
}

/** The card's local repository as root-filesystem changes: each .deb straight from the cache, and the index. */
export function carriedEntries(carried: CarriedPackages): Ext4Change[] {
  const owner = { mode: 0o644, uid: 0, gid: 0 };
  return [
    ...carried.debs.map((d): Ext4Change => ({ kind: 'copy', path: `${CARD_REPO}/${cardFileName(d)}`, source: d.source, ...owner })),
    { kind: 'file', path: `${CARD_REPO}/Packages`, data: Buffer.from(carried.index), ...owner },
  ];
}

export interface CarryRequest {
  /** Opens the base image's root filesystem (its apt facts are read from it), only when a role lacks packages; its path, for messages. */
  root: () => Promise<Ext4Fs>;
  imagePath: string;
  /** Role -> the packages it lacks in the base. */
  wanted: Map<string, string[]>;
  cacheDir: string;
  settings: AptSettings;
  onWarning: (message: string) => void;
  onCarried: (role: string, carried: CarriedPackages, seconds: number) => void;
}

/**
 * Everything a build carries, by role: one apt update against the image's sources (or the
 * inventory's mirrors), then each distinct package set resolved and fetched once.
 */
export async function carryRolePackages(request: CarryRequest): Promise<Map<string, CarriedPackages>> {
  const byRole = new Map<string, CarriedPackages>();
  if (request.wanted.size === 0) return byRole;
  const facts = await readAptFacts(await request.root(), request.imagePath);
  const sandbox = await AptSandbox.open(request.cacheDir, facts, request.settings);
  try {
    const store = await DebStore.open(request.cacheDir);
    const { unreachable } = await sandbox.update();
    for (const u of unreachable) {
      request.onWarning(`${u.url} did not answer (${u.reason}); resolving against the other sources and any lists fetched before`);
    }
    const requestedBy = (pkg: string) => [...request.wanted].filter(([, p]) => p.includes(pkg)).map(([r]) => r).join(', ') || undefined;
    const byPackages = new Map<string, CarriedPackages>();
    for (const [role, packages] of request.wanted) {
      const key = packages.join(' ');
      let carried = byPackages.get(key);
      if (!carried) {
        const started = Date.now();
        carried = await carryPackages(sandbox, store, packages, requestedBy, unreachable);
        byPackages.set(key, carried);
        request.onCarried(role, carried, (Date.now() - started) / 1000);
      }
      byRole.set(role, carried);
    }
    return byRole;
  } finally {
    await sandbox.close();
  }
}
