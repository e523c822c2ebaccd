/**
 * Ed25519 SSH keys from node:crypto, encoded in OpenSSH's own formats: the `ssh-ed25519 AAAA… comment`
 * public line and the unencrypted `openssh-key-v1` private key (PROTOCOL.key in OpenSSH).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { PibakeError } from '../common/errors.ts';

export interface SshKeyPair {
  /** OpenSSH private key file content (PEM-armoured openssh-key-v1), ends with a newline. */
  privateKey: string;
  /** One authorized_keys / known_hosts line without a trailing newline: `ssh-ed25519 AAAA… comment`. */
  publicKey: string;
}

const KEY_TYPE = 'ssh-ed25519';

function sshString(data: Buffer | string): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export function publicKeyBlob(publicRaw: Buffer): Buffer {
  return Buffer.concat([sshString(KEY_TYPE), sshString(publicRaw)]);
}

export function generateEd25519(comment: string): SshKeyPair {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  if (!jwk.d || !jwk.x) throw new Error('ed25519 key without raw parts');
  return encodeEd25519(Buffer.from(jwk.d, 'base64url'), Buffer.from(jwk.x, 'base64url'), comment);
}

/** Encode a 32-byte seed and 32-byte public key as an OpenSSH key pair. */
export function encodeEd25519(seed: Buffer, publicRaw: Buffer, comment: string): SshKeyPair {
  const blob = publicKeyBlob(publicRaw);
  const check = randomBytes(4).readUInt32BE();
  let secret = Buffer.concat([
    uint32(check), uint32(check),
    sshString(KEY_TYPE), sshString(publicRaw), sshString(Buffer.concat([seed, publicRaw])), sshString(comment),
  ]);
  const pad: number[] = [];
  for (let i = 1; (secret.length + pad.length) % 8 !== 0; i++) pad.push(i);
  secret = Buffer.concat([secret, Buffer.from(pad)]);
  const body = Buffer.concat([
    Buffer.from('openssh-key-v1\0', 'latin1'),
    sshString('none'), sshString('none'), sshString(Buffer.alloc(0)),
    uint32(1), sshString(blob), sshString(secret),
  ]);
  const b64 = body.toString('base64').replace(/.{1,70}/g, '$&\n');
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `${KEY_TYPE} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`,
  };
}

/** The public line belonging to an OpenSSH ed25519 private key (checks a stored key is intact). */
export function publicFromPrivate(privateKey: string, comment: string): string {
  const b64 = privateKey.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const body = Buffer.from(b64, 'base64');
  const magic = 'openssh-key-v1\0';
  if (body.subarray(0, magic.length).toString('latin1') !== magic) {
    throw new PibakeError('stored SSH private key is not in OpenSSH format');
  }
  let off = magic.length;
  const read = (): Buffer => {
    const len = body.readUInt32BE(off);
    const out = body.subarray(off + 4, off + 4 + len);
    off += 4 + len;
    return out;
  };
  read(); read(); read(); // cipher, kdf, kdf options
  off += 4; // number of keys
  const blob = read();
  return `${KEY_TYPE} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}
