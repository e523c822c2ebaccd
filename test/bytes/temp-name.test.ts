import { describe, expect, it } from 'vitest';
import { isPartial, isPartialOf, siblingTempPath } from '../../builder/bytes/temp-name.ts';

describe('temp names', () => {
  it('are hidden siblings marked .partial, recognisable per process', () => {
    const temp = siblingTempPath('/out/pistack/lb1.img');
    const name = temp.slice('/out/pistack/'.length);
    expect(temp.startsWith('/out/pistack/.lb1.img.')).toBe(true);
    expect(isPartial(name)).toBe(true);
    expect(isPartialOf(name, process.pid)).toBe(true);
    expect(isPartialOf(name, process.pid + 1)).toBe(false);
    expect(isPartial('lb1.img')).toBe(false);
    expect(siblingTempPath('/out/x')).not.toBe(siblingTempPath('/out/x'));
  });
});
