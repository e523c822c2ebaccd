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
