/**
 * Block maps in bmaptool's XML format: which blocks of an image hold data, and a checksum per
 * range. The one reader (versions 1.0–1.4 and 2.0; flash writes only those blocks and verifies
 * them) and the one writer (2.0 with SHA-256, what `pibake package` and the build produce).
 *
 * Format facts: 1.0–1.2 have no checksums; 1.3 has SHA-1 in a `sha1` attribute and the file's own
 * checksum in <BmapFileSHA1>; 1.4 and 2.0 name the algorithm in <ChecksumType> and use `chksum`
 * and <BmapFileChecksum>. The file checksum is computed with its own value replaced by zeros.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { PibakeError } from '../common/errors.ts';

export type ChecksumType = 'sha256' | 'sha1';

export interface BmapRange {
  firstBlock: number;
  lastBlock: number;
  /** Byte offset of the first byte. */
  start: number;
  /** Byte offset after the last byte, clamped to the image size (the last block may be partial). */
  end: number;
  /** Lowercase hex checksum of bytes start..end of the image, when the bmap has one. */
  checksum?: string;
}

export interface Bmap {
  version: string;
  blockSize: number;
  imageSize: number;
  blocksCount: number;
  mappedBlocksCount: number;
  checksumType?: ChecksumType;
  /** The file's own checksum as stored (<BmapFileChecksum> or <BmapFileSHA1>), when it has one. */
  fileChecksum?: string;
  ranges: BmapRange[];
  /** Sum of the ranges' lengths in bytes. */
  mappedBytes: number;
}

/** A range as the writer knows it: blocks first..last (inclusive) and the checksum of their bytes. */
export function blockRange(firstBlock: number, lastBlock: number, blockSize: number, imageSize: number, checksum?: string): BmapRange {
  return { firstBlock, lastBlock, start: firstBlock * blockSize, end: Math.min((lastBlock + 1) * blockSize, imageSize), checksum };
}

export async function readBmap(path: string): Promise<Bmap> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new PibakeError(`cannot read bmap ${path}: ${(error as Error).message}`, {
      hint: 'pass an existing .bmap file with --bmap, or leave it out to write the whole image',
      cause: error,
    });
  }
  return parseBmap(text, path);
}

export function parseBmap(text: string, file = 'bmap'): Bmap {
  const bad = (what: string): PibakeError =>
    new PibakeError(`${file} is not a valid bmap: ${what}`, {
      hint: 'recreate it with `bmaptool create -o FILE.bmap FILE.img` or `pibake package`',
    });
  // Comments in bmaptool's output mention tag names, so they go before any tag is looked up.
  const body = text.replace(/<!--[\s\S]*?-->/g, '');
  const version = /<bmap\s+version\s*=\s*["']([0-9]+)\.([0-9]+)["']/.exec(body);
  if (!version) throw bad('no <bmap version="..."> element');
  const major = Number(version[1]);
  const minor = Number(version[2]);
  if (major > 2) throw bad(`format version ${major}.${minor} is newer than the supported 2.0`);

  const field = (tag: string, required = true): string | undefined => {
    const m = new RegExp(`<${tag}>\\s*([^<]*?)\\s*</${tag}>`).exec(body);
    if (!m && required) throw bad(`missing <${tag}>`);
    return m?.[1];
  };
  const integer = (tag: string): number => {
    const raw = field(tag) as string;
    if (!/^[0-9]+$/.test(raw)) throw bad(`<${tag}> is not a number: "${raw}"`);
    return Number(raw);
  };
  const blockSize = integer('BlockSize');
  const imageSize = integer('ImageSize');
  const blocksCount = integer('BlocksCount');
  const mappedBlocksCount = integer('MappedBlocksCount');
  if (blockSize <= 0) throw bad('<BlockSize> is zero');
  if (blocksCount !== Math.ceil(imageSize / blockSize)) {
    throw bad(`<BlocksCount> ${blocksCount} does not match <ImageSize> ${imageSize} / <BlockSize> ${blockSize}`);
  }

  let checksumType: ChecksumType | undefined;
  let attribute: string | undefined;
  let fileChecksumTag: string | undefined;
  if (major >= 2 || (major === 1 && minor >= 4)) {
    const type = field('ChecksumType')?.toLowerCase();
    if (type !== 'sha256' && type !== 'sha1') throw bad(`unsupported <ChecksumType> "${type}" (sha256 and sha1 are)`);
    checksumType = type;
    attribute = 'chksum';
    fileChecksumTag = 'BmapFileChecksum';
  } else if (major === 1 && minor === 3) {
    checksumType = 'sha1';
    attribute = 'sha1';
    fileChecksumTag = 'BmapFileSHA1';
  }

  const ranges: BmapRange[] = [];
  const rangeRe = /<Range\b([^>]*)>([^<]*)<\/Range>/g;
  for (let m = rangeRe.exec(body); m; m = rangeRe.exec(body)) {
    const [, attributes = '', text = ''] = m;
    const spec = /^\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?$/.exec(text);
    if (!spec) throw bad(`bad <Range> "${text.trim()}"`);
    const firstBlock = Number(spec[1]);
    const lastBlock = spec[2] === undefined ? firstBlock : Number(spec[2]);
    if (lastBlock < firstBlock) throw bad(`range ${firstBlock}-${lastBlock} ends before it starts`);
    if (lastBlock >= blocksCount) throw bad(`range ${firstBlock}-${lastBlock} lies beyond the image's ${blocksCount} blocks`);
    const previous = ranges[ranges.length - 1];
    if (previous && firstBlock <= previous.lastBlock) throw bad(`range ${firstBlock}-${lastBlock} overlaps or is out of order`);
    const checksum = attribute ? new RegExp(`\\b${attribute}\\s*=\\s*["']([0-9a-fA-F]+)["']`).exec(attributes)?.[1] : undefined;
    ranges.push(blockRange(firstBlock, lastBlock, blockSize, imageSize, checksum?.toLowerCase()));
  }
  if (!/<BlockMap>/.test(body)) throw bad('missing <BlockMap>');
  const mapped = ranges.reduce((sum, r) => sum + r.lastBlock - r.firstBlock + 1, 0);
  if (mapped !== mappedBlocksCount) throw bad(`<MappedBlocksCount> ${mappedBlocksCount} does not match its ranges (${mapped} blocks)`);

  let fileChecksum: string | undefined;
  if (checksumType && fileChecksumTag) {
    fileChecksum = field(fileChecksumTag, false);
    if (fileChecksum) verifyFileChecksum(text, fileChecksum, checksumType, file);
  }
  const mappedBytes = ranges.reduce((sum, r) => sum + (r.end - r.start), 0);
  return {
    version: `${major}.${minor}`, blockSize, imageSize, blocksCount, mappedBlocksCount, checksumType,
    ...(fileChecksum ? { fileChecksum: fileChecksum.toLowerCase() } : {}), ranges, mappedBytes,
  };
}

/** Same rule as bmaptool: hash the file with the stored checksum's first occurrence zeroed. */
function verifyFileChecksum(text: string, stored: string, type: ChecksumType, file: string): void {
  const at = text.indexOf(stored);
  const zeroed = text.slice(0, at) + '0'.repeat(stored.length) + text.slice(at + stored.length);
  const actual = createHash(type).update(zeroed, 'utf8').digest('hex');
  if (actual !== stored.toLowerCase()) {
    throw new PibakeError(`${file} is damaged: its own ${type} checksum does not match its content`, {
      hint: 'the bmap was edited or truncated; recreate it from the image',
    });
  }
}

const CHECKSUM_PLACEHOLDER = '0'.repeat(64);

/**
 * bmap 2.0 XML for a map whose ranges carry SHA-256 checksums. BmapFileChecksum is the SHA-256 of
 * the text with that value written as 64 zeros (bmaptool's rule, checked by the reader above).
 */
export function formatBmap(map: Pick<Bmap, 'imageSize' | 'blockSize' | 'blocksCount' | 'mappedBlocksCount' | 'ranges'>): string {
  const percent = map.blocksCount === 0 ? 0 : (100 * map.mappedBlocksCount) / map.blocksCount;
  const lines = [
    '<?xml version="1.0" ?>',
    '<!-- Block map of a disk image written by pibake: the blocks that hold data (partition table,',
    '     filesystem metadata, files). Only these need to be written to a card; `bmaptool copy`',
    '     reads this file. Format version 2.0, as defined by bmaptool. -->',
    '<bmap version="2.0">',
    `    <!-- Image size in bytes: ${map.imageSize} -->`,
    `    <ImageSize> ${map.imageSize} </ImageSize>`,
    `    <BlockSize> ${map.blockSize} </BlockSize>`,
    `    <BlocksCount> ${map.blocksCount} </BlocksCount>`,
    `    <!-- Mapped: ${percent.toFixed(1)}% of the blocks -->`,
    `    <MappedBlocksCount> ${map.mappedBlocksCount} </MappedBlocksCount>`,
    '    <ChecksumType> sha256 </ChecksumType>',
    '    <!-- SHA-256 of this file with the value below replaced by 64 zeros -->',
    `    <BmapFileChecksum> ${CHECKSUM_PLACEHOLDER} </BmapFileChecksum>`,
    '    <BlockMap>',
    ...map.ranges.map((r) => {
      const span = r.firstBlock === r.lastBlock ? `${r.firstBlock}` : `${r.firstBlock}-${r.lastBlock}`;
      return `        <Range${r.checksum ? ` chksum="${r.checksum}"` : ''}> ${span} </Range>`;
    }),
    '    </BlockMap>',
    '</bmap>',
    '',
  ];
  const draft = lines.join('\n');
  const checksum = createHash('sha256').update(draft).digest('hex');
  return draft.replace(`<BmapFileChecksum> ${CHECKSUM_PLACEHOLDER} </BmapFileChecksum>`, `<BmapFileChecksum> ${checksum} </BmapFileChecksum>`);
}
