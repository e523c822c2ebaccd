/**
 * What an image file is, declared once: each container pibake reads (and, for xz and zstd,
 * writes) with its name, file-name extensions, program and magic bytes. The content decides what
 * a file is; its name only has to agree (see checkNameAgrees).
 */
import { open } from 'node:fs/promises';
import { PibakeError } from '../common/errors.ts';

/** The compressions pibake writes and reads. */
export type Compression = 'xz' | 'zstd';
/** What `pibake build --compress` writes beside a raw image, in the order build lists them. */
export const COMPRESSIONS = ['zstd', 'xz'] as const satisfies readonly Compression[];
/** Everything an image input can be. */
export type ImageFormat = Compression | 'zip' | 'raw';

export interface FormatEntry {
  format: ImageFormat;
  /** How messages name it ("m.img is not xz: it is a raw image"). */
  describe: string;
  /** File-name extensions that promise it, the usual one first (for "rename it to …"). */
  extensions: readonly string[];
  /** The program that reads it (and writes it, for a Compression). */
  tool?: string;
  /** Arguments that make `tool` decompress stdin to stdout (the compressions only). */
  unpackArgs?: readonly string[];
  /** Whether a file's first bytes (up to 512) are this format's. */
  matches: (header: Buffer) => boolean;
}

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const ZIP_MAGIC = Buffer.from('PK\x03\x04', 'latin1');

/** Order matters: the compressed formats are recognised before the raw disk's boot signature. */
export const FORMATS: readonly FormatEntry[] = [
  { format: 'xz', describe: 'xz', extensions: ['.img.xz', '.xz'], tool: 'xz', unpackArgs: ['-q', '-T0', '-dc'], matches: (h) => h.length >= 6 && h.subarray(0, 6).equals(XZ_MAGIC) },
  { format: 'zstd', describe: 'zstd', extensions: ['.img.zst', '.zst', '.zstd'], tool: 'zstd', unpackArgs: ['-q', '-dc'], matches: (h) => h.length >= 4 && h.readUInt32LE(0) === 0xfd2fb528 },
  { format: 'zip', describe: 'a zip archive', extensions: ['.zip'], tool: 'unzip', matches: (h) => h.length >= 4 && h.subarray(0, 4).equals(ZIP_MAGIC) },
  // MBR and GPT's protective MBR both end sector 0 with 0x55 0xAA.
  { format: 'raw', describe: 'a raw image', extensions: ['.img', '.raw'], matches: (h) => h.length >= 512 && h[510] === 0x55 && h[511] === 0xaa },
];

/** What every reader of images accepts, for hints. */
export const IMAGE_KINDS_HINT = 'give a Raspberry Pi OS .img, .img.xz, .img.zst or .zip';

export function formatEntry(format: ImageFormat): FormatEntry {
  return FORMATS.find((entry) => entry.format === format) as FormatEntry;
}

/** The program that reads and writes a compression. */
export function toolOf(compression: Compression): string {
  return formatEntry(compression).tool as string;
}

/** The usual file-name extension of a compressed image's compression (`.zst`, `.xz`). */
export function extensionOf(compression: Compression): string {
  return formatEntry(compression).extensions[1] as string;
}

/** Identify bytes by their magic (at least 6 bytes of header; 512 to recognise a raw disk image). */
export function sniffFormat(header: Buffer): ImageFormat | undefined {
  return FORMATS.find((entry) => entry.matches(header))?.format;
}

/** What a file name promises, by its last extension; undefined when the name promises nothing. */
export function formatByName(name: string): ImageFormat | undefined {
  const extension = /\.[a-z0-9]+$/i.exec(name)?.[0]?.toLowerCase();
  if (extension === undefined) return undefined;
  return FORMATS.find((entry) => entry.extensions.includes(extension))?.format;
}

/** Read up to `length` bytes from the start of a file. */
export async function readHeader(path: string, length = 512): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/**
 * The format of content named `label`, refusing content that is none of them and content that
 * does not match its name ("m.img.xz is not xz: it is a raw image"): that is a mix-up or a broken
 * download, and guessing would hide which. A name that promises nothing (no known extension) is
 * read by its content.
 */
export function checkFormat(label: string, header: Buffer): ImageFormat {
  const format = sniffFormat(header);
  const promised = formatByName(label);
  if (format === undefined) {
    throw new PibakeError(`${label} is not a disk image, .xz, .zst or .zip file`, { hint: IMAGE_KINDS_HINT });
  }
  if (promised === undefined || format === promised) return format;
  const stem = label.replace(/(\.img)?\.[a-z0-9]+$/i, '');
  throw new PibakeError(`${label} is not ${formatEntry(promised).describe}: it is ${formatEntry(format).describe}`, {
    hint: `if that is what you meant, rename it to ${stem}${formatEntry(format).extensions[0]}; otherwise download it again`,
  });
}
