/**
 * The folder tree reads as the pipeline only if the imports say so. Read from the sources: no
 * import cycle between files or between folders of builder/, the shared layers (common/, bytes/)
 * below every stage, and image/ free of the stages that come before or beside it.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchDir } from '../helpers/image.ts';
import { cycles, folderGraph, type ImportGraph, importsLeaving, readImportGraph } from './import-graph.ts';

const root = resolve(import.meta.dirname, '../..');
const graph = readImportGraph(root);

/** Folders every stage may use: the shared vocabulary and the disk adapters. */
const SHARED = ['common', 'bytes', 'image'];
/**
 * The stages in the order data flows through them; build/ runs them in that order for a cluster
 * (build, seal, render), and status/ and cli/ read them all.
 */
const PIPELINE = ['inventory', 'plan', 'render', 'carry', 'bake', 'package', 'build', 'flash', 'status', 'cli'];

/** The folders a folder's files import, besides its own. */
function importedBy(folder: string): string[] {
  return [...(folderGraph(graph).get(folder) ?? [])].sort();
}

function graphOf(edges: Record<string, string[]>): ImportGraph {
  return new Map(Object.entries(edges).map(([from, to]) => [from, new Set(to)]));
}

describe('the cycle finder', () => {
  it('finds two-node and longer cycles and a self-import, and nothing in a graph without one', () => {
    expect(cycles(graphOf({ a: ['b'], b: ['a'], c: ['a'] }))).toEqual([['a', 'b']]);
    expect(cycles(graphOf({ a: ['b'], b: ['c'], c: ['a', 'd'], d: [] }))).toEqual([['a', 'b', 'c']]);
    expect(cycles(graphOf({ a: ['a'] }))).toEqual([['a']]);
    expect(cycles(graphOf({ a: ['b', 'c'], b: ['c'], c: [] }))).toEqual([]);
  });

  it('sees static, re-exporting, type-only and dynamic imports in real files', async () => {
    const { dir, cleanup } = await scratchDir('imports');
    try {
      await mkdir(join(dir, 'builder/one'), { recursive: true });
      await mkdir(join(dir, 'builder/two'), { recursive: true });
      await writeFile(join(dir, 'builder/one/a.ts'), "import type { B } from '../two/b.ts';\nexport const a = 1;\n");
      await writeFile(join(dir, 'builder/two/b.ts'), "export type B = number;\nexport { c } from './c.ts';\n");
      await writeFile(join(dir, 'builder/two/c.ts'), "export const c = async () => import('../one/a.ts');\n// import { x } from '../one/not-code.ts';\n");
      const found = readImportGraph(dir);
      expect(found.get('builder/one/a.ts')).toEqual(new Set(['builder/two/b.ts']));
      expect(cycles(found)).toEqual([['builder/one/a.ts', 'builder/two/b.ts', 'builder/two/c.ts']]);
      expect(cycles(folderGraph(found))).toEqual([['one', 'two']]);
    } finally {
      await cleanup();
    }
  });
});

describe('the imports of builder/', () => {
  it('are read from every source file', () => {
    expect(graph.size).toBeGreaterThan(80);
    expect(graph.get('builder/image/intake.ts')).toContain('builder/bytes/open.ts');
  });

  it('hold no cycle between files', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('hold no cycle between folders', () => {
    expect(cycles(folderGraph(graph))).toEqual([]);
  });

  it('keep common/ free of every other folder, and bytes/ above common/ only', () => {
    expect(importedBy('common')).toEqual([]);
    expect(importedBy('bytes')).toEqual(['common']);
  });

  it('keep image/ to the shared layers: neither render/, inventory/ nor package/', () => {
    expect(importedBy('image')).toEqual(['bytes', 'common']);
  });

  it('let no stage import a later one (inventory → plan → render → carry → bake → package → build → flash; status and cli read them all)', () => {
    const later = PIPELINE.flatMap((folder, i) => importedBy(folder)
      .filter((f) => PIPELINE.indexOf(f) > i)
      .map((f) => `${folder} -> ${f}`));
    expect(later).toEqual([]);
    for (const folder of new Set([...graph.keys()].map((file) => file.split('/')[1] ?? ''))) {
      expect([...SHARED, ...PIPELINE], `${folder}/ has a place in the order`).toContain(folder);
    }
  });

  it('never reach outside builder/ (test helpers such as synthesize.ts are not product code)', () => {
    expect(importsLeaving(root)).toEqual([]);
    expect([...graph.keys()].filter((file) => /synthesize/.test(file))).toEqual([]);
  });
});
