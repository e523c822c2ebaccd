/**
 * Block maps in bmaptool's format 2.0: which 4 KiB blocks of an image hold data, with a SHA-256
 * per range, so `bmaptool copy` (or our flasher) writes a 3 GB image with 1 GB of data in a third
 * of the time and verifies what it wrote.
 *
 * How mapped blocks are found: by reading the image and treating all-zero 4 KiB blocks as unmapped,
 * rather than asking the filesystem for its extents (FIEMAP via `filefrag -v`, or SEEK_DATA, which
 * bmaptool uses). Why: every range's SHA-256 needs the mapped bytes read anyway, and reading a hole
 * costs the kernel only a memset (measured in `npm run bench`); scanning works on any filesystem
 * (tmpfs has no FIEMAP) and gives the same map for the same bytes however the file was written
 * (dense or sparse), which keeps packaging reproducible. Our images are written sparse (intake,
 * cloneImage), so their holes and their zero blocks coincide and `bmaptool create` finds the same
 * ranges. Consequence a flasher must know: unmapped blocks are zero in the image but are not written
 * to the card, exactly as with bmaptool.
 */
import { createHash } from 'node:crypto';
import { open, rename, rm, writeFile } from 'node:fs/promises';
import { PibakeError } from '../common/errors.ts';
import { siblingTempPath } from './temp-name.ts';

export const BMAP_BLOCK_SIZE = 4096;
const READ_SIZE = 4 << 20; // a multiple of the block size
const ZEROS = Buffer.alloc(READ_SIZE);
const CHECKSUM_PLACEHOLDER = '0'.repeat(64);

/** Blocks first..last (inclusive, in BlockSize units), with the SHA-256 of their bytes. */
export interface BmapRange {
  first: number;
  last: number;
  sha256?: string;
}

export interface Bmap {
  version: string;
  imageSize: number;
  blockSize: number;
  blocksCount: number;
  mappedBlocksCount: number;
  checksumType: string;
  fileChecksum?: string;
  ranges: BmapRange[];
}

/** Scan an image and return its block map as bmap 2.0 XML text. */
export async function createBmap(imagePath: string): Promise<string> {
  return formatBmap(await mapImage(imagePath));
}

/** Write `<image>.bmap` (or `bmapPath`) atomically; returns its path. */
export async function writeBmapFile(imagePath: string, bmapPath = `${imagePath}.bmap`): Promise<string> {
  const text = await createBmap(imagePath);
  const temp = siblingTempPath(bmapPath);
  try {
    await writeFile(temp, text);
    await rename(temp, bmapPath);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  return bmapPath;
}

/** The mapped (non-zero) ranges of an image and their checksums. */
export async function mapImage(imagePath: string): Promise<Bmap> {
  const handle = await open(imagePath, 'r');
  try {
    const imageSize = (await handle.stat()).size;
    const ranges: BmapRange[] = [];
    const buffer = Buffer.allocUnsafe(READ_SIZE);
    let current: { first: number; last: number; hash: ReturnType<typeof createHash> } | undefined;
    const close = (): void => {
      if (current) ranges.push({ first: current.first, last: current.last, sha256: current.hash.digest('hex') });
      current = undefined;
    };
    for (let offset = 0; offset < imageSize; offset += READ_SIZE) {
      const length = Math.min(READ_SIZE, imageSize - offset);
      await readFully(handle, buffer, length, offset);
      if (buffer.subarray(0, length).equals(ZEROS.subarray(0, length))) {
        close();
        continue;
      }
      // Walk the blocks; each run of data blocks is hashed with one update. A run touching the
      // chunk's end stays open, to continue the range in the next chunk.
      let runStart = -1;
      for (let at = 0; ; at += BMAP_BLOCK_SIZE) {
        const atEnd = at >= length;
        const end = Math.min(at + BMAP_BLOCK_SIZE, length);
        const zero = atEnd || buffer.subarray(at, end).equals(ZEROS.subarray(0, end - at));
        if (!zero && runStart < 0) runStart = at;
        if (zero && runStart >= 0) {
          const first = (offset + runStart) / BMAP_BLOCK_SIZE;
          const last = Math.ceil((offset + Math.min(at, length)) / BMAP_BLOCK_SIZE) - 1;
          if (!current || current.last !== first - 1) {
            close();
            current = { first, last, hash: createHash('sha256') };
          }
          current.last = last;
          current.hash.update(buffer.subarray(runStart, Math.min(at, length)));
          runStart = -1;
        }
        if (atEnd) break;
        if (zero) close();
      }
    }
    close();
    const blocksCount = Math.ceil(imageSize / BMAP_BLOCK_SIZE);
    const mappedBlocksCount = ranges.reduce((sum, r) => sum + r.last - r.first + 1, 0);
    return { version: '2.0', imageSize, blockSize: BMAP_BLOCK_SIZE, blocksCount, mappedBlocksCount, checksumType: 'sha256', ranges };
  } finally {
    await handle.close();
  }
}

async function readFully(handle: Awaited<ReturnType<typeof open>>, buffer: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new PibakeError(`image shrank while being read at byte ${position + done}`, { hint: 'do not modify the image while packaging it' });
    done += bytesRead;
  }
}

/** bmap 2.0 XML for a map; BmapFileChecksum is the SHA-256 of the text with that value as 64 zeros. */
export function formatBmap(map: Bmap): string {
  const percent = map.blocksCount === 0 ? 0 : (100 * map.mappedBlocksCount) / map.blocksCount;
  const lines = [
    '<?xml version="1.0" ?>',
    '<!-- Block map of a disk image written by pibake: the blocks that hold data (partition table,',
    '     filesystem metadata, files). Only these need to be written to a card; `bmaptool copy`',
    '     reads this file. Format version 2.0, as defined by bmaptool. -->',
    `<bmap version="${map.version}">`,
    `    <!-- Image size in bytes: ${map.imageSize} -->`,
    `    <ImageSize> ${map.imageSize} </ImageSize>`,
    '    <BlockSize> ' + map.blockSize + ' </BlockSize>',
    `    <BlocksCount> ${map.blocksCount} </BlocksCount>`,
    `    <!-- Mapped: ${percent.toFixed(1)}% of the blocks -->`,
    `    <MappedBlocksCount> ${map.mappedBlocksCount} </MappedBlocksCount>`,
    `    <ChecksumType> ${map.checksumType} </ChecksumType>`,
    `    <!-- SHA-256 of this file with the value below replaced by 64 zeros -->`,
    `    <BmapFileChecksum> ${CHECKSUM_PLACEHOLDER} </BmapFileChecksum>`,
    '    <BlockMap>',
    ...map.ranges.map((r) => {
      const span = r.first === r.last ? `${r.first}` : `${r.first}-${r.last}`;
      return `        <Range${r.sha256 ? ` chksum="${r.sha256}"` : ''}> ${span} </Range>`;
    }),
    '    </BlockMap>',
    '</bmap>',
    '',
  ];
  const draft = lines.join('\n');
  const checksum = createHash('sha256').update(draft).digest('hex');
  return draft.replace(`<BmapFileChecksum> ${CHECKSUM_PLACEHOLDER} </BmapFileChecksum>`, `<BmapFileChecksum> ${checksum} </BmapFileChecksum>`);
}

/**
 * Parse a bmap file (format 1.4 / 2.x as bmaptool writes them) into typed ranges. Checks the
 * file checksum when present; a malformed or tampered file is a PibakeError.
 */
export function parseBmap(xml: string, source = 'bmap file'): Bmap {
  const fail = (what: string): never => {
    throw new PibakeError(`${source} is not a valid bmap file: ${what}`, { hint: 'create it again with pibake or bmaptool create' });
  };
  const version = /<bmap\s+version\s*=\s*"([0-9]+\.[0-9]+)"/.exec(xml)?.[1] ?? fail('no <bmap version="…">');
  const [major, minor] = version.split('.').map(Number) as [number, number];
  if (!(major === 2 || (major === 1 && minor === 4))) fail(`format version ${version} is not supported (need 2.x)`);
  const field = (name: string): string => {
    const match = new RegExp(`<${name}>\\s*([^<]*?)\\s*</${name}>`).exec(xml);
    return match?.[1] ?? fail(`no <${name}>`);
  };
  const integer = (name: string): number => {
    const text = field(name);
    if (!/^\d+$/.test(text)) fail(`<${name}> is not a number`);
    return Number(text);
  };
  const imageSize = integer('ImageSize');
  const blockSize = integer('BlockSize');
  const blocksCount = integer('BlocksCount');
  const mappedBlocksCount = integer('MappedBlocksCount');
  const checksumType = field('ChecksumType');
  const fileChecksum = /<BmapFileChecksum>/.test(xml) ? field('BmapFileChecksum') : undefined;
  if (blockSize === 0 || blocksCount !== Math.ceil(imageSize / blockSize)) fail('BlocksCount does not match ImageSize / BlockSize');

  if (fileChecksum !== undefined) {
    if (checksumType !== 'sha256') fail(`checksum type ${checksumType} is not supported`);
    const at = xml.indexOf(fileChecksum);
    const zeroed = xml.slice(0, at) + '0'.repeat(fileChecksum.length) + xml.slice(at + fileChecksum.length);
    if (createHash('sha256').update(zeroed).digest('hex') !== fileChecksum) fail('its BmapFileChecksum does not match (damaged or edited)');
  }

  const blockMap = /<BlockMap>([\s\S]*?)<\/BlockMap>/.exec(xml)?.[1] ?? fail('no <BlockMap>');
  const ranges: BmapRange[] = [];
  const rangePattern = /<Range(?:\s+chksum\s*=\s*"([0-9a-fA-F]+)")?\s*>\s*(\d+)(?:\s*-\s*(\d+))?\s*<\/Range>/g;
  let mapped = 0;
  for (const match of blockMap.matchAll(rangePattern)) {
    const first = Number(match[2]);
    const last = match[3] === undefined ? first : Number(match[3]);
    if (last < first || last >= blocksCount) fail(`range ${first}-${last} lies outside the image`);
    const previous = ranges[ranges.length - 1];
    if (previous && first <= previous.last) fail(`range ${first}-${last} overlaps or is out of order`);
    ranges.push({ first, last, ...(match[1] ? { sha256: match[1].toLowerCase() } : {}) });
    mapped += last - first + 1;
  }
  if (mapped !== mappedBlocksCount) fail(`MappedBlocksCount ${mappedBlocksCount} does not match its ranges (${mapped})`);
  return { version, imageSize, blockSize, blocksCount, mappedBlocksCount, checksumType, ...(fileChecksum ? { fileChecksum } : {}), ranges };
}
