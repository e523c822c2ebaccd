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
      expect.stringMatching(/^error: roles\/web\.yaml:4:1: unknown key "packags" at the top level .*did you mean "packages"/),
      expect.stringMatching(/^error: roles\/web\.yaml:6:19: files\["\/etc\/a"\]\.mode: "644" is not a valid mode \(hint: write it quoted with a leading zero/),
      expect.stringMatching(/^error: roles\/web\.yaml:7:19: files\["\/etc\/b"\]\.mode: 0644 must be quoted text/),
      expect.stringMatching(/^error: roles\/web\.yaml:8:27: unknown key "onwer" in files\["\/etc\/c"\] .*did you mean "owner"/),
      expect.stringMatching(/^error: roles\/web\.yaml:9:3: files: "etc\/d" is not an absolute/),
      expect.stringMatching(/^error: roles\/web\.yaml:10:3: files: "\/etc\/..\/e" is not an absolute/),
      expect.stringMatching(/^error: roles\/web\.yaml:11:12: services\[0\]: "nginx" is not a valid systemd unit name \(hint: .*nginx\.service\)$/),
      expect.stringMatching(/^error: roles\/web\.yaml:12:11: secrets\[0\]: "Bad-Name" is not a valid secret name/),
      expect.stringMatching(/^error: roles\/web\.yaml:3:20: overlay "missing" of role "web" does not exist/),
    ]));
    expect(lines).toHaveLength(9);
  });

  it('refuses YAML syntax errors and non-mapping files with a location', async () => {
    expect(await errorsOf({ 'a.yaml': 'tags: [web\n' })).toEqual([expect.stringMatching(/^error: roles\/a\.yaml:\d+:\d+: invalid YAML/)]);
    expect(await errorsOf({ 'b.yaml': '- just\n- a list\n' })).toEqual([expect.stringMatching(/^error: roles\/b\.yaml:1:1: the file must be a mapping \(key: value lines\), not a list/)]);
    expect(await errorsOf({ 'e.yaml': '# nothing yet\n' })).toEqual([expect.stringMatching(/^error: roles\/e\.yaml:1:1: the role file is empty \(hint: .*docs\/roles\.md\)$/)]);
    expect(await errorsOf({ 'c.yaml': 'tags: [a]\ntags: [b]\n' })).toEqual([expect.stringMatching(/^error: roles\/c\.yaml:2:1: duplicate key "tags"/)]);
  });

  it('takes a mode only as a quoted octal string', async () => {
    const dir = { 'web.yaml': "files:\n  /etc/a: { mode: '0600' }\n  /etc/b: { mode: 0600 }\n  /etc/c: { mode: 0o600 }\n" };
    expect(await errorsOf(dir)).toEqual([
      expect.stringMatching(/^error: roles\/web\.yaml:3:19: files\["\/etc\/b"\]\.mode: 0600 must be quoted text, not a number \(hint: write it quoted with a leading zero/),
      expect.stringMatching(/^error: roles\/web\.yaml:4:19: files\["\/etc\/c"\]\.mode: 0o600 must be quoted text, not a number \(hint: write it quoted with a leading zero/),
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

  it('refuses an item listed twice and a broken glob, each where it is written', async () => {
    expect(await errorsOf({ 'web.yaml': 'tags: [web, web]\nfiles:\n  /etc/[z-a]: { mode: "0600" }\n' })).toEqual([
      expect.stringMatching(/^error: roles\/web\.yaml:1:13: tags: "web" is listed twice/),
      expect.stringMatching(/^error: roles\/web\.yaml:3:3: files: "\/etc\/\[z-a\]" is not a valid glob \(hint: /),
    ]);
  });

  it('builds an old role name as the role replacing it, and refuses anything else in its file', async () => {
    const roles = await withTempDir(async (root) => {
      await mkdir(path.join(root, 'roles'));
      await mkdir(path.join(root, 'overlays', 'common'), { recursive: true });
      await writeFile(path.join(root, 'roles', 'db.yaml'), 'description: db\ntags: [web, postgresql]\noverlays: [common]\n');
      await writeFile(path.join(root, 'roles', 'primary.yaml'), 'description: old\nreplaced_by: db\n');
      return loadRoles(path.join(root, 'roles'));
    });
    expect(roles.get('primary')).toMatchObject({ name: 'primary', replacedBy: 'db', tags: ['web', 'postgresql'], overlays: ['common'], description: 'old' });
    expect(await errorsOf({ 'db.yaml': 'tags: [web]\n', 'old.yaml': 'replaced_by: db\ntags: [x]\n', 'older.yaml': 'replaced_by: old\n' })).toEqual([
      expect.stringMatching(/^error: roles\/old\.yaml:2:1: role "old" is replaced by "db", so it may not set tags/),
      expect.stringMatching(/^error: roles\/older\.yaml: role "older" is replaced by "old", which is itself replaced/),
    ]);
  });

  it('says how to write a value of the wrong kind', async () => {
    expect(await errorsOf({ 'web.yaml': 'tags: web\nfiles: /etc/x\ndescription: [a]\n' })).toEqual([
      expect.stringMatching(/^error: roles\/web\.yaml:1:7: tags must be a list, not "web" \(hint: write \[a, b\] on one line/),
      expect.stringMatching(/^error: roles\/web\.yaml:2:8: files must be a mapping \(key: value lines\), not "\/etc\/x" \(hint: write key: value pairs/),
      expect.stringMatching(/^error: roles\/web\.yaml:3:14: description must be text, not a list \(hint: /),
    ]);
  });
});
