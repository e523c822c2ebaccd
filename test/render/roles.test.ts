import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatError, PibakeError } from '../../builder/common/errors.ts';
import { loadRoles, ruleFor } from '../../builder/render/roles.ts';
import { FIXTURE_OVERLAYS, FIXTURE_ROLES, withTempDir } from './fixture.ts';

async function errorsOf(files: Record<string, string>, overlays: string[] = ['common']): Promise<string[]> {
  return withTempDir(async (dir) => {
    await mkdir(path.join(dir, 'roles'));
    for (const o of overlays) await mkdir(path.join(dir, 'overlays', o), { recursive: true });
    for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, 'roles', name), text);
    try {
      await loadRoles(path.join(dir, 'roles'));
    } catch (error) {
      expect(error).toBeInstanceOf(PibakeError);
      return formatError(error).map((l) => l.replace(`${dir}/`, ''));
    }
    return [];
  });
}

describe('loadRoles', () => {
  it('loads the fixture roles', async () => {
    const roles = await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS);
    expect([...roles.keys()]).toEqual(['lb', 'primary', 'replica']);
    const lb = roles.get('lb');
    expect(lb?.tags).toEqual(['load-balancer']);
    expect(lb?.overlays).toEqual(['common', 'lb']);
    expect(lb?.secrets).toEqual(['haproxy_stats_password']);
    expect(ruleFor(lb!, '/etc/haproxy/haproxy.cfg')).toMatchObject({ mode: 0o640, owner: 'root', group: 'haproxy' });
    expect(ruleFor(lb!, '/usr/local/lib/pibake/ownership.sh')?.mode).toBe(0o755);
    expect(ruleFor(lb!, '/usr/local/lib/pibake/sub/x.sh')).toBeUndefined();
  });

  it('reports every problem with file:line:column', async () => {
    const lines = await errorsOf({
      'web.yaml': [
        'description: web',
        'tags: [web]',
        'overlays: [common, missing]',
        'packags: [nginx]',
        'files:',
        '  /etc/a: { mode: "644" }',
        '  /etc/b: { mode: 0644 }',
        '  /etc/c: { mode: "0644", onwer: www-data }',
        '  etc/d: { mode: "0644" }',
        '  /etc/../e: {}',
        'services: [nginx]',
        'secrets: [Bad-Name]',
      ].join('\n'),
    });
    expect(lines).toEqual(expect.arrayContaining([
      expect.stringMatching(/^error: roles\/web\.yaml:4:1: unknown key "packags" in role file .*did you mean "packages"/),
      expect.stringMatching(/^error: roles\/web\.yaml:6:20: files: mode "644" of "\/etc\/a" is not a quoted four-digit octal mode/),
      expect.stringMatching(/^error: roles\/web\.yaml:7:19: files: mode 0644 of "\/etc\/b"/),
      expect.stringMatching(/^error: roles\/web\.yaml:8:27: unknown key "onwer" .*did you mean "owner"/),
      expect.stringMatching(/^error: roles\/web\.yaml:9:3: files: "etc\/d" is not an absolute/),
      expect.stringMatching(/^error: roles\/web\.yaml:10:3: files: "\/etc\/..\/e" is not an absolute/),
      expect.stringMatching(/^error: roles\/web\.yaml:11:12: services: "nginx" is not valid/),
      expect.stringMatching(/^error: roles\/web\.yaml:12:11: secrets: "Bad-Name" is not valid/),
      expect.stringMatching(/^error: roles\/web\.yaml:3:20: overlay "missing" of role "web" does not exist/),
    ]));
    expect(lines).toHaveLength(9);
  });

  it('refuses YAML syntax errors and non-mapping files with a location', async () => {
    expect(await errorsOf({ 'a.yaml': 'tags: [web\n' })).toEqual([expect.stringMatching(/^error: roles\/a\.yaml:\d+:\d+: invalid YAML/)]);
    expect(await errorsOf({ 'b.yaml': '- just\n- a list\n' })).toEqual([expect.stringMatching(/^error: roles\/b\.yaml:1:1: a role file must be a mapping/)]);
    expect(await errorsOf({ 'c.yaml': 'tags: [a]\ntags: [b]\n' })).toEqual([expect.stringMatching(/^error: roles\/c\.yaml:2:1: duplicate key "tags"/)]);
  });

  it('takes a mode only as a quoted octal string', async () => {
    const dir = { 'web.yaml': "files:\n  /etc/a: { mode: '0600' }\n  /etc/b: { mode: 0600 }\n  /etc/c: { mode: 0o600 }\n" };
    expect(await errorsOf(dir)).toEqual([
      expect.stringMatching(/^error: roles\/web\.yaml:3:19: files: mode 0600 of "\/etc\/b" .*\(hint: write it quoted with a leading zero/),
      expect.stringMatching(/^error: roles\/web\.yaml:4:19: files: mode 0o600 of "\/etc\/c" .*\(hint: write it quoted with a leading zero/),
    ]);
    const roles = await withTempDir(async (root) => {
      await mkdir(path.join(root, 'roles'));
      await writeFile(path.join(root, 'roles', 'web.yaml'), "files:\n  /etc/a: { mode: '0600' }\n");
      return loadRoles(path.join(root, 'roles'));
    });
    expect(roles.get('web')?.files[0]?.mode).toBe(0o600);
  });

  it('reports every duplicate key and a second document', async () => {
    expect(await errorsOf({ 'd.yaml': 'tags: [a]\npackages: [nginx]\ntags: [b]\npackages: [curl]\n---\ntags: [c]\n' })).toEqual([
      expect.stringMatching(/^error: roles\/d\.yaml:3:1: duplicate key "tags" \(hint: it is already set at line 1/),
      expect.stringMatching(/^error: roles\/d\.yaml:4:1: duplicate key "packages" \(hint: it is already set at line 2/),
      expect.stringMatching(/^error: roles\/d\.yaml:1:1: the file holds more than one YAML document/),
    ]);
  });
});
