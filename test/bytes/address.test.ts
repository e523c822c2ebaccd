import { describe, expect, it } from 'vitest';
import { imageAddressIssue, isAddress, sha256Issue } from '../../builder/bytes/address.ts';

describe('image addresses and digests', () => {
  it('takes anything with a scheme as an address, and a path (even one holding "https:/") as none', () => {
    expect(isAddress('https://h/x.img')).toBe(true);
    expect(isAddress('FTP://h/x.img')).toBe(true);
    expect(isAddress('output/demo/web1.img.xz')).toBe(false);
    expect(isAddress('/tmp/https:/x.img')).toBe(false);
  });

  it('accepts only https addresses that parse, naming the value as the caller does', () => {
    expect(imageAddressIssue('https://downloads.raspberrypi.com/a/b.img.xz', 'base.url')).toBeUndefined();
    expect(imageAddressIssue('http://h/x.img', '--base')?.message).toBe('--base "http://h/x.img" is not an https URL');
    expect(imageAddressIssue('https://h/a b.img', 'image')?.message).toBe('image "https://h/a b.img" contains spaces');
    expect(imageAddressIssue('https://[x/y.img', 'image')?.message).toBe('image "https://[x/y.img" is not a URL');
  });

  it('accepts a SHA-256 as sha256sum prints it, in either case and with surrounding blanks, and nothing else', () => {
    expect(sha256Issue(` ${'AB'.repeat(32)} `, '--sha256')).toBeUndefined();
    expect(sha256Issue('ab'.repeat(31), '--sha256')?.message).toBe(`--sha256 "${'ab'.repeat(31)}" is not a SHA-256`);
    expect(sha256Issue(`${'ab'.repeat(31)}zz`, 'base.sha256')?.hint).toMatch(/64 hex digits/);
  });
});
