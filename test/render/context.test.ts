import { describe, expect, it } from 'vitest';
import { postgresqlVersion } from '../../builder/render/context.ts';

describe('postgresqlVersion', () => {
  it('takes the inventory first, then the base image, then the generation default', () => {
    expect(postgresqlVersion(16, 'trixie', new Set(['postgresql-15']))).toBe(16);
    expect(postgresqlVersion(undefined, 'trixie', new Set(['postgresql-15', 'postgresql-common']))).toBe(15);
    expect(postgresqlVersion(undefined, 'trixie', new Set(['openssh-server']))).toBe(17);
    expect(postgresqlVersion(undefined, 'bookworm', new Set())).toBe(15);
  });
});

describe('localeGenCommand', () => {
  it('enables and generates a locale the image may lack, and leaves C.UTF-8 alone', async () => {
    const { localeGenCommand } = await import('../../builder/render/seeds.ts');
    expect(localeGenCommand('C.UTF-8')).toBeUndefined();
    const command = localeGenCommand('de_DE.UTF-8');
    expect(command?.slice(0, 2)).toEqual(['sh', '-c']);
    expect(command?.[2]).toContain("grep -qx 'de_DE.UTF-8 UTF-8' /etc/locale.gen");
    expect(command?.[2]).toContain('locale-gen');
  });
});
