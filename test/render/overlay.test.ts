import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTool } from '../../builder/common/exec.ts';
import { formatError, PibakeError } from '../../builder/common/errors.ts';
import { collectOverlays, overlayEntries, ownershipList, resolveLinkTarget } from '../../builder/render/overlay.ts';
import type { RoleDefinition } from '../../builder/render/roles.ts';
import { globToRegExp } from '../../builder/render/glob.ts';
import { withTempDir } from './fixture.ts';

function role(overlays: string[], files: RoleDefinition['files'] = []): RoleDefinition {
  return { name: 't', file: '/roles/t.yaml', description: '', tags: [], overlays, packages: [], services: [], firstboot: [], secrets: [], files };
}

async function put(root: string, rel: string, text: string): Promise<void> {
  await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
  await writeFile(path.join(root, rel), text);
}

async function failure(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(PibakeError);
    return formatError(error).join('\n');
  }
  throw new Error('expected a PibakeError');
}

const context = { node: { name: 'web1' }, nodes: [{ name: 'web1' }, { name: 'web2' }] };

describe('collectOverlays', () => {
  it('renders templates, strips .hbs, and lets a later overlay win', async () => {
    await withTempDir(async (dir) => {
      await put(dir, 'a/etc/motd.hbs', 'hello {{node.name}} of {{#each nodes}}{{name}} {{/each}}<&>\n');
      await put(dir, 'a/etc/issue', 'from a\n');
      await put(dir, 'b/etc/issue', 'from b {{not-a-template}}\n');
      const items = await collectOverlays(dir, role(['a', 'b']), context);
      const motd = items.get('/etc/motd');
      expect(motd?.kind === 'file' && motd.data.toString()).toBe('hello web1 of web1 web2 <&>\n');
      const issue = items.get('/etc/issue');
      expect(issue?.kind === 'file' && issue.data.toString()).toBe('from b {{not-a-template}}\n');
    });
  });

  it('refuses a template using a missing variable, naming the file and the variable', async () => {
    await withTempDir(async (dir) => {
      await put(dir, 'a/etc/app.conf.hbs', 'ok {{node.name}}\npassword={{secrets.db_password}}\n');
      const message = await failure(collectOverlays(dir, role(['a']), context));
      expect(message).toContain(path.join(dir, 'a/etc/app.conf.hbs'));
      expect(message).toMatch(/app\.conf\.hbs:2:12: template uses "secrets\.db_password", which is not defined/);
    });
    await withTempDir(async (dir) => {
      await put(dir, 'a/x.hbs', '{{node.nmae}}');
      expect(await failure(collectOverlays(dir, role(['a']), context))).toMatch(/x\.hbs:1:3: template uses "node\.nmae", which is not defined/);
    });
  });

  it('reproduces symlinks whose target the overlays provide or that mask/enable units', async () => {
    await withTempDir(async (dir) => {
      await put(dir, 'a/etc/systemd/system/x.service', '[Unit]\n');
      await mkdir(path.join(dir, 'a/etc/systemd/system/multi-user.target.wants'), { recursive: true });
      await symlink('/etc/systemd/system/x.service', path.join(dir, 'a/etc/systemd/system/multi-user.target.wants/x.service'));
      await symlink('../x.service', path.join(dir, 'a/etc/systemd/system/multi-user.target.wants/rel.service'));
      await symlink('/dev/null', path.join(dir, 'a/etc/systemd/system/masked.service'));
      await symlink('/lib/systemd/system/nginx.service', path.join(dir, 'a/etc/systemd/system/nginx-alias.service'));
      const items = await collectOverlays(dir, role(['a']), context);
      expect(items.get('/etc/systemd/system/multi-user.target.wants/x.service')).toMatchObject({ kind: 'symlink', target: '/etc/systemd/system/x.service' });
      expect(items.get('/etc/systemd/system/multi-user.target.wants/rel.service')).toMatchObject({ kind: 'symlink', target: '../x.service' });
      expect(items.get('/etc/systemd/system/masked.service')).toMatchObject({ kind: 'symlink', target: '/dev/null' });
    });
  });

  it.each([
    ['a target that climbs out of /', '../../..', 'etc/escape', /escapes the root filesystem/],
    ['a deep relative escape', '../../../../../../../../etc/shadow', 'etc/a/b', /escapes the root filesystem/],
    ['a link to the host /etc/passwd', '/etc/passwd', 'etc/passwd-copy', /points outside what the overlays provide/],
    ['a link to a host file outside the overlay folder', '/tmp', 'tmp-link', /points outside what the overlays provide/],
  ])('refuses %s', async (_name, target, at, pattern) => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, 'a', path.dirname(at)), { recursive: true });
      await symlink(target, path.join(dir, 'a', at));
      const message = await failure(collectOverlays(dir, role(['a']), context));
      expect(message).toMatch(pattern);
      expect(message).toContain(path.join(dir, 'a', at));
    });
  });

  it('refuses writing through an overlay symlink (a later overlay filling a symlinked folder)', async () => {
    await withTempDir(async (dir) => {
      await put(dir, 'a/etc/real/file', 'x');
      await symlink('/etc/real', path.join(dir, 'a/etc/linkdir'));
      await put(dir, 'b/etc/linkdir/passwd', 'evil');
      expect(await failure(collectOverlays(dir, role(['a', 'b']), context))).toMatch(/\/etc\/linkdir is a symlink in one overlay and a folder in another/);
    });
  });

  it('refuses an overlay folder that is a symlink out of the overlays folder, and device-like entries', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, 'overlays'));
      await symlink('/etc', path.join(dir, 'overlays', 'evil'));
      expect(await failure(collectOverlays(path.join(dir, 'overlays'), role(['evil']), context))).toMatch(/not a folder/);
      await mkdir(path.join(dir, 'overlays', 'fifo'));
      await runTool('mkfifo', [path.join(dir, 'overlays', 'fifo', 'pipe')]);
      expect(await failure(collectOverlays(path.join(dir, 'overlays'), role(['fifo']), context))).toMatch(/device, FIFO or socket/);
      expect(await failure(collectOverlays(path.join(dir, 'overlays'), role(['..']), context))).toMatch(/not a plain folder name/);
    });
  });

  it('refuses entry names that could break the ownership list', async () => {
    await withTempDir(async (dir) => {
      await put(dir, 'a/etc/bad name', 'x');
      expect(await failure(collectOverlays(dir, role(['a']), context))).toMatch(/entry name "bad name" is not allowed/);
    });
  });
});

describe('secret taint (which files a sealed image leaves out)', () => {
  it('marks a template with every secret it reads, however it reads it, and nothing else', async () => {
    await withTempDir(async (dir) => {
      const withSecrets = { ...context, secrets: { db_password: 'pw-1', stats_password: 'pw-2', unused: 'pw-3' } };
      await put(dir, 'a/etc/direct.conf.hbs', 'password={{secrets.db_password}}\n');
      await put(dir, 'a/etc/lookup.conf.hbs', '{{lookup secrets "stats_password"}}\n');
      await put(dir, 'a/etc/each.conf.hbs', '{{#each secrets}}{{@key}}={{this}}\n{{/each}}');
      await put(dir, 'a/etc/guarded.conf.hbs', '{{#if secrets.db_password}}set{{/if}}\n');
      await put(dir, 'a/etc/plain.conf.hbs', 'host={{node.name}}\n');
      await put(dir, 'a/etc/static.conf', 'password={{secrets.db_password}}\n');
      const items = await collectOverlays(dir, role(['a']), withSecrets);
      const secretsOf = (p: string) => {
        const item = items.get(p);
        return item?.kind === 'file' ? item.secrets : undefined;
      };
      expect(secretsOf('/etc/direct.conf')).toEqual(['db_password']);
      expect(secretsOf('/etc/lookup.conf')).toEqual(['stats_password']);
      expect(secretsOf('/etc/each.conf')).toEqual(['db_password', 'stats_password', 'unused']);
      // Reading a secret only to test it still makes the file depend on it.
      expect(secretsOf('/etc/guarded.conf')).toEqual(['db_password']);
      expect(secretsOf('/etc/plain.conf')).toEqual([]);
      expect(secretsOf('/etc/static.conf')).toEqual([]); // not a template: copied as is
      const { entries } = overlayEntries(role(['a']), items);
      expect(entries.find((e) => e.path === '/etc/direct.conf')).toMatchObject({ secrets: ['db_password'] });
      expect(entries.find((e) => e.path === '/etc/plain.conf')).not.toHaveProperty('secrets');
    });
  });
});

describe('overlayEntries', () => {
  it('applies modes from files: rules, bakes foreign owners as root and lists them', async () => {
    await withTempDir(async (dir) => {
      await put(dir, 'a/etc/haproxy/haproxy.cfg', 'cfg');
      await put(dir, 'a/usr/local/lib/pibake/setup.sh', '#!/bin/sh');
      await put(dir, 'a/var/lib/app/data', 'd');
      const rules: RoleDefinition['files'] = [
        { pattern: '/etc/haproxy/haproxy.cfg', matcher: globToRegExp('/etc/haproxy/haproxy.cfg'), exact: true, mode: 0o640, owner: 'root', group: 'haproxy', location: { file: 'r' } },
        { pattern: '/usr/local/lib/pibake/*.sh', matcher: globToRegExp('/usr/local/lib/pibake/*.sh'), exact: false, mode: 0o755, location: { file: 'r' } },
        { pattern: '/var/lib/app', matcher: globToRegExp('/var/lib/app'), exact: true, mode: 0o750, owner: 'www-data', group: 'www-data', location: { file: 'r' } },
      ];
      const r = role(['a'], rules);
      const { entries, ownership } = overlayEntries(r, await collectOverlays(dir, r, context));
      const byPath = Object.fromEntries(entries.map((e) => [e.path, e]));
      expect(byPath['/etc/haproxy/haproxy.cfg']).toMatchObject({ kind: 'file', mode: 0o640, uid: 0, gid: 0 });
      expect(byPath['/usr/local/lib/pibake/setup.sh']).toMatchObject({ mode: 0o755 });
      expect(byPath['/var/lib/app']).toMatchObject({ kind: 'dir', mode: 0o750, uid: 0, gid: 0 });
      expect(byPath['/var/lib/app/data']).toMatchObject({ mode: 0o644 });
      expect(byPath['/etc']).toBeUndefined(); // unnamed folders keep the base's mode
      expect(ownershipList(ownership)).toBe('/etc/haproxy/haproxy.cfg root haproxy 0640\n/var/lib/app www-data www-data 0750\n');
    });
  });
});

describe('resolveLinkTarget', () => {
  it('resolves inside / or reports an escape', () => {
    expect(resolveLinkTarget('/etc/systemd/system/a.wants/x', '../x.service')).toBe('/etc/systemd/system/x.service');
    expect(resolveLinkTarget('/etc/x', '/usr/./lib//y')).toBe('/usr/lib/y');
    expect(resolveLinkTarget('/etc/x', '../..')).toBeUndefined();
    expect(resolveLinkTarget('/etc/x', '..')).toBe('/');
  });
});
