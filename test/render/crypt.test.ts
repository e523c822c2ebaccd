import { describe, expect, it } from 'vitest';
import { runTool } from '../../builder/common/exec.ts';
import { hashPassword, randomSalt, sha512Crypt } from '../../builder/render/crypt.ts';

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
