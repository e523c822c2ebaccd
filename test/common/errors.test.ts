import { describe, expect, it } from 'vitest';
import { PibakeError, formatError } from '../../builder/common/errors.ts';

describe('formatError', () => {
  it('prints one line per problem with location and hint', () => {
    const error = PibakeError.fromProblems('inventory is invalid', [
      { message: 'unknown key "nodez"', hint: 'did you mean "nodes"?', location: { file: 'cluster.yaml', line: 3, column: 1 } },
      { message: 'duplicate node name "web1"', location: { file: 'cluster.yaml', line: 9 } },
    ]);
    expect(formatError(error)).toEqual([
      'error: cluster.yaml:3:1: unknown key "nodez" (hint: did you mean "nodes"?)',
      'error: cluster.yaml:9: duplicate node name "web1"',
    ]);
  });

  it('marks unexpected errors as bugs without a stack trace', () => {
    const [line] = formatError(new TypeError('x is undefined\n    at foo (bar.ts:1:1)'));
    expect(line).toMatch(/^error: x is undefined \(this is a bug/);
    expect(line).not.toContain('bar.ts');
  });
});
