import { execa } from 'execa';
import { writeFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PibakeError } from '../../builder/common/errors.ts';
import { parseDiskLayout, readDiskLayout, writeMbrDiskId } from '../../builder/image/disk.ts';
import { scratchDir, sfdiskJson } from '../helpers/image.ts';

function mbr(entries: { status: number; type: number; start: number; sectors: number }[], diskId = 0x1a2b3c4d): Buffer {
  const b = Buffer.alloc(512);
  b.writeUInt32LE(diskId, 440);
  entries.forEach((e, i) => {
    const o = 446 + 16 * i;
    b[o] = e.status;
    b[o + 4] = e.type;
    b.writeUInt32LE(e.start, o + 8);
    b.writeUInt32LE(e.sectors, o + 12);
  });
  b.writeUInt16LE(0xaa55, 510);
  return b;
}

describe('parseDiskLayout (pure)', () => {
  it('reads MBR slots, types, the bootable flag and the disk id', () => {
    const layout = parseDiskLayout(mbr([
      { status: 0x80, type: 0x0c, start: 16384, sectors: 1048576 },
      { status: 0, type: 0x83, start: 1064960, sectors: 100000 },
    ]), 1064960 * 512 + 100000 * 512);
    expect(layout).toEqual({
      scheme: 'mbr', sizeBytes: (1064960 + 100000) * 512, sectorSize: 512, diskId: '1a2b3c4d',
      partitions: [
        { index: 1, startBytes: 16384 * 512, sizeBytes: 1048576 * 512, type: '0c', bootable: true, uuid: '1a2b3c4d-01' },
        { index: 2, startBytes: 1064960 * 512, sizeBytes: 100000 * 512, type: '83', bootable: false, uuid: '1a2b3c4d-02' },
      ],
    });
  });

  it('keeps slot numbers when a slot is empty (PARTUUID -03 stays -03)', () => {
    const layout = parseDiskLayout(mbr([
      { status: 0, type: 0x0c, start: 2048, sectors: 2048 },
      { status: 0, type: 0, start: 0, sectors: 0 },
      { status: 0, type: 0x83, start: 4096, sectors: 2048 },
    ], 0xab), 6144 * 512);
    expect(layout.partitions.map((p) => [p.index, p.uuid])).toEqual([[1, '000000ab-01'], [3, '000000ab-03']]);
  });

  it.each([
    ['random bytes', Buffer.from('x'.repeat(4096))],
    ['a short file', Buffer.from('hello\n')],
  ])('rejects %s as "not a disk image" with a hint', (_name, buf) => {
    expect(() => parseDiskLayout(buf, buf.length)).toThrow(PibakeError);
    expect(() => parseDiskLayout(buf, buf.length)).toThrow(/not a disk image: no partition table at sector 0/);
  });

  it('refuses overlapping partitions, naming both and their sectors', () => {
    const buf = mbr([
      { status: 0, type: 0x0c, start: 2048, sectors: 8192 },
      { status: 0, type: 0x83, start: 8192, sectors: 8192 },
    ]);
    expect(() => parseDiskLayout(buf, 16384 * 512)).toThrow(/^partitions 1 \(sectors 2048-10239\) and 2 \(sectors 8192-16383\) overlap$/);
  });

  it('refuses a partition that starts on the partition table itself', () => {
    const buf = mbr([{ status: 0, type: 0x0c, start: 0, sectors: 2048 }]);
    expect(() => parseDiskLayout(buf, 4096 * 512)).toThrow(/partition 1 starts at sector 0, inside the partition table/);
  });

  it('rejects a table whose partition runs past the end of the image (truncated file)', () => {
    const buf = mbr([{ status: 0, type: 0x83, start: 2048, sectors: 10_000 }]);
    expect(() => parseDiskLayout(buf, 4096 * 512)).toThrow(/beyond the end of the image/);
  });
});

describe('readDiskLayout / writeMbrDiskId against sfdisk', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir, cleanup } = await scratchDir()));
  afterAll(async () => cleanup());

  async function image(name: string, script: string, mib = 64): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, '');
    await truncate(path, mib * 1024 * 1024);
    await execa('sfdisk', ['--quiet', path], { input: script });
    return path;
  }

  it('MBR: starts, sizes, types, bootable flag and disk id agree with sfdisk --json', async () => {
    const path = await image('mbr.img', 'label: dos\nlabel-id: 0xdeadbeef\n\nstart=2048, size=20480, type=c, bootable\nstart=22528, size=20480, type=83\nstart=43008, type=7\n');
    const layout = await readDiskLayout(path);
    const table = await sfdiskJson(path);
    expect(layout.scheme).toBe('mbr');
    expect(`0x${layout.diskId}`).toBe(table.id);
    expect(layout.partitions.map((p) => ({ start: p.startBytes / 512, size: p.sizeBytes / 512, type: p.type.replace(/^0/, ''), bootable: p.bootable })))
      .toEqual(table.partitions.map((p) => ({ start: p.start, size: p.size, type: p.type, bootable: p.bootable === true })));
  });

  it('GPT: type GUIDs, partition GUIDs and the disk GUID agree with sfdisk --json', async () => {
    const path = await image('gpt.img', 'label: gpt\n\nstart=2048, size=20480, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=22528, size=40960, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n');
    const layout = await readDiskLayout(path);
    const table = await sfdiskJson(path);
    expect(layout.scheme).toBe('gpt');
    expect(layout.diskId).toBe(table.id.toLowerCase());
    expect(layout.partitions.map((p) => ({ start: p.startBytes / 512, size: p.sizeBytes / 512, type: p.type, uuid: p.uuid })))
      .toEqual(table.partitions.map((p) => ({ start: p.start, size: p.size, type: p.type.toLowerCase(), uuid: p.uuid?.toLowerCase() })));
  });

  it('writeMbrDiskId changes only the identifier (sfdisk sees the new id, same partitions)', async () => {
    const path = await image('id.img', 'label: dos\nlabel-id: 0x11111111\n\nstart=2048, size=20480, type=c\nstart=22528, type=83\n');
    const before = await sfdiskJson(path);
    await writeMbrDiskId(path, '0a0b0c0d');
    const after = await sfdiskJson(path);
    expect(after.id).toBe('0x0a0b0c0d');
    expect(after.partitions).toEqual(before.partitions);
    await expect(writeMbrDiskId(path, 'XYZ')).rejects.toMatchObject({ message: 'invalid disk identifier "XYZ"', hint: expect.stringMatching(/8 lowercase hex digits/) });
  });
});
