import { describe, expect, it } from 'vitest';
import { clusterChanges, decideNode, describeChanges, type PreviousNode } from '../../builder/plan/plan.ts';
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

  it('names the change of the cluster that changed its files (a load balancer and its backends)', () => {
    const decision = decideNode('lb1', current, previous, { size: 100, mtimeMs: 5 }, false, ['added web4 (db)']);
    expect(decision.reasons).toEqual(['changed root:/etc/haproxy/haproxy.cfg', 'removed root:/etc/old', 'because the cluster changed: added web4 (db)']);
    // A node whose files stayed the same is kept, whatever else changed.
    const same = { ...previous, digest: 'd2', files: current.files };
    expect(decideNode('web1', current, same, { size: 100, mtimeMs: 5 }, false, ['added web4 (db)']).action).toBe('keep');
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

describe('clusterChanges', () => {
  it('lists added, removed, re-roled and moved nodes against the previous build', () => {
    const before = { lb1: { role: 'lb', ip: '10.0.0.10' }, web1: { role: 'db', ip: '10.0.0.11' }, web2: { role: 'db', ip: '10.0.0.12' }, web3: { role: 'replica', ip: '10.0.0.13' } };
    const now = [
      { name: 'lb1', role: 'lb', ip: '10.0.0.10' }, { name: 'web1', role: 'db', ip: '10.0.0.21' },
      { name: 'web3', role: 'db', ip: '10.0.0.13' }, { name: 'web4', role: 'db', ip: '10.0.0.14' },
    ];
    expect(clusterChanges(before, now)).toEqual(['web1 moved to 10.0.0.21', 'web3 is now db (was replica)', 'added web4 (db)', 'removed web2']);
    expect(clusterChanges(undefined, now)).toEqual([]);
  });
});
