import { describe, expect, it } from 'vitest';
import { runTool } from '../../builder/common/exec.ts';
import { baseSupportsYescrypt, hashForImage, hashPassword, randomSalt, sha512Crypt, yescryptHash } from '../../builder/render/crypt.ts';

async function opensslCrypt(password: string, salt: string): Promise<string> {
  const { stdout } = await runTool('openssl', ['passwd', '-6', '-salt', salt, '-stdin'], { input: password });
  return stdout.trim();
}

describe('sha512Crypt', () => {
  it.each([
    ['hello world', 'saltsalt'],
    ['x', 'a'],
    ['correct horse battery staple, with ünïcödé', 'Zz0123456789abcd'],
    ['a'.repeat(200), './09AZaz'],
  ])('matches openssl passwd -6 for %j', async (password, salt) => {
    expect(sha512Crypt(password, salt)).toBe(await opensslCrypt(password, salt));
  });

  it('makes fresh $6$ hashes with 16-character random salts that openssl reproduces', async () => {
    const hash = hashPassword('s3cret-pass');
    const [, scheme, salt] = hash.split('$');
    expect(scheme).toBe('6');
    expect(salt).toMatch(/^[./0-9A-Za-z]{16}$/);
    expect(await opensslCrypt('s3cret-pass', salt as string)).toBe(hash);
    expect(randomSalt()).not.toBe(randomSalt());
  });
});

describe('yescrypt from the system libxcrypt', () => {
  /** libxcrypt's verdict through another program (Python's crypt module): does `password` match `hash`? */
  async function libxcryptAccepts(password: string, hash: string): Promise<boolean> {
    const script = 'import crypt, sys; h = sys.argv[1]; print(crypt.crypt(sys.stdin.read(), h) == h)';
    const { stdout } = await runTool('/usr/bin/python3', ['-W', 'ignore', '-c', script, hash], { input: password });
    return stdout.trim() === 'True';
  }

  it('makes $y$ hashes with fresh salts that libxcrypt verifies, and rejects the wrong password', async () => {
    const hash = await yescryptHash('correct horse battery staple');
    expect(hash).toMatch(/^\$y\$j9T\$[./0-9A-Za-z]{22}\$[./0-9A-Za-z]{43}$/);
    expect(await libxcryptAccepts('correct horse battery staple', hash as string)).toBe(true);
    expect(await libxcryptAccepts('correct horse battery stapl', hash as string)).toBe(false);
    expect(await yescryptHash('correct horse battery staple')).not.toBe(hash);
  });

  it('hashForImage: yescrypt where the base supports it, SHA-512 crypt otherwise', async () => {
    expect(await hashForImage('pw-1234567890', true)).toMatch(/^\$y\$/);
    expect(await hashForImage('pw-1234567890', false)).toMatch(/^\$6\$/);
    expect(baseSupportsYescrypt(new Set(['libc6', 'libcrypt1']))).toBe(true);
    expect(baseSupportsYescrypt(new Set(['libc6']))).toBe(false);
  });
});
