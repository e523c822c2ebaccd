/**
 * Applies a role's overlays (overlays/<name>/, in role order, a later file wins) to produce root
 * filesystem entries. `*.hbs` files are Handlebars templates (strict, no HTML escaping).
 *
 * Safety: nothing may land or point outside the target root filesystem, and nothing of the host
 * may leak in. Overlay symlinks are never followed on the host; they are reproduced as symlinks
 * and their targets must stay inside `/`, and (absolute or relative) must name either something
 * the node's overlays provide, `/dev/null` (masking), or a packaged unit under
 * /lib/systemd/system or /usr/lib/systemd/system (enabling). A link like `passwd -> /etc/passwd`
 * is refused: it can only be an attempt to pull a host file in. Device files, FIFOs and sockets
 * are refused, as is any entry whose path passes through a symlink of the overlays.
 */
import { lstat, readdir, readlink, realpath } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type HandlebarsModule from 'handlebars';
import { PibakeError } from '../common/errors.ts';
import { READ_LIMITS, readInputFile } from '../common/read-input.ts';
import { ruleFor, type RoleDefinition } from './roles.ts';
import type { RootEntry } from './types.ts';

/**
 * Handlebars from its package's single-file build: the same release as the package's main entry,
 * which loads some forty files and source-map (for source maps pibake never asks for) and takes
 * five times as long to load, a sixth of a rebuild that changes nothing.
 */
const Handlebars = createRequire(import.meta.url)('handlebars/dist/handlebars.min.js') as typeof HandlebarsModule;

export interface OverlayFile {
  kind: 'file';
  /** Root-filesystem path. */
  path: string;
  data: Buffer;
  /** Host file it came from, for error messages. */
  source: string;
  /** The secrets its template read (sorted); empty for plain files and templates that read none. */
  secrets: string[];
}
export interface OverlaySymlink { kind: 'symlink'; path: string; target: string; source: string }
export interface OverlayDir { kind: 'dir'; path: string; source: string }
export type OverlayItem = OverlayFile | OverlaySymlink | OverlayDir;

/** Characters a rootfs path may contain: ownership.list is space-separated and line-based. */
const SAFE_NAME = /^[A-Za-z0-9@%+=:,._~-]+$/;
const SYSTEM_LINK_TARGETS = [/^\/dev\/null$/, /^\/(usr\/)?lib\/systemd\/system\/[^/]+$/];

let engine: { hb: typeof Handlebars; compiled: Map<string, HandlebarsTemplateDelegate> } | undefined;

/**
 * The one Handlebars environment (its helpers are pure) and its compiled templates, by their text:
 * a build renders every node twice (with its secrets, then with their stand-ins) from the same few
 * templates, and compiling is most of rendering's cost.
 */
function templates(): NonNullable<typeof engine> {
  engine ??= { hb: templateEngine(), compiled: new Map() };
  return engine;
}

function templateEngine(): typeof Handlebars {
  const hb = Handlebars.create();
  hb.registerHelper('eq', (a: unknown, b: unknown) => a === b);
  hb.registerHelper('ne', (a: unknown, b: unknown) => a !== b);
  hb.registerHelper('includes', (list: unknown, value: unknown) => Array.isArray(list) && list.includes(value));
  hb.registerHelper('add', (a: unknown, b: unknown) => Number(a) + Number(b));
  hb.registerHelper('sub', (a: unknown, b: unknown) => Number(a) - Number(b));
  /** The first `length` characters of a text (e.g. keepalived reads only 8 of a VRRP password). */
  hb.registerHelper('truncate', (text: unknown, length: unknown) => {
    if (typeof text !== 'string') throw new Error('truncate expects text');
    return text.slice(0, Number(length));
  });
  hb.registerHelper('join', (list: unknown, sep: unknown) => {
    if (!Array.isArray(list)) throw new Error('join expects a list');
    return list.join(typeof sep === 'string' ? sep : ', ');
  });
  return hb;
}

/** Render one template; a missing variable or bad template becomes a PibakeError naming the file. */
function renderTemplate(source: string, text: string, context: object): string {
  const { hb, compiled } = templates();
  try {
    let template = compiled.get(text);
    if (!template) {
      template = hb.compile(text, { strict: true, noEscape: true });
      compiled.set(text, template);
    }
    return template(context);
  } catch (error) {
    const e = error as { message?: string; lineNumber?: number; column?: number };
    const message = String(e.message ?? error).split('\n')[0] ?? '';
    const missing = /^"([^"]+)" not defined in/.exec(message);
    const location = { file: source, line: e.lineNumber, column: e.column === undefined ? undefined : e.column + 1 };
    if (missing) {
      // Handlebars names only the last segment; quote the whole expression from the source.
      const line = e.lineNumber === undefined ? undefined : text.split('\n')[e.lineNumber - 1];
      const expression = line?.slice(e.column ?? 0).match(/^[A-Za-z0-9_.@/-]+/)?.[0];
      const shown = expression && expression.endsWith(missing[1] as string) ? expression : missing[1];
      const detail = shown === missing[1] ? '' : ` ("${missing[1]}" is missing)`;
      throw new PibakeError(`template uses "${shown}", which is not defined${detail}`, {
        hint: 'see "Template context" in docs/roles.md; secrets must be declared under secrets: in the role file',
        location,
        cause: error,
      });
    }
    throw new PibakeError(`template error: ${message}`, { location, cause: error });
  }
}

/** An overlay entry as read from disk, before any template in it is rendered. */
type ScannedItem = OverlayDir | OverlaySymlink | { kind: 'template' | 'plain'; path: string; source: string; raw: Buffer };

/**
 * One overlay folder: not a real folder (a symlink, missing), one that resolves outside the overlays
 * folder (then never read), or its entries.
 */
type ScannedOverlay = { state: 'no folder' | 'outside'; items: [] } | { state: 'read'; items: ScannedItem[] };

/**
 * The overlays folder as one project reads it: each overlay read from disk once, however many
 * nodes render from it (a build renders each node twice). A new reader (a new project) reads again.
 */
export class OverlayReader {
  private base?: Promise<string>;
  private readonly folders = new Map<string, Promise<ScannedOverlay>>();

  constructor(readonly overlaysDir: string) {}

  realBase(): Promise<string> {
    this.base ??= realpath(this.overlaysDir).catch((error: unknown) => {
      throw new PibakeError(`cannot read the overlays folder ${this.overlaysDir}`, { cause: error });
    });
    return this.base;
  }

  overlay(name: string): Promise<ScannedOverlay> {
    let scanned = this.folders.get(name);
    if (!scanned) {
      scanned = this.scan(path.join(this.overlaysDir, name));
      this.folders.set(name, scanned);
    }
    return scanned;
  }

  private async scan(root: string): Promise<ScannedOverlay> {
    const base = await this.realBase();
    const info = await lstat(root).catch(() => undefined);
    if (!info?.isDirectory()) return { state: 'no folder', items: [] };
    if (path.relative(base, await realpath(root)).startsWith('..')) return { state: 'outside', items: [] };
    const items: ScannedItem[] = [];
    await walk(root, '/', items, new Set());
    return { state: 'read', items };
  }
}

/**
 * Walk the role's overlays in order and merge them (later overlay wins for the same path).
 * `reader` reads the folders; give one project's reader to every call of a build.
 */
export async function collectOverlays(
  overlaysDir: string, role: RoleDefinition, context: object, reader = new OverlayReader(overlaysDir),
): Promise<Map<string, OverlayItem>> {
  const merged = new Map<string, OverlayItem>();
  await reader.realBase();
  for (const name of role.overlays) {
    if (!SAFE_NAME.test(name) || name === '.' || name === '..') {
      throw new PibakeError(`overlay name "${name}" of role "${role.name}" is not a plain folder name`, { location: { file: role.file } });
    }
    const root = path.join(overlaysDir, name);
    const scanned = await reader.overlay(name);
    if (scanned.state === 'no folder') {
      throw new PibakeError(`overlay "${name}" of role "${role.name}" is not a folder of ${overlaysDir}`, {
        hint: 'overlays must be real folders, not symlinks', location: { file: role.file },
      });
    }
    if (scanned.state === 'outside') {
      throw new PibakeError(`overlay folder ${root} resolves outside ${overlaysDir}`, { location: { file: root } });
    }
    for (const scannedItem of scanned.items) {
      const item = rendered(scannedItem, context);
      const p = item.path;
      const earlier = merged.get(p);
      if (earlier && (earlier.kind === 'dir') !== (item.kind === 'dir')) {
        throw new PibakeError(`${p} is a ${earlier.kind === 'dir' ? 'folder' : earlier.kind} in one overlay and a ${item.kind === 'dir' ? 'folder' : item.kind} in another`, {
          hint: 'a later overlay may replace a file, not turn a folder into a file or symlink (or back)',
          location: { file: item.source },
        });
      }
      merged.set(p, item);
    }
  }
  checkLinks(merged);
  return merged;
}

/** A scanned entry for this node: a template rendered with its context, recording the secrets it reads. */
function rendered(item: ScannedItem, context: object): OverlayItem {
  if (item.kind === 'dir' || item.kind === 'symlink') return item;
  if (item.kind === 'plain') return { kind: 'file', path: item.path, data: item.raw, source: item.source, secrets: [] };
  const reads = new Set<string>();
  const data = Buffer.from(renderTemplate(item.source, item.raw.toString('utf8'), tracingSecrets(context, reads)));
  return { kind: 'file', path: item.path, data, source: item.source, secrets: [...reads].sort() };
}

async function walk(hostDir: string, rootDir: string, out: ScannedItem[], seen: Set<string>): Promise<void> {
  const names = (await readdir(hostDir)).sort();
  for (const name of names) {
    const source = path.join(hostDir, name);
    if (!SAFE_NAME.test(name) || name === '..' || name === '.') {
      throw new PibakeError(`overlay entry name "${name}" is not allowed`, {
        hint: 'use letters, digits and . _ - @ + = : , ~ % only (no spaces)', location: { file: source },
      });
    }
    const info = await lstat(source);
    const isTemplate = info.isFile() && name.endsWith('.hbs');
    const rootPath = path.posix.join(rootDir, isTemplate ? name.slice(0, -4) : name);
    if (seen.has(rootPath)) {
      throw new PibakeError(`overlay provides ${rootPath} twice (a file and its .hbs template?)`, { location: { file: source } });
    }
    seen.add(rootPath);
    if (info.isDirectory()) {
      out.push({ kind: 'dir', path: rootPath, source });
      await walk(source, rootPath, out, seen);
    } else if (info.isSymbolicLink()) {
      out.push({ kind: 'symlink', path: rootPath, target: await readlink(source), source });
    } else if (info.isFile()) {
      const raw = await readInputFile(source, 'overlay file', READ_LIMITS.overlayFile);
      out.push({ kind: isTemplate ? 'template' : 'plain', path: rootPath, source, raw });
    } else {
      throw new PibakeError(`overlay entry ${source} is a device, FIFO or socket`, {
        hint: 'overlays may hold only files, folders and symlinks', location: { file: source },
      });
    }
  }
}

/**
 * The template context with its `secrets` replaced by a view that records every secret the
 * template reads into `reads`. That record, not a list kept by hand, is what makes a file
 * secret-bearing (left out of sealed images): a role that gains a secret needs no other change.
 */
export function tracingSecrets(context: object, reads: Set<string>): object {
  const secrets = (context as { secrets?: unknown }).secrets;
  if (typeof secrets !== 'object' || secrets === null) return context;
  const view = new Proxy(secrets as Record<string, string>, {
    get(target, key, receiver) {
      if (typeof key === 'string' && Object.hasOwn(target, key)) reads.add(key);
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
  return { ...context, secrets: view };
}

/** Where a symlink at `linkPath` points inside the root filesystem, or undefined if it escapes `/`. */
export function resolveLinkTarget(linkPath: string, target: string): string | undefined {
  const start = target.startsWith('/') ? [] : path.posix.dirname(linkPath).split('/').filter(Boolean);
  const parts = [...start];
  for (const seg of target.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (parts.length === 0) return undefined;
      parts.pop();
    } else parts.push(seg);
  }
  return `/${parts.join('/')}`;
}

function checkLinks(items: Map<string, OverlayItem>): void {
  const links = [...items.values()].filter((i): i is OverlaySymlink => i.kind === 'symlink');
  for (const link of links) {
    const resolved = resolveLinkTarget(link.path, link.target);
    if (resolved === undefined) {
      throw new PibakeError(`overlay symlink ${link.path} -> ${link.target} escapes the root filesystem`, {
        hint: 'symlink targets must stay inside /', location: { file: link.source },
      });
    }
    const provided = items.has(resolved);
    if (!provided && !SYSTEM_LINK_TARGETS.some((re) => re.test(resolved))) {
      throw new PibakeError(`overlay symlink ${link.path} -> ${link.target} points outside what the overlays provide`, {
        hint: 'link only to files of the overlays, to /dev/null, or to units in /lib/systemd/system; copy other files into the overlay instead',
        location: { file: link.source },
      });
    }
  }
  // Nothing may be written through a symlink: no entry below a symlinked path.
  for (const item of items.values()) {
    const segs = item.path.split('/').filter(Boolean);
    for (let i = 1; i < segs.length; i++) {
      const parent = `/${segs.slice(0, i).join('/')}`;
      if (items.get(parent)?.kind === 'symlink') {
        throw new PibakeError(`overlay entry ${item.path} lies below the overlay symlink ${parent}`, {
          hint: 'writing through a symlink could land outside the target; make the folder real', location: { file: item.source },
        });
      }
    }
  }
}

export interface Ownership { path: string; owner: string; group: string; mode: number }

/**
 * Turn overlay items into root entries with the role's modes. Non-root owners are baked as root and
 * listed for the first-boot ownership unit. Folders get an entry only when a files: rule names them
 * (otherwise existing folders of the base keep their mode; missing parents are created 0755 root).
 */
export function overlayEntries(role: RoleDefinition, items: Map<string, OverlayItem>): { entries: RootEntry[]; ownership: Ownership[] } {
  const entries: RootEntry[] = [];
  const ownership: Ownership[] = [];
  for (const item of items.values()) {
    const rule = ruleFor(role, item.path);
    if (item.kind === 'dir' && !rule) continue;
    const mode = rule?.mode ?? (item.kind === 'dir' ? 0o755 : item.kind === 'symlink' ? 0o777 : 0o644);
    const owner = rule?.owner ?? 'root';
    const group = rule?.group ?? 'root';
    const common = { path: item.path, mode, uid: 0, gid: 0 };
    if (item.kind === 'file') entries.push({ ...common, kind: 'file', data: item.data, ...(item.secrets.length > 0 ? { secrets: item.secrets } : {}) });
    else if (item.kind === 'dir') entries.push({ ...common, kind: 'dir' });
    else entries.push({ ...common, kind: 'symlink', target: item.target });
    if ((owner !== 'root' || group !== 'root') && item.kind !== 'symlink') ownership.push({ path: item.path, owner, group, mode });
  }
  return { entries, ownership };
}

export function ownershipList(ownership: Ownership[]): string {
  return [...ownership]
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .map((o) => `${o.path} ${o.owner} ${o.group} ${o.mode.toString(8).padStart(4, '0')}\n`)
    .join('');
}
