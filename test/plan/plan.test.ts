import { describe, expect, it } from 'vitest';
import { decideNode, describeChanges, type PreviousNode } from '../../builder/plan/plan.ts';
import type { NodeDigest } from '../../builder/plan/digest.ts';

const current: NodeDigest = { digest: 'd2', publicDigest: 'p2', files: { 'root:/etc/haproxy/haproxy.cfg': 'h2', 'boot:user-data': 'u1' } };
const previous: PreviousNode = {
  digest: 'd1',
  files: { 'root:/etc/haproxy/haproxy.cfg': 'h1', 'boot:user-data': 'u1', 'root:/etc/old': 'o' },
  image: { size: 100, mtimeMs: 5 },
};

describe('decideNode', () => {
  it('keeps an image whose digest and file on disk are unchanged', () => {
    const same = { ...previous, digest: 'd2', files: current.files };
    expect(decideNode('lb1', current, same, { size: 100, mtimeMs: 5 })).toEqual({ node: 'lb1', action: 'keep', reasons: [] });
  });

  it('bakes a new node', () => {
    expect(decideNode('web4', current, undefined, undefined).reasons).toEqual(['new node (no previous build)']);
  });

  it('names the files that changed', () => {
    const decision = decideNode('lb1', current, previous, { size: 100, mtimeMs: 5 });
    expect(decision.action).toBe('bake');
    expect(decision.reasons).toEqual(['changed root:/etc/haproxy/haproxy.cfg', 'removed root:/etc/old']);
  });

  it('bakes again when the image was deleted or touched', () => {
    const same = { ...previous, digest: 'd2', files: current.files };
    expect(decideNode('lb1', current, same, undefined).reasons).toEqual(['image missing from the output folder']);
    expect(decideNode('lb1', current, same, { size: 100, mtimeMs: 6 }).reasons).toEqual(['image changed on disk since it was built']);
  });

  it('explains a digest change that touched no file', () => {
    const sameFiles = { ...previous, files: current.files };
    expect(decideNode('lb1', current, sameFiles, { size: 100, mtimeMs: 5 }).reasons).toEqual([
      'base image, pibake version, disk id, a secret or --sealed changed',
    ]);
  });
});

describe('describeChanges', () => {
  it('lists at most five changes, then a count', () => {
    const after = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`root:/f${i}`, 'x']));
    const lines = describeChanges({}, after);
    expect(lines).toHaveLength(6);
    expect(lines[5]).toBe('and 3 more files');
  });
});
