import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InspectReport } from '../../builder/image/inspect.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { blkid, dumpe2fsHeader, fsckFat, partitionOffsets, runPibake, scratchDir, sfdiskJson } from '../helpers/image.ts';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await scratchDir()));
afterAll(async () => cleanup());

describe.each(['bookworm', 'trixie'] as const)('pibake inspect --json on a synthesized %s image', (generation) => {
  let path: string;
  let report: InspectReport;

  beforeAll(async () => {
    path = join(dir, `${generation}.img`);
    await synthesizeRaspiosImage({ path, generation, sizeMiB: 300, bootMiB: 64 });
    const cli = await runPibake(['inspect', path, '--json']);
    expect(cli.stderr).toBe('');
    expect(cli.exitCode).toBe(0);
    report = JSON.parse(cli.stdout) as InspectReport;
  });

  it('partitions and disk id match sfdisk --json field by field', async () => {
    const table = await sfdiskJson(path);
    expect(report.scheme).toBe('mbr');
    expect(`0x${report.diskId}`).toBe(table.id);
    expect(report.partitions).toHaveLength(table.partitions.length);
    report.partitions.forEach((p, i) => {
      const s = table.partitions[i];
      expect(p.startSector).toBe(s?.start);
      expect(p.sizeSectors).toBe(s?.size);
      expect(p.type.replace(/^0/, '')).toBe(s?.type);
      expect(p.partuuid).toBe(`${report.diskId}-0${i + 1}`);
    });
  });

  it('filesystem types, labels and UUIDs match blkid -p --offset', async () => {
    for (const p of report.partitions) {
      const b = await blkid(path, p.startBytes);
      expect(b.TYPE).toBe(p.filesystem);
      expect(b.LABEL).toBe(p.label);
      expect(b.UUID).toBe(p.uuid);
    }
    expect(report.partitions.map((p) => p.label)).toEqual(['bootfs', 'rootfs']);
  });

  it('free space matches dumpe2fs -h (ext4) and fsck.vfat (FAT)', async () => {
    const [boot, root] = report.partitions;
    const h = await dumpe2fsHeader(path, root?.startBytes ?? -1);
    expect(root?.freeBytes).toBe(Number(h['Free blocks']) * Number(h['Block size']));
    expect(root?.uuid).toBe(h['Filesystem UUID']);
    expect(root?.label).toBe(h['Filesystem volume name']);
    const fsck = await fsckFat(path, boot?.startBytes ?? -1, boot?.sizeBytes ?? 0);
    const m = /(\d+)\/(\d+) clusters/.exec(fsck.output);
    expect(boot?.freeBytes).toBe((Number(m?.[2]) - Number(m?.[1])) * 512);
  });

  it('reports OS release, generation, cloud-init and the first-boot files of the generation', () => {
    expect(report.os).toMatchObject({ versionCodename: generation, generation });
    const honoured = Object.fromEntries(report.bootFiles.map((f) => [f.name, f.honoured]));
    expect(report.bootFiles.every((f) => !f.present)).toBe(true);
    if (generation === 'trixie') {
      expect(report.cloudInit).toMatchObject({ installed: true, datasourceList: ['NoCloud', 'None'], noCloudSeedfrom: 'file:///boot/firmware' });
      expect(report.cloudInit.configFiles).toContain('/etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg');
      expect(honoured).toMatchObject({ 'user-data': true, 'meta-data': true, 'network-config': true, 'custom.toml': false, 'firstrun.sh': false });
    } else {
      expect(report.cloudInit).toEqual({ installed: false, configFiles: [] });
      expect(honoured).toMatchObject({ 'user-data': false, 'custom.toml': true, 'firstrun.sh': false });
    }
    expect(honoured).toMatchObject({ ssh: true, 'userconf.txt': true, 'wpa_supplicant.conf': false });
  });

  it('sees boot files once they are present', async () => {
    const { FatFs } = await import('../../builder/image/fat.ts');
    await new FatFs(path, (await partitionOffsets(path)).boot).writeFiles([{ path: 'ssh', data: Buffer.alloc(0) }, { path: 'user-data', data: Buffer.from('#cloud-config\n') }]);
    const again = JSON.parse((await runPibake(['inspect', path, '--json'])).stdout) as InspectReport;
    const present = again.bootFiles.filter((f) => f.present).map((f) => f.name);
    expect(present).toEqual(['ssh', 'user-data']);
  });

  it('prints a compact human table', async () => {
    const cli = await runPibake(['inspect', path]);
    expect(cli.exitCode).toBe(0);
    expect(cli.stdout).toContain(`generation ${generation}`);
    expect(cli.stdout).toMatch(new RegExp(`^1\\s+${report.partitions[0]?.startSector}\\s+131072\\s+64 MiB\\s+0c\\s+vfat\\s+bootfs`, 'm'));
    expect(cli.stdout).toMatch(/^2\s+\d+\s+\d+\s+[\d.]+ MiB\s+83\s+ext4\s+rootfs/m);
  });
});

describe('pibake inspect on packed images', () => {
  it('reports of an .img.xz, a .zip and an .xz with a bare name what it reports of the raw image, and leaves nothing beside them', async () => {
    const folder = join(dir, 'packed');
    await mkdir(folder);
    const raw = join(folder, 'base.img');
    await synthesizeRaspiosImage({ path: raw, generation: 'trixie', sizeMiB: 200, bootMiB: 64 });
    await execa('xz', ['-0', '-T0', '-k', raw]);
    await execa('zip', ['-q', '-j', join(folder, 'base.zip'), raw]);
    await execa('cp', [`${raw}.xz`, join(folder, 'base-download')]);
    const of = async (image: string) => {
      const cli = await runPibake(['inspect', image, '--json']);
      expect(cli.stderr).toBe('');
      return JSON.parse(cli.stdout) as InspectReport;
    };
    const expected = await of(raw);
    for (const name of ['base.img.xz', 'base.zip', 'base-download']) {
      expect(await of(join(folder, name))).toEqual({ ...expected, image: join(folder, name) });
    }
    expect((await readdir(folder)).sort()).toEqual(['base-download', 'base.img', 'base.img.xz', 'base.zip']);
  });
});
