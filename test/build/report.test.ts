import { describe, expect, it } from 'vitest';
import { jsonReporter, lineReporter } from '../../builder/build/report.ts';

describe('lineReporter', () => {
  it('prints a line when a node enters a stage, not one per progress tick, and the plan with its reasons', () => {
    const lines: string[] = [];
    const reporter = lineReporter((l) => lines.push(l));
    reporter.event({ type: 'plan', node: 'lb1', action: 'bake', reasons: ['changed root:/etc/haproxy/haproxy.cfg'] });
    reporter.event({ type: 'plan', node: 'web1', action: 'keep', reasons: [] });
    for (const bytes of [1, 2, 3]) reporter.event({ type: 'stage', node: 'lb1', stage: 'checksum', bytes, total: 3 });
    reporter.event({ type: 'done', node: 'lb1', seconds: 1.25, file: 'output/c/lb1.img' });
    expect(lines).toEqual([
      'lb1: baking — changed root:/etc/haproxy/haproxy.cfg\n',
      'web1: up to date\n',
      'lb1: checksum\n',
      'lb1: output/c/lb1.img ready in 1.3 s\n',
    ]);
  });
});

describe('jsonReporter', () => {
  it('writes one JSON object per line', () => {
    const lines: string[] = [];
    jsonReporter((l) => lines.push(l)).event({ type: 'summary', baked: 1, kept: 3, seconds: 2, out: 'o' });
    expect(lines.map((l) => JSON.parse(l))).toEqual([{ type: 'summary', baked: 1, kept: 3, seconds: 2, out: 'o' }]);
  });
});
