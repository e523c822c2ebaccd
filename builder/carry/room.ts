/**
 * Room for what a card carries. Pure: how many bytes the root filesystem must have free before
 * the carried files go in, given whether the card grows its root partition at its first boot
 * (Raspberry Pi OS does, before any service runs) or must also hold the installed packages as is.
 */

const MiB = 1024 * 1024;
/** pibake's own files, the journal and cloud-init's first writes, dpkg's database growing. */
const MARGIN = 32 * MiB;
/**
 * Without a first-boot resize, what the first boot itself writes besides the packages' files:
 * byte-compiled Python, generated locales and certificates, the role's data (PostgreSQL's initdb
 * alone writes about 40 MB, then WAL in 16 MB segments), the journal. Measured: bookworm's web
 * node ran out with 10 % over Installed-Size and 32 MiB.
 */
const FIRST_BOOT_DATA = 256 * MiB;

/**
 * Without a first-boot resize and nothing carried (--packages online): apt's package lists and
 * their cache (about 150 MB for Debian's main), the role's packages and what first boot writes.
 */
const ONLINE_FIRST_BOOT = 1024 * MiB;

export interface RoomInput {
  /** Sizes of the files to be written. */
  files: number[];
  /** What the packages take once installed (Installed-Size); undefined when first boot fetches them. */
  installedBytes?: number;
  /** Whether the card's first boot grows the root partition before pibake-firstboot runs. */
  resizesAtFirstBoot: boolean;
  blockSize: number;
}

/** Bytes that must be free in the root filesystem before writing. */
export function roomNeeded(input: RoomInput): number {
  const blocks = (bytes: number) => Math.ceil(bytes / input.blockSize) * input.blockSize;
  const written = input.files.reduce((sum, size) => sum + blocks(size), 0);
  // Without a first-boot resize, the .debs, what they unpack to and what the role then writes
  // must fit side by side.
  const install = input.resizesAtFirstBoot ? 0
    : input.installedBytes === undefined ? ONLINE_FIRST_BOOT
      : Math.ceil((input.installedBytes * 5) / 4) + FIRST_BOOT_DATA;
  return written + install + MARGIN;
}

/**
 * Whether first boot grows the root partition to the card: Raspberry Pi OS trixie's initramfs
 * does when cmdline.txt says ` resize`; bookworm's `init=/usr/lib/raspberrypi-sys-mods/firstboot`
 * does. Images without either (such as the Debian test base) keep the size they were given.
 */
export function resizesAtFirstBoot(cmdline: string): boolean {
  const words = cmdline.trim().split(/\s+/);
  return words.includes('resize') || words.includes('init=/usr/lib/raspberrypi-sys-mods/firstboot');
}
