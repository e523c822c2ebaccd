/**
 * What pibake sees in a base image: partitions and filesystems, disk id, OS release and
 * generation, cloud-init and its NoCloud configuration, and which boot-partition files the
 * image's first boot will honour. Read-only. Takes any image build takes (raw, .xz, .zst, .zip;
 * one given by URL is downloaded and checked first, image/remote.ts).
 */
import { join } from 'node:path';
import { load } from 'js-yaml';
import { readHeader, sniffFormat } from '../bytes/formats.ts';
import { openImageFile, unpackImageFile } from '../bytes/open.ts';
import type { Generation } from '../common/base-image.ts';
import { formatBytes } from '../common/bytes.ts';
import type { Ext4Fs } from './ext4.ts';
import { openRaspiosImage } from './raspios.ts';
import { withStagingDir } from './staging.ts';

export interface PartitionReport {
  index: number;
  startSector: number;
  sizeSectors: number;
  startBytes: number;
  sizeBytes: number;
  type: string;
  bootable: boolean;
  filesystem: 'vfat' | 'ext4';
  label: string;
  /** Filesystem UUID as blkid prints it (FAT: volume serial XXXX-XXXX). */
  uuid: string;
  /** What `PARTUUID=` refers to: `<diskId>-0N` on MBR, the partition GUID on GPT. */
  partuuid?: string;
  freeBytes: number;
}

export interface BootFileReport {
  name: string;
  present: boolean;
  /** Whether this image's first boot acts on the file. */
  honoured: boolean;
  note: string;
}

export interface InspectReport {
  image: string;
  sizeBytes: number;
  scheme: 'mbr' | 'gpt';
  diskId: string;
  os: { prettyName: string; versionCodename: string; versionId: string; generation: Generation };
  partitions: PartitionReport[];
  cloudInit: {
    installed: boolean;
    version?: string;
    /** Config files read, in cloud-init's order (cloud.cfg, then cloud.cfg.d/*.cfg sorted). */
    configFiles: string[];
    datasourceList?: string[];
    noCloudSeedfrom?: string;
  };
  bootFiles: BootFileReport[];
  /** A pibake-built card: the role packages it carries (from its /etc/pibake/manifest.json). */
  carried?: { from: string; requested: string[]; debs: number; debBytes: number; installedBytes: number };
  /** A pibake-built card: its root filesystem before pibake (the base's) and now. */
  room?: { baseRootBytes: number; baseFreeBytes: number; grownBytes: number; rootBytes: number; freeBytes: number };
}

const SECTOR = 512;

/** The report of the image file at `path`; `label` names it in the report and in errors (default: the path). */
export async function inspectImage(path: string, label = path): Promise<InspectReport> {
  // What is no image at all (missing, empty, a folder, no partition table) openRaspiosImage names most precisely.
  const format = sniffFormat(await readHeader(path).catch(() => Buffer.alloc(0)));
  if (format === undefined) return inspectRaw(path, label);
  const file = await openImageFile(path, label);
  if (file.format === 'raw') return inspectRaw(path, label);
  // debugfs and mtools need random access: a packed image is unpacked (sparse, owner-only: it may
  // be a node's, with its secrets) into a private folder beside it, removed whatever happens.
  return withStagingDir(path, async (dir) => {
    const raw = join(dir, 'unpacked.img');
    await unpackImageFile(file, raw);
    return inspectRaw(raw, label);
  });
}

/** The report of a raw image at `path`, named `label` (in the report and in errors). */
async function inspectRaw(path: string, label = path): Promise<InspectReport> {
  const image = await openRaspiosImage(path, { label });
  const volume = await image.boot.volumeInfo();
  const sb = await image.root.superblock();
  const part = (p: typeof image.bootPartition) => ({
    index: p.index,
    startSector: p.startBytes / SECTOR,
    sizeSectors: p.sizeBytes / SECTOR,
    startBytes: p.startBytes,
    sizeBytes: p.sizeBytes,
    type: p.type,
    bootable: p.bootable,
    partuuid: p.uuid,
  });
  const partitions: PartitionReport[] = [
    { ...part(image.bootPartition), filesystem: 'vfat', label: volume.label, uuid: volume.serial, freeBytes: volume.freeBytes },
    { ...part(image.rootPartition), filesystem: 'ext4', label: sb.label, uuid: sb.uuid, freeBytes: sb.freeBlocks * sb.blockSize },
  ];

  const packages = await image.root.readDpkgStatus().catch(() => new Map<string, string>());
  const cloud = await readCloudConfig(image.root);
  const cloudVersion = packages.get('cloud-init');
  const present = new Set((await image.boot.list()).filter((e) => !e.dir).map((e) => e.name.toLowerCase()));
  const cmdline = (await image.boot.exists('cmdline.txt')) ? (await image.boot.readFile('cmdline.txt')).toString('utf8') : '';
  const built = await readBuildRecord(image.root);

  return {
    image: label,
    sizeBytes: image.layout.sizeBytes,
    scheme: image.layout.scheme,
    diskId: image.diskId,
    os: {
      prettyName: image.osRelease.PRETTY_NAME ?? '',
      versionCodename: image.osRelease.VERSION_CODENAME ?? '',
      versionId: image.osRelease.VERSION_ID ?? '',
      generation: image.generation,
    },
    partitions,
    cloudInit: {
      installed: cloudVersion !== undefined,
      ...(cloudVersion !== undefined ? { version: cloudVersion } : {}),
      ...cloud,
    },
    bootFiles: firstBootFiles(image.generation, cloudVersion !== undefined, cloud.noCloudSeedfrom, cmdline)
      .map((f) => ({ ...f, present: present.has(f.name) })),
    ...(built?.packages?.debs !== undefined ? { carried: built.packages as NonNullable<InspectReport['carried']> } : {}),
    ...(built?.room ? { room: { ...built.room, rootBytes: image.rootPartition.sizeBytes, freeBytes: sb.freeBlocks * sb.blockSize } } : {}),
  };
}

/** What pibake recorded in a card it built (/etc/pibake/manifest.json); nothing for a plain base. */
async function readBuildRecord(root: Ext4Fs): Promise<{ packages?: Partial<NonNullable<InspectReport['carried']>>; room?: Omit<NonNullable<InspectReport['room']>, 'rootBytes' | 'freeBytes'> } | undefined> {
  if (!(await root.exists('/etc/pibake/manifest.json'))) return undefined;
  try {
    return JSON.parse((await root.readFile('/etc/pibake/manifest.json')).toString('utf8')) as Awaited<ReturnType<typeof readBuildRecord>>;
  } catch {
    return undefined;
  }
}

/** cloud.cfg then cloud.cfg.d/*.cfg in order; later files override datasource_list and the NoCloud seed. */
type CloudConfig = Omit<InspectReport['cloudInit'], 'installed' | 'version'>;

async function readCloudConfig(root: Ext4Fs): Promise<CloudConfig> {
  const files: string[] = [];
  if (await root.exists('/etc/cloud/cloud.cfg')) files.push('/etc/cloud/cloud.cfg');
  const dropIns = (await root.list('/etc/cloud/cloud.cfg.d')) ?? [];
  files.push(...dropIns.filter((e) => e.kind === 'file' && e.name.endsWith('.cfg')).map((e) => `/etc/cloud/cloud.cfg.d/${e.name}`).sort());
  const result: CloudConfig = { configFiles: files };
  for (const file of files) {
    let doc: unknown;
    try {
      doc = load((await root.readFile(file)).toString('utf8'));
    } catch {
      continue; // cloud-init itself would skip a broken file with a warning
    }
    if (typeof doc !== 'object' || doc === null) continue;
    const cfg = doc as { datasource_list?: unknown; datasource?: { NoCloud?: { seedfrom?: unknown } } };
    if (Array.isArray(cfg.datasource_list)) result.datasourceList = cfg.datasource_list.map(String);
    const seed = cfg.datasource?.NoCloud?.seedfrom;
    if (typeof seed === 'string') result.noCloudSeedfrom = seed;
  }
  return result;
}

/**
 * The boot-partition files first boot may act on, per generation: ssh and userconf.txt on both,
 * custom.toml and firstrun.sh (when cmdline.txt runs it) on bookworm, and cloud-init's NoCloud
 * seeds wherever cloud-init is installed and reads them from the boot partition.
 */
export function firstBootFiles(generation: Generation, cloudInit: boolean, seedfrom: string | undefined, cmdline: string): Omit<BootFileReport, 'present'>[] {
  const bookworm = generation === 'bookworm';
  const seedOnBoot = cloudInit && (seedfrom === undefined || /^file:\/\/\/boot(\/firmware)?\/?$/.test(seedfrom));
  const firstrunWired = /systemd\.run=\/boot(\/firmware)?\/firstrun\.sh/.test(cmdline);
  const seed = (name: string) => ({
    name,
    honoured: seedOnBoot,
    note: seedOnBoot ? 'cloud-init NoCloud seed' : cloudInit ? 'cloud-init seeds from elsewhere' : 'no cloud-init installed',
  });
  return [
    { name: 'ssh', honoured: true, note: 'enables sshd' },
    { name: 'ssh.txt', honoured: true, note: 'enables sshd' },
    { name: 'userconf.txt', honoured: true, note: 'user:<crypt hash>' },
    { name: 'custom.toml', honoured: bookworm, note: bookworm ? 'applied by firstboot' : 'inert on trixie' },
    {
      name: 'firstrun.sh',
      honoured: bookworm && firstrunWired,
      note: bookworm ? (firstrunWired ? 'run via systemd.run in cmdline.txt' : 'needs systemd.run= in cmdline.txt') : 'not on trixie',
    },
    seed('user-data'),
    seed('meta-data'),
    seed('network-config'),
    { name: 'wpa_supplicant.conf', honoured: false, note: 'ignored (NetworkManager)' },
  ];
}

/** A compact human-readable rendering of the report. */
export function formatReport(r: InspectReport): string[] {
  const lines = [
    `image     ${r.image}  ${formatBytes(r.sizeBytes)}, ${r.scheme.toUpperCase()}, disk id ${r.diskId}`,
    `os        ${r.os.prettyName} -> generation ${r.os.generation}`,
    '',
  ];
  const rows = [['#', 'start', 'sectors', 'size', 'type', 'fs', 'label', 'uuid', 'partuuid', 'free'],
    ...r.partitions.map((p) => [String(p.index), String(p.startSector), String(p.sizeSectors), formatBytes(p.sizeBytes), p.type,
      p.filesystem, p.label, p.uuid, p.partuuid ?? '-', formatBytes(p.freeBytes)])];
  lines.push(...table(rows), '');
  const c = r.cloudInit;
  lines.push(c.installed
    ? `cloud-init ${c.version}; datasource_list [${(c.datasourceList ?? []).join(', ')}]; NoCloud seedfrom ${c.noCloudSeedfrom ?? '-'}`
    : 'cloud-init not installed');
  if (r.room) {
    const carried = r.carried ? `; carries ${r.carried.debs} .debs (${formatBytes(r.carried.debBytes)}, ${formatBytes(r.carried.installedBytes)} once installed) for ${r.carried.requested.join(' ')}` : '';
    lines.push(`root room ${formatBytes(r.room.baseFreeBytes)} free before pibake, ${formatBytes(r.room.freeBytes)} now (grown by ${formatBytes(r.room.grownBytes)})${carried}`);
  }
  lines.push('', 'first-boot files on the boot partition:');
  lines.push(...table([['file', 'present', 'honoured', 'note'],
    ...r.bootFiles.map((f) => [f.name, f.present ? 'yes' : 'no', f.honoured ? 'yes' : 'no', f.note])]).map((l) => `  ${l}`));
  return lines;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd());
}
