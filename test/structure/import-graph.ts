/**
 * The import graph of builder/, read from the sources the way the compiler resolves them: every
 * relative `import … from`, `export … from` and `import('…')` of every .ts file. Used by the
 * structure tests to show the folders read as a pipeline (no cycles, no stage reaching back).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/** file (relative to the root, e.g. builder/image/intake.ts) → the builder files it imports. */
export type ImportGraph = Map<string, Set<string>>;

const SPECIFIER = /(?:\bimport|\bexport)\s[^'"]*?\bfrom\s*['"](\.{1,2}\/[^'"]+)['"]|\bimport\s*\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

export function readImportGraph(root: string, folder = 'builder'): ImportGraph {
  const graph: ImportGraph = new Map();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) graph.set(path, importsOf(root, path, folder));
    }
  };
  walk(folder);
  return graph;
}

/** Relative imports of builder files that leave builder/ (product code must not reach into test/ or scripts/). */
export function importsLeaving(root: string, folder = 'builder'): string[] {
  const leaving: string[] = [];
  for (const file of readImportGraph(root, folder).keys()) {
    for (const target of importsOf(root, file, '')) if (!target.startsWith(`${folder}/`)) leaving.push(`${file} -> ${target}`);
  }
  return leaving;
}

function importsOf(root: string, file: string, folder: string): Set<string> {
  // Comments may quote imports; code never starts a line with `*` or `//`.
  const code = readFileSync(join(root, file), 'utf8').split('\n').filter((line) => !/^\s*(\*|\/\/|\/\*)/.test(line)).join('\n');
  const targets = new Set<string>();
  for (const match of code.matchAll(SPECIFIER)) {
    const specifier = match[1] ?? match[2] ?? '';
    const target = relative(root, resolve(root, dirname(file), specifier));
    if (folder === '' || target.startsWith(`${folder}/`)) targets.add(target);
  }
  return targets;
}

/** The folder of a builder file (`builder/image/intake/cache.ts` → `image`). */
export function folderOf(file: string): string {
  return file.split('/')[1] ?? '';
}

/** The graph between folders: an edge a → b when a file of a imports a file of b (a ≠ b). */
export function folderGraph(graph: ImportGraph): ImportGraph {
  const folders: ImportGraph = new Map();
  for (const [file, targets] of graph) {
    const from = folderOf(file);
    if (!folders.has(from)) folders.set(from, new Set());
    for (const target of targets) if (folderOf(target) !== from) folders.get(from)?.add(folderOf(target));
  }
  return folders;
}

/** Every cycle's members, one list per strongly connected component of more than one node or a self-import (Tarjan). */
export function cycles(graph: ImportGraph): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string): void => {
    index.set(node, counter);
    low.set(node, counter);
    counter += 1;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node) ?? 0, low.get(next) ?? 0));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node) ?? 0, index.get(next) ?? 0));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    for (let member = stack.pop(); member !== undefined; member = stack.pop()) {
      onStack.delete(member);
      component.push(member);
      if (member === node) break;
    }
    if (component.length > 1 || graph.get(node)?.has(node)) found.push(component.sort());
  };
  for (const node of [...graph.keys()].sort()) if (!index.has(node)) visit(node);
  return found;
}
