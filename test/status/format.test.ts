/** The text view: one line per node, aligned; colour only when asked; nothing cut on a narrow terminal. */
import { describe, expect, it } from 'vitest';
import { formatReport, formatUptime } from '../../builder/status/format.ts';
import { haLayout, nodeOf, reportOf, todaysLayout, unreachable } from './fixture.ts';

const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, ''); // eslint-disable-line no-control-regex

describe('formatReport', () => {
  it('today\'s layout with a node down: header, a line per node in columns, the verdict with its findings', () => {
    const layout = todaysLayout();
    unreachable(nodeOf(layout, 'web3'));
    const lines = formatReport(reportOf(layout), { color: false });
    expect(lines).toEqual([
      'pistack  DEGRADED  4 nodes checked in 2.5 s, 2026-11-29 12:00:00Z',
      'NODE  ROLE     UP     CARD     BOOT  SERVICES    DETAILS',
      'lb1   lb       3h 5m  current  done  1/1 active  web 3/3; postgresql-write 1/1; postgresql-read 3/3',
      'web1  primary  3h 5m  current  done  3/3 active  primary, timeline 1, standbys web2 web3',
      'web2  replica  3h 5m  current  done  3/3 active  standby of web1, timeline 1, streaming, lag 0 B / 0.0 s',
      'web3  replica  down   -        -     -           no answer within 5 s',
      '',
      'degraded: 1 finding (exit 1)',
      '  web3 is unreachable: no answer within 5 s',
    ]);
  });

  it('HA: standbys kept out of a port by their role are named by role, not as faults; the address holder is named', () => {
    const lines = formatReport(reportOf(haLayout()), { color: false });
    expect(lines[2]).toBe('lb1   lb    3h 5m  current  done  2/2 active  web 3/3; postgresql-write 1/3 (web2 replica, web3 replica); postgresql-read 2/3 (web1 primary); holds 10.0.0.9');
    expect(lines[4]).toBe('web1  db    3h 5m  current  done  4/4 active  primary, timeline 3, standbys web2 web3; Patroni running (primary); etcd healthy');
    expect(lines[lines.length - 1]).toBe('healthy: every node answers, runs its card and its services (exit 0)');
  });

  it('on a narrow terminal the details continue under their column; no line is wider than the terminal', () => {
    const lines = formatReport(reportOf(haLayout()), { color: true, width: 80 });
    for (const line of lines) expect(plain(line).length).toBeLessThanOrEqual(80);
    const lb1 = lines.findIndex((l) => plain(l).startsWith('lb1 '));
    expect(plain(lines[lb1 + 1] ?? '')).toMatch(/^ {46}postgresql-write 1\/3 \(web2 replic…$/);
    expect(plain(lines[lb1 + 3] ?? '')).toBe(`${' '.repeat(46)}holds 10.0.0.9`);
  });

  it('colours words only when asked; the down findings come first, marked DOWN', () => {
    const layout = todaysLayout();
    unreachable(nodeOf(layout, 'lb1'));
    const coloured = formatReport(reportOf(layout), { color: true });
    expect(coloured.join('\n')).toContain('\x1b[31mDOWN\x1b[0m');
    expect(coloured.map(plain)).toEqual(formatReport(reportOf(layout), { color: false }));
    const text = formatReport(reportOf(layout), { color: false, footer: 'next check in 3 s; Ctrl-C ends' });
    expect(text.slice(-4)).toEqual([
      'down: 2 findings (exit 2)', '  DOWN no load balancer answers (lb1)', '  lb1 is unreachable: no answer within 5 s', 'next check in 3 s; Ctrl-C ends',
    ]);
  });
});

describe('formatUptime', () => {
  it('two units at most', () => {
    expect([42, 125, 3 * 3600 + 59, 26 * 3600].map(formatUptime)).toEqual(['42s', '2m', '3h 0m', '1d 2h']);
  });
});
