/**
 * What a build needs to know of its base image (generation, installed packages, system accounts,
 * time zones), read from the image once and then kept beside the base cache. The cached base is
 * immutable and named by its SHA-256, so what was read from it stays true: a rebuild that changes
 * nothing starts no debugfs at all.
 *
 * The record is trusted only when everything about it checks out: its format and the pibake that
 * wrote it, the SHA-256 it was read from, the cached image file being the same file (size, mtime,
 * inode), and a digest over its body. Anything else (damaged, foreign, older) means "read the base
 * again" and the record is rewritten, never a wrong build.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../bytes/atomic.ts';
import type { Generation } from '../common/base-image.ts';
import { toolVersion } from '../common/paths.ts';
import type { Ext4Fs } from '../image/ext4.ts';

export interface BaseRecord {
  generation: Generation;
  /** Installed packages (dpkg status "install ok installed"), sorted. */
  installedPackages: string[];
  /** /etc/passwd's accounts. */
  accounts: { name: string; uid: number }[];
  /** The image has /usr/share/zoneinfo. */
  zoneinfo: boolean;
  /** Time zones looked up so far in /usr/share/zoneinfo: those it has, and those it lacks. */
  zones: { found: string[]; missing: string[] };
}

/** Bumped whenever what is read, or how, changes: an older record is then read again. */
export const BASE_FACTS_FORMAT = 1;

interface FactsFile {
  format: number;
  pibake: string;
  sha256: string;
  image: ImageIdentity;
  /** SHA-256 of JSON.stringify(facts): a damaged record is never used. */
  digest: string;
  facts: BaseRecord;
}

interface ImageIdentity { size: number; mtimeMs: number; ino: number }

const ZONEINFO = '/usr/share/zoneinfo';
const GENERATIONS: readonly string[] = ['bookworm', 'trixie'] satisfies readonly Generation[];

export function factsPathFor(cacheDir: string, sha256: string): string {
  return path.join(cacheDir, 'facts', `${sha256}.json`);
}

/**
 * The facts of the cached base `base` (its path and SHA-256), with every zone of `zones` looked up:
 * from the record when it is sound and complete, otherwise read from the image and recorded.
 */
export async function readBaseFacts(base: { path: string; sha256: string }, options: {
  /** How errors name the base: the file or URL the user gave (`source` in full), not the cache's copy. */
  label: string; source?: string; cacheDir: string; zones: readonly string[];
}): Promise<BaseRecord> {
  const file = factsPathFor(options.cacheDir, base.sha256);
  const identity = await imageIdentity(base.path);
  const recorded = await readRecord(file, base.sha256, identity);
  if (recorded && options.zones.every((zone) => zoneInBase(recorded, zone) !== undefined)) return recorded;

  // The image readers are loaded only now: a rebuild from a sound record needs none of them.
  const { openRaspiosImage } = await import('../image/raspios.ts');
  const image = await openRaspiosImage(base.path, { label: options.label });
  const facts = recorded ?? await readFromImage(image.root, image.generation, options.source ?? options.label);
  for (const zone of options.zones) {
    if (zoneInBase(facts, zone) !== undefined) continue;
    const found = facts.zoneinfo && (await image.root.exists(`${ZONEINFO}/${zone}`));
    (found ? facts.zones.found : facts.zones.missing).push(zone);
  }
  await writeRecord(file, base.sha256, identity, facts);
  return facts;
}

async function readFromImage(root: Ext4Fs, generation: Generation, source: string): Promise<BaseRecord> {
  const [{ readStatus }, { parseDpkgStatus }] = await Promise.all([import('../carry/facts.ts'), import('../image/ext4.ts')]);
  const installed = parseDpkgStatus((await readStatus(root, source)).toString('utf8'));
  const passwd = (await root.stat('/etc/passwd'))?.kind === 'file' ? (await root.readFile('/etc/passwd')).toString('utf8') : '';
  return {
    generation,
    installedPackages: [...installed.keys()].sort(),
    accounts: parsePasswd(passwd),
    zoneinfo: await root.exists(ZONEINFO),
    zones: { found: [], missing: [] },
  };
}

/** Whether the base has the time zone; undefined when it was not looked up. */
export function zoneInBase(facts: BaseRecord, zone: string): boolean | undefined {
  if (facts.zones.found.includes(zone)) return true;
  return facts.zones.missing.includes(zone) ? false : undefined;
}

/** name:password:uid:... lines; anything without a numeric uid is no account. */
export function parsePasswd(text: string): { name: string; uid: number }[] {
  return text.split('\n').flatMap((line) => {
    const [name, , uid] = line.split(':');
    return name && uid !== undefined && /^\d+$/.test(uid) ? [{ name, uid: Number(uid) }] : [];
  });
}

async function imageIdentity(imagePath: string): Promise<ImageIdentity> {
  const info = await stat(imagePath);
  return { size: info.size, mtimeMs: info.mtimeMs, ino: info.ino };
}

function digestOf(facts: BaseRecord): string {
  return createHash('sha256').update(JSON.stringify(facts)).digest('hex');
}

/** The record, when it is this pibake's, of this very base, undamaged and well formed. */
async function readRecord(file: string, sha256: string, identity: ImageIdentity): Promise<BaseRecord | undefined> {
  let parsed: Partial<FactsFile>;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<FactsFile>;
  } catch {
    return undefined;
  }
  if (parsed.format !== BASE_FACTS_FORMAT || parsed.pibake !== toolVersion || parsed.sha256 !== sha256) return undefined;
  const image = parsed.image;
  if (!image || image.size !== identity.size || image.mtimeMs !== identity.mtimeMs || image.ino !== identity.ino) return undefined;
  const facts = parsed.facts;
  if (!isBaseRecord(facts) || parsed.digest !== digestOf(facts)) return undefined;
  return facts;
}

function isBaseRecord(value: unknown): value is BaseRecord {
  const facts = value as Partial<BaseRecord> | undefined;
  return typeof facts === 'object' && facts !== null &&
    GENERATIONS.includes(facts.generation as string) &&
    isStrings(facts.installedPackages) &&
    Array.isArray(facts.accounts) && facts.accounts.every((a) => typeof a?.name === 'string' && Number.isInteger(a.uid)) &&
    typeof facts.zoneinfo === 'boolean' &&
    isStrings(facts.zones?.found) && isStrings(facts.zones?.missing);
}

function isStrings(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

async function writeRecord(file: string, sha256: string, identity: ImageIdentity, facts: BaseRecord): Promise<void> {
  const record: FactsFile = { format: BASE_FACTS_FORMAT, pibake: toolVersion, sha256, image: identity, digest: digestOf(facts), facts };
  await mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomic(file, `${JSON.stringify(record)}\n`);
}
