import { describe, expect, it } from 'vitest';
import { PibakeError } from '../../builder/common/errors.ts';
import { parseYamlTree } from '../../builder/common/yaml-tree.ts';
import type { YamlNode } from '../../builder/common/yaml-tree.ts';
import { locate } from '../inventory/helpers.ts';

const where = (node: YamlNode | undefined): string => `${node?.location.line}:${node?.location.column}`;

describe('parseYamlTree', () => {
  it('keeps the location and the core-schema value of every scalar', () => {
    const yaml = 'a:\n  plain: 17\n  quoted: "17"\n  single: \'x y\'\n  block: |\n    line\n  list: [~, true, 1.5]\n';
    const { root, problems } = parseYamlTree(yaml, 'f.yaml');
    expect(problems).toEqual([]);
    if (root?.kind !== 'map') throw new Error('expected a mapping');
    const a = root.entries[0]?.value;
    if (a?.kind !== 'map') throw new Error('expected a mapping');
    const get = (key: string): YamlNode | undefined => a.entries.find((e) => e.key === key)?.value;
    expect(get('plain')).toMatchObject({ kind: 'scalar', value: 17, text: '17' });
    expect(where(get('plain'))).toBe(locate(yaml, 'plain: ^17'));
    expect(get('quoted')).toMatchObject({ value: '17' });
    expect(where(get('quoted'))).toBe(locate(yaml, 'quoted: ^"17"'));
    expect(where(get('single'))).toBe(locate(yaml, "single: ^'x y'"));
    expect(get('block')).toMatchObject({ value: 'line\n' });
    const list = get('list');
    if (list?.kind !== 'seq') throw new Error('expected a list');
    expect(list.items.map((item) => (item.kind === 'scalar' ? item.value : item.kind))).toEqual([null, true, 1.5]);
    expect(where(list.items[2])).toBe(locate(yaml, '^1.5'));
    expect(a.entries.map((e) => `${e.key}@${e.keyLocation.line}:${e.keyLocation.column}`)).toEqual(['plain@2:3', 'quoted@3:3', 'single@4:3', 'block@5:3', 'list@7:3']);
  });

  it('tells quoted scalars from plain ones', () => {
    const { root } = parseYamlTree('p: 0644\nd: "0644"\ns: \'0644\'\nb: |\n  0644\n', 'f.yaml');
    if (root?.kind !== 'map') throw new Error('expected a mapping');
    expect(root.entries.map((e) => (e.value.kind === 'scalar' ? [e.key, e.value.quoted, e.value.value] : []))).toEqual([
      ['p', false, 644],
      ['d', true, '0644'],
      ['s', true, '0644'],
      ['b', false, '0644\n'],
    ]);
  });

  it('follows anchors and reports aliases without one', () => {
    const { root, problems } = parseYamlTree('x: &n { a: 1 }\ny: *n\nz: *missing\n', 'f.yaml');
    if (root?.kind !== 'map') throw new Error('expected a mapping');
    expect(root.entries[1]?.value).toBe(root.entries[0]?.value);
    expect(problems).toEqual([{ message: 'alias *missing refers to no anchor', location: { file: 'f.yaml', line: 3, column: 4 } }]);
  });

  it('collects every duplicate key and refuses several documents', () => {
    const { problems } = parseYamlTree('a: 1\nb: 2\na: 3\nb: 4\n---\nc: 1\n', 'f.yaml');
    expect(problems.map((p) => `${p.location?.line}:${p.location?.column} ${p.message}`)).toEqual([
      '3:1 duplicate key "a"',
      '4:1 duplicate key "b"',
      '1:1 the file holds more than one YAML document',
    ]);
  });

  it('turns a syntax error into a located PibakeError', () => {
    const thrown = (source: string): PibakeError => {
      try {
        parseYamlTree(source, 'f.yaml');
      } catch (error) {
        if (error instanceof PibakeError) return error;
        throw error;
      }
      throw new Error('no syntax error reported');
    };
    const error = thrown('a: 1\nb: [1, 2\nc: 3\n');
    expect(error.message).toMatch(/^YAML syntax error: /);
    expect(error.location).toMatchObject({ file: 'f.yaml', line: expect.any(Number), column: expect.any(Number) });
    expect(thrown('a: 1\n\tb: 2\n').location).toEqual({ file: 'f.yaml', line: 2, column: 1 });
  });
});
