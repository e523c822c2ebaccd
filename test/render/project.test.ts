/**
 * The shared rendering step: a node renders once and its build id is bound afterwards, from a
 * digest of that rendering counted with stand-ins for the secrets, so the id is the same whatever
 * the secrets (a sealed build, the unsealed one, `pibake render`) and changes with the node's files.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Inventory } from '../../builder/inventory/types.ts';
import { NODE_FILE, bindBuildId } from '../../builder/render/build-id.ts';
import { projectSecrets, renderProjectNode, selectNodes, type Project } from '../../builder/render/project.ts';
import { OverlayReader } from '../../builder/render/overlay.ts';
import { renderNode } from '../../builder/render/render.ts';
import { loadRoles } from '../../builder/render/roles.ts';
import type { RenderedNode } from '../../builder/render/types.ts';
import { BUILD_ID, FIXTURE_OVERLAYS, FIXTURE_ROLES, LITE_PACKAGES, sevenNodeInventory } from './fixture.ts';

const CMDLINE = 'console=tty1 root=PARTUUID=4e639091-02 rootwait resize\n';
const base = { generation: 'trixie' as const, installedPackages: LITE_PACKAGES };

let dir: string;
let project: Project;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pibake-project-'));
  const inventory: Inventory = sevenNodeInventory(dir);
  project = {
    inventory, roles: await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS), folders: { roles: FIXTURE_ROLES, overlays: FIXTURE_OVERLAYS },
    overlays: new OverlayReader(FIXTURE_OVERLAYS),
  };
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

/** Every file of the node as `path: text` (boot files and cmdline.txt after the edits included). */
function files(node: RenderedNode): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of node.rootEntries) out.set(e.path, e.kind === 'file' ? e.data.toString('utf8') : e.kind === 'symlink' ? `-> ${e.target}` : 'dir');
  for (const f of node.bootFiles) out.set(`boot:${f.path}`, f.data.toString('utf8'));
  out.set('boot:cmdline.txt', node.bootEdits.reduce((text, edit) => edit.edit(text), CMDLINE));
  return out;
}

function differing(a: RenderedNode, b: RenderedNode): string[] {
  const fa = files(a);
  const fb = files(b);
  return [...new Set([...fa.keys(), ...fb.keys()])].filter((k) => fa.get(k) !== fb.get(k)).sort();
}

describe('renderProjectNode', () => {
  it('binds one build id, the same from real secrets and from stand-ins, into node.json, meta-data and cmdline.txt', async () => {
    const [lb] = selectNodes(project.inventory, ['lb']);
    const { secrets, standIns } = await projectSecrets(project, { sealed: false, base });
    const whole = await renderProjectNode(project, lb!, { secrets, standIns, base });
    const sealed = await renderProjectNode(project, lb!, { secrets: standIns, standIns, base });
    expect(whole.rendered.buildId).toMatch(/^[0-9a-f]{64}$/);
    expect(sealed.rendered.buildId).toBe(whole.rendered.buildId);
    const id = `lb-${whole.rendered.buildId.slice(0, 12)}`;
    const text = files(whole.rendered);
    expect(JSON.parse(text.get(NODE_FILE)!)).toMatchObject({ node: 'lb', buildId: whole.rendered.buildId, instanceId: id });
    expect(text.get('boot:meta-data')).toBe(`instance-id: ${id}\nlocal-hostname: lb\n`);
    expect(text.get('boot:cmdline.txt')).toBe(`console=tty1 root=PARTUUID=4e639091-02 rootwait resize ds=nocloud;i=${id} cfg80211.ieee80211_regdom=DE\n`);
    // Only the secret-bearing files tell them apart, and the stand-in rendering is the sealed one.
    const secretOnly = differing(whole.rendered, sealed.rendered);
    expect(secretOnly.length).toBeGreaterThan(2);
    expect(secretOnly.filter((f) => !whole.secretFiles.includes(f))).toEqual([]);
    expect(differing(bindBuildId(whole.unbound.standIn, sealed.rendered.buildId), sealed.rendered)).toEqual([]);
    expect(whole.roomSizes).toEqual(sealed.roomSizes);
  });

  it('gives another id when the node\'s files change, and binding touches only the id-bearing files', async () => {
    const [db1] = selectNodes(project.inventory, ['db1']);
    const { secrets, standIns } = await projectSecrets(project, { sealed: false, base });
    const before = await renderProjectNode(project, db1!, { secrets, standIns, base });
    const moved = { ...project, inventory: { ...project.inventory, locale: { ...project.inventory.locale, timezone: 'UTC' } } };
    const after = await renderProjectNode(moved, db1!, { secrets, standIns, base });
    expect(after.rendered.buildId).not.toBe(before.rendered.buildId);

    const unbound = await renderNode({ inventory: project.inventory, node: db1!, roles: project.roles, secrets, base, overlaysDir: FIXTURE_OVERLAYS });
    expect(differing(bindBuildId(unbound, BUILD_ID), bindBuildId(unbound, 'f'.repeat(64)))).toEqual(['/etc/pibake/node.json', 'boot:cmdline.txt', 'boot:meta-data']);
    const bookworm = await renderNode({ ...{ inventory: project.inventory, node: db1!, roles: project.roles, secrets, overlaysDir: FIXTURE_OVERLAYS }, base: { ...base, generation: 'bookworm' } });
    expect(differing(bindBuildId(bookworm, BUILD_ID), bindBuildId(bookworm, 'f'.repeat(64)))).toEqual(['/etc/pibake/node.json']);
  });

  it('refuses an overlay that provides the node file the build id is bound into', async () => {
    const overlays = path.join(dir, 'overlays-node-file');
    await mkdir(path.join(overlays, 'evil/etc/pibake'), { recursive: true });
    await writeFile(path.join(overlays, 'evil/etc/pibake/node.json'), '{}\n');
    const roles = await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS);
    roles.set('lb', { ...roles.get('lb')!, overlays: ['evil'], secrets: [] });
    const { secrets } = await projectSecrets({ ...project, roles }, { sealed: false, base });
    await expect(renderNode({ inventory: project.inventory, node: project.inventory.nodes[0]!, roles, secrets, base, overlaysDir: overlays }))
      .rejects.toThrow(/overlay file \/etc\/pibake\/node\.json collides with a file pibake generates for node "lb"/);
  });
});

describe('selectNodes', () => {
  it('keeps inventory order and reports every unknown name at once', () => {
    expect(selectNodes(project.inventory, ['db2', 'lb']).map((n) => n.name)).toEqual(['lb', 'db2']);
    expect(selectNodes(project.inventory, undefined)).toBe(project.inventory.nodes);
    expect(() => selectNodes(project.inventory, ['x', 'lb', 'y'])).toThrow(/no node named x, y in .*cluster\.yaml/);
  });
});
