import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { diskIdFor, digestNode, type NodeInputs } from '../../builder/plan/digest.ts';

function inputs(overrides: Partial<NodeInputs> = {}): NodeInputs {
  const node: Omit<NodeInputs, 'standIn'> & Partial<NodeInputs> = {
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
      bootEdits: [{ path: 'cmdline.txt', describe: 'append ds=nocloud', edit: (s: string) => s }],
    },
    ...overrides,
  };
  return { ...node, standIn: overrides.standIn ?? node.rendered };
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

  it('counts a secret-bearing file by its stand-in rendering publicly, and by its real bytes in the digest', () => {
    const secretFile = (data: string, secrets = ['db_password']) =>
      ({ kind: 'file' as const, path: '/etc/pibake/db.conf', mode: 0o600, uid: 0, gid: 0, data: Buffer.from(data), secrets });
    const node = (value: string, template = 'password=', sealed = false) => {
      const real = inputs({ sealed });
      real.rendered.rootEntries.push(secretFile(`${template}${value}`));
      const twin = { ...inputs().rendered, rootEntries: [...inputs().rendered.rootEntries, secretFile(`${template}STAND-IN`)] };
      return digestNode({ ...real, standIn: sealed ? real.rendered : twin });
    };
    const a = node('first-value');
    const b = node('second-value');
    // A rotated secret rebuilds the image; the instance-id and the card's manifest stay the same.
    expect(b.digest).not.toBe(a.digest);
    expect(b.publicDigest).toBe(a.publicDigest);
    expect(b.files).toEqual(a.files);
    // A sealed build renders from the stand-ins itself: the same public digest, another image.
    const sealed = node('STAND-IN', 'password=', true);
    expect(sealed.publicDigest).toBe(a.publicDigest);
    expect(sealed.digest).not.toBe(node('STAND-IN').digest);
    // A change of the template (not of a secret) shows in the file list and the public digest.
    const changed = node('first-value', 'pass=');
    expect(changed.files['root:/etc/pibake/db.conf']).not.toBe(a.files['root:/etc/pibake/db.conf']);
    expect(changed.publicDigest).not.toBe(a.publicDigest);
    expect(JSON.stringify(a)).not.toContain(createHash('sha256').update('password=first-value').digest('hex'));
  });

  it('refuses a file that exists only with some secret values', () => {
    const real = inputs();
    real.rendered.rootEntries.push({ kind: 'file', path: '/etc/x', mode: 0o600, uid: 0, gid: 0, data: Buffer.from('v'), secrets: ['s'] });
    expect(() => digestNode({ ...real, standIn: inputs().rendered })).toThrow(/\/etc\/x exists only with some secret values/);
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
