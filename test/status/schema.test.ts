/**
 * schema/status.schema.json, the published contract of `pibake status --json`: it is a valid
 * JSON Schema, every report shape the code makes validates (both layouts, nodes unreachable,
 * every optional field set), and it refuses what the code never makes. The cluster test
 * validates the real reports of every scenario too.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import type { StatusReport } from '../../builder/status/types.ts';
import { haLayout, nodeOf, reportOf, todaysLayout, unreachable } from './fixture.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const schema = JSON.parse(readFileSync(path.join(repo, 'schema/status.schema.json'), 'utf8')) as object;
const validate = new Ajv2020({ strict: true, allErrors: true }).addFormat('date-time', true).compile(schema);
const check = (report: unknown) => (validate(report) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`));
const clone = (report: StatusReport) => JSON.parse(JSON.stringify(report)) as StatusReport;

describe('schema/status.schema.json', () => {
  it('accepts reports of both layouts, healthy and not', () => {
    const down = todaysLayout();
    unreachable(nodeOf(down, 'lb1'));
    const ha = haLayout();
    unreachable(nodeOf(ha, 'web1'));
    for (const report of [reportOf(todaysLayout()), reportOf(haLayout()), reportOf(down), reportOf(ha)]) {
      expect(check(clone(report))).toEqual([]);
    }
  });

  it('accepts every optional field the code can set', () => {
    const layout = haLayout();
    const web2 = nodeOf(layout, 'web2');
    Object.assign(web2, {
      errorKind: 'timeout', error: 'the check was cut off after 10 s', unitsError: 'sudo: a password is required',
      firstboot: { state: 'waiting', detail: 'x', updated: '2026-11-29T10:00:00Z', attempt: 2 },
      failedUnits: ['apt-daily.service'],
    });
    Object.assign(web2.card, { error: 'x' });
    Object.assign(web2.patroni ?? {}, { pendingRestart: true });
    Object.assign(nodeOf(layout, 'web1').postgresql?.replicas[0] ?? {}, { client: '10.0.0.12' });
    nodeOf(layout, 'lb2').haproxy = { answering: false, error: 'x', backends: [] };
    nodeOf(layout, 'web3').postgresql = { answering: false, error: 'psql: error', replicas: [], slots: [] };
    const report = { ...reportOf(layout), partial: true };
    expect(check(clone(report))).toEqual([]);
  });

  it('refuses what the code never makes: unknown keys, unknown states, a wrong exit code', () => {
    const good = clone(reportOf(todaysLayout()));
    expect(check({ ...good, extra: 1 })).toEqual([' must NOT have additional properties']);
    const badState = clone(good);
    (badState.verdict as { state: string }).state = 'fine';
    expect(check(badState)).toEqual(['/verdict/state must be equal to one of the allowed values']);
    const badCard = clone(good);
    (badCard.nodes[0]?.card as { state: string }).state = 'new';
    expect(check(badCard)).toEqual(['/nodes/0/card/state must be equal to one of the allowed values']);
    const badExit = clone(good);
    (badExit.verdict as { exitCode: number }).exitCode = 3;
    expect(check(badExit)).toEqual(['/verdict/exitCode must be equal to one of the allowed values']);
  });
});
