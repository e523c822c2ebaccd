import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { diskIdFor, digestNode, type NodeInputs } from '../../builder/plan/digest.ts';

function inputs(overrides: Partial<NodeInputs> = {}): NodeInputs {
  return {
    toolVersion: '0.1.0',
    baseSha256: 'a'.repeat(64),
    diskId: '1234abcd',
    rendered: {
      node: 'lb1',
      role: 'lb',
      rootEntries: [
        { kind: 'file', path: '/etc/haproxy/haproxy.cfg', mode: 0o640, uid: 0, gid: 0, data: Buffer.from('global\n') },
        { kind: 'symlink', path: '/etc/systemd/system/multi-user.target.wants/x.service', mode: 0o777, uid: 0, gid: 0, target: '/etc/systemd/system/x.service' },
      ],
      bootFiles: [{ path: 'user-data', data: Buffer.from('#cloud-config\n') }],
      bootEdits: [{ path: 'cmdline.txt', describe: 'append ds=nocloud', edit: (s) => s }],
    },
    ...overrides,
  };
}

describe('digestNode', () => {
  it('is stable for equal inputs and lists every baked file', () => {
    const a = digestNode(inputs());
    expect(digestNode(inputs())).toEqual(a);
    expect(Object.keys(a.files)).toEqual([
      'boot-edit:cmdline.txt',
      'boot:user-data',
      'root:/etc/haproxy/haproxy.cfg',
      'root:/etc/systemd/system/multi-user.target.wants/x.service',
    ]);
  });

  it('changes with content, mode, base and tool version', () => {
    const base = digestNode(inputs()).digest;
    const changedMode = inputs();
    (changedMode.rendered.rootEntries[0] as { mode: number }).mode = 0o644;
    expect(digestNode(changedMode).digest).not.toBe(base);
    expect(digestNode(inputs({ baseSha256: 'b'.repeat(64) })).digest).not.toBe(base);
    expect(digestNode(inputs({ toolVersion: '0.2.0' })).digest).not.toBe(base);
    expect(digestNode(inputs({ diskId: '1234abce' })).digest).not.toBe(base);
  });

  it('keeps the bytes of secret-bearing files out of the public digest and the file list, not out of the digest', () => {
    const withSecret = (password: string, sealed = false) => {
      const i = inputs({ sealed });
      i.rendered.rootEntries.push({ kind: 'file', path: '/etc/pibake/db.password', mode: 0o600, uid: 0, gid: 0, data: Buffer.from(password), secrets: ['db_password'] });
      return digestNode(i);
    };
    const a = withSecret('first-value');
    const b = withSecret('second-value');
    const sealed = withSecret('stand-in', true);
    // A rotated secret rebuilds the image; the instance-id and the card's manifest stay the same.
    expect(b.digest).not.toBe(a.digest);
    expect(b.publicDigest).toBe(a.publicDigest);
    expect(b.files).toEqual(a.files);
    expect(sealed.publicDigest).toBe(a.publicDigest);
    expect(sealed.digest).not.toBe(withSecret('stand-in').digest);
    // Which secrets, its mode or its path still count publicly.
    const renamed = inputs();
    renamed.rendered.rootEntries.push({ kind: 'file', path: '/etc/pibake/db.password', mode: 0o600, uid: 0, gid: 0, data: Buffer.from('first-value'), secrets: ['other'] });
    expect(digestNode(renamed).publicDigest).not.toBe(a.publicDigest);
    expect(JSON.stringify(a)).not.toContain(createHash('sha256').update('first-value').digest('hex'));
  });
});

describe('diskIdFor', () => {
  it('gives 8 hex digits, stable per node and distinct across nodes', () => {
    const ids = ['lb1', 'web1', 'web2', 'web3'].map((n) => diskIdFor('pistack', n));
    expect(ids.every((id) => /^[0-9a-f]{8}$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(4);
    expect(diskIdFor('pistack', 'lb1')).toBe(ids[0]);
  });
});
