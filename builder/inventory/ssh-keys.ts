/**
 * admin.ssh_keys entries: a public key written out, or a path to a file of public keys. Reads
 * only the files the inventory names.
 */
import { homedir } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { PibakeError } from '../common/errors.ts';
import { READ_LIMITS, readInputFile } from '../common/read-input.ts';
import type { Issue } from './spec.ts';

const KEY_TYPES = [
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
];

/** `~` is the home folder; a relative path starts at the inventory file's folder. */
export function resolveUserPath(path: string, inventoryFile: string): string {
  if (path === '~') return homedir();
  if (path.startsWith('~/')) return resolve(homedir(), path.slice(2));
  return isAbsolute(path) ? path : resolve(dirname(inventoryFile), path);
}

export function looksLikeLiteralKey(entry: string): boolean {
  return /^(ssh-|ecdsa-|sk-)\S*\s/.test(entry.trim());
}

/**
 * The key normalised to one authorized_keys line, or an Issue saying what is wrong with it. The
 * Issue never quotes the text: a path mistyped for /etc/shadow or a secrets file must not end up
 * in a terminal or a CI log. It says what was found instead.
 */
export function parsePublicKey(line: string): string | Issue {
  const [type = '', blob = '', ...comment] = line.trim().split(/\s+/);
  if (!KEY_TYPES.includes(type)) {
    return { message: `not an SSH public key (${describeNonKey(type)})`, hint: `a public key starts with one of ${KEY_TYPES.join(', ')}` };
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) {
    return { message: `the ${type} key has a damaged base64 part`, hint: 'copy the whole line of the .pub file again' };
  }
  // The blob starts with its own type name (RFC 4253 string): catches truncated or mixed-up keys.
  const raw = Buffer.from(blob, 'base64');
  const length = raw.length >= 4 ? raw.readUInt32BE(0) : -1;
  if (length < 0 || raw.subarray(4, 4 + length).toString('latin1') !== type) {
    return { message: `the ${type} key is damaged (its data does not match its type)`, hint: 'copy the whole line of the .pub file again' };
  }
  return [type, blob, ...comment].join(' ');
}

/** What the first word of a non-key line looks like, without showing it. */
function describeNonKey(word: string): string {
  if (word === '') return 'an empty line';
  if (/^(ssh|ecdsa|sk)-/.test(word)) return 'an unknown key type';
  return 'no key type';
}

/** Keys of one ssh_keys entry (a file may hold several, one per line). */
export async function readSshKeyEntry(entry: string, inventoryFile: string): Promise<string[] | Issue> {
  if (looksLikeLiteralKey(entry)) {
    const key = parsePublicKey(entry);
    return typeof key === 'string' ? [key] : key;
  }
  const path = resolveUserPath(entry, inventoryFile);
  let bytes: Buffer;
  try {
    bytes = await readInputFile(path, 'SSH key file', READ_LIMITS.sshKeys);
  } catch (error) {
    if (error instanceof PibakeError) return { message: error.message, hint: error.hint };
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      return {
        message: `SSH key file ${path} does not exist`,
        hint: 'create one with `ssh-keygen -t ed25519`, fix the path, write the key itself here, or set generate_ssh_key: true',
      };
    }
    return { message: `cannot read SSH key file ${path}: ${code ?? String(error)}`, hint: 'name a readable .pub file' };
  }
  const text = bytes.toString('utf8');
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    return {
      message: `${path} is a private key`,
      hint: `name the public half (${path.endsWith('.pub') ? 'the matching .pub file' : `${path}.pub`}); a private key must never go into an image`,
    };
  }
  if (bytes.includes(0)) return { message: `${path} is not a public key file: it holds binary data`, hint: 'name a .pub file' };
  const keys: string[] = [];
  const lines = text.split(/\r?\n/);
  for (const [index, line] of lines.entries()) {
    if (!line.trim() || line.trim().startsWith('#')) continue;
    const key = parsePublicKey(line);
    if (typeof key !== 'string') return { message: `${path} is not a public key file: line ${index + 1}: ${key.message}`, hint: key.hint };
    keys.push(key);
  }
  if (keys.length === 0) return { message: `SSH key file ${path} is empty`, hint: 'name a .pub file that holds a key' };
  return keys;
}
