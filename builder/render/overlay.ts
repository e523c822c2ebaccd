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
import path from 'node:path';
import Handlebars from 'handlebars';
import { PibakeError } from '../common/errors.ts';
import { READ_LIMITS, readInputFile } from '../common/read-input.ts';
import { ruleFor, type RoleDefinition } from './roles.ts';
import type { RootEntry } from './types.ts';

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

export function templateEngine(): typeof Handlebars {
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
export function renderTemplate(hb: typeof Handlebars, source: string, text: string, context: object): string {
  try {
    return hb.compile(text, { strict: true, noEscape: true })(context);
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

/** Walk the role's overlays in order and merge them (later overlay wins for the same path). */
export async function collectOverlays(
  overlaysDir: string, role: RoleDefinition, context: object,
): Promise<Map<string, OverlayItem>> {
  const hb = templateEngine();
  const merged = new Map<string, OverlayItem>();
  const base = await realpath(overlaysDir).catch((error: unknown) => {
    throw new PibakeError(`cannot read the overlays folder ${overlaysDir}`, { cause: error });
  });
  for (const name of role.overlays) {
    if (!SAFE_NAME.test(name) || name === '.' || name === '..') {
      throw new PibakeError(`overlay name "${name}" of role "${role.name}" is not a plain folder name`, { location: { file: role.file } });
    }
    const root = path.join(overlaysDir, name);
    const info = await lstat(root).catch(() => undefined);
    if (!info?.isDirectory()) {
      throw new PibakeError(`overlay "${name}" of role "${role.name}" is not a folder of ${overlaysDir}`, {
        hint: 'overlays must be real folders, not symlinks', location: { file: role.file },
      });
    }
    const real = await realpath(root);
    if (path.relative(base, real).startsWith('..')) {
      throw new PibakeError(`overlay folder ${root} resolves outside ${overlaysDir}`, { location: { file: root } });
    }
    const items = new Map<string, OverlayItem>();
    await walk(root, '/', items, hb, context);
    for (const [p, item] of items) {
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

async function walk(hostDir: string, rootDir: string, out: Map<string, OverlayItem>, hb: typeof Handlebars, context: object): Promise<void> {
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
    if (out.has(rootPath)) {
      throw new PibakeError(`overlay provides ${rootPath} twice (a file and its .hbs template?)`, { location: { file: source } });
    }
    if (info.isDirectory()) {
      out.set(rootPath, { kind: 'dir', path: rootPath, source });
      await walk(source, rootPath, out, hb, context);
    } else if (info.isSymbolicLink()) {
      const target = await readlink(source);
      out.set(rootPath, { kind: 'symlink', path: rootPath, target, source });
    } else if (info.isFile()) {
      const raw = await readInputFile(source, 'overlay file', READ_LIMITS.overlayFile);
      const reads = new Set<string>();
      const data = isTemplate ? Buffer.from(renderTemplate(hb, source, raw.toString('utf8'), tracingSecrets(context, reads))) : raw;
      out.set(rootPath, { kind: 'file', path: rootPath, data, source, secrets: [...reads].sort() });
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
