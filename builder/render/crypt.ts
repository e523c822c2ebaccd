/**
 * Password hashes for images, never plaintext. yescrypt (`$y$`, what Raspberry Pi OS and Debian
 * use since 2021) comes from the system's libxcrypt through perl's crypt(3): no reimplementation of
 * a memory-hard hash here, and the password goes in on stdin, never on a command line. Where the
 * host's libc cannot make it, SHA-512 crypt (`$6$`, accepted by every release), written here from
 * the published algorithm description with node:crypto's SHA-512.
 */
import { createHash, randomBytes } from 'node:crypto';
import { runTool } from '../common/exec.ts';

const ALPHABET = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const ROUNDS_DEFAULT = 5000;

function sha512(...parts: Buffer[]): Buffer {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** `length` bytes made of `digest` repeated. */
function stretch(digest: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = digest[i % digest.length] as number;
  return out;
}

export function sha512Crypt(password: string, salt: string, rounds = ROUNDS_DEFAULT): string {
  const p = Buffer.from(password, 'utf8');
  const s = Buffer.from(salt.slice(0, 16), 'utf8');
  const b = sha512(p, s, p);
  const a = createHash('sha512').update(p).update(s).update(stretch(b, p.length));
  for (let n = p.length; n > 0; n >>= 1) a.update(n & 1 ? b : p);
  const aDigest = a.digest();
  const dp = createHash('sha512');
  for (let i = 0; i < p.length; i++) dp.update(p);
  const pBytes = stretch(dp.digest(), p.length);
  const ds = createHash('sha512');
  for (let i = 0; i < 16 + (aDigest[0] as number); i++) ds.update(s);
  const sBytes = stretch(ds.digest(), s.length);
  let c = aDigest;
  for (let i = 0; i < rounds; i++) {
    const h = createHash('sha512');
    h.update(i & 1 ? pBytes : c);
    if (i % 3) h.update(sBytes);
    if (i % 7) h.update(pBytes);
    h.update(i & 1 ? c : pBytes);
    c = h.digest();
  }
  let encoded = '';
  const put = (b2: number, b1: number, b0: number, chars: number) => {
    let w = (b2 << 16) | (b1 << 8) | b0;
    for (let k = 0; k < chars; k++) {
      encoded += ALPHABET[w & 0x3f];
      w >>= 6;
    }
  };
  // glibc's byte triples: (0,21,42), (22,43,1), (44,2,23), (3,24,45)... rotating the three columns.
  for (let i = 0; i < 21; i++) {
    const x = i, y = i + 21, z = i + 42;
    const triple = [[x, y, z], [y, z, x], [z, x, y]][i % 3] as number[];
    put(c[triple[0] as number] as number, c[triple[1] as number] as number, c[triple[2] as number] as number, 4);
  }
  put(0, 0, c[63] as number, 2);
  const roundsPart = rounds === ROUNDS_DEFAULT ? '' : `rounds=${rounds}$`;
  return `$6$${roundsPart}${salt.slice(0, 16)}$${encoded}`;
}

/** A fresh 16-character salt from the CSPRNG. */
export function randomSalt(): string {
  const bytes = randomBytes(16);
  return [...bytes].map((v) => ALPHABET[v & 0x3f]).join('');
}

export function hashPassword(password: string): string {
  return sha512Crypt(password, randomSalt());
}

/** Base-64 of crypt(3) salts and of yescrypt: 6 bits at a time, least significant first. */
function cryptBase64(bytes: Buffer): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const chunk = bytes.subarray(i, i + 3);
    let value = 0;
    chunk.forEach((b, k) => {
      value |= b << (8 * k);
    });
    for (let bits = 0; bits < chunk.length * 8; bits += 6) out += ALPHABET[(value >>> bits) & 0x3f];
  }
  return out;
}

/** yescrypt with libxcrypt's default cost (`j9T`: N = 4096, r = 32) and a 16-byte CSPRNG salt. */
const YESCRYPT_PARAMS = '$y$j9T$';

/** A `$y$` hash from the host's libxcrypt, or undefined when it cannot make one (then use hashPassword). */
export async function yescryptHash(password: string): Promise<string | undefined> {
  const setting = `${YESCRYPT_PARAMS}${cryptBase64(randomBytes(16))}`;
  const script = 'my $p = do { local $/; <STDIN> }; my $h = crypt($p, $ARGV[0]); print defined $h ? $h : ""';
  const result = await runTool('perl', ['-e', script, setting], { input: password, reject: false });
  const hash = String(result.stdout ?? '');
  return result.exitCode === 0 && hash.startsWith(`${setting}$`) && /^\$y\$[./0-9A-Za-z$]+$/.test(hash) ? hash : undefined;
}

/** The strongest hash the image's libxcrypt understands: yescrypt when `yescrypt`, else SHA-512 crypt. */
export async function hashForImage(password: string, yescrypt: boolean): Promise<string> {
  return (yescrypt ? await yescryptHash(password) : undefined) ?? hashPassword(password);
}

/**
 * Whether the base's libc can check yescrypt hashes: libxcrypt (Debian's libcrypt1, 4.3 and later,
 * in every Raspberry Pi OS since bullseye) can; glibc's own libcrypt (buster and older) cannot.
 */
export function baseSupportsYescrypt(installedPackages: ReadonlySet<string>): boolean {
  return installedPackages.has('libcrypt1');
}
