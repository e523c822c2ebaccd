/**
 * The status report as one screen of text: a header, one line per node, then the verdict with
 * each finding. Colour only when asked (a terminal, NO_COLOR unset); the words carry the meaning
 * without it. Pure.
 */
import { serverUp } from './parse.ts';
import { formatBytes } from '../common/bytes.ts';
import { downByDesign, formatSeconds } from './verdict.ts';
import type { NodeStatus, StatusReport, VerdictState } from './types.ts';

export interface FormatOptions {
  color: boolean;
  /** Cut lines to this many columns (a terminal's width); undefined: never cut. */
  width?: number;
  /** --watch: say when the next round runs. */
  footer?: string;
}

type Tone = 'good' | 'warn' | 'bad' | 'dim' | 'bold';
const SGR: Record<Tone, string> = { good: '32', warn: '33', bad: '31', dim: '2', bold: '1' };

interface Cell {
  text: string;
  tone?: Tone;
}

const cell = (text: string, tone?: Tone): Cell => ({ text, tone });

export function formatUptime(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m`;
  return `${Math.floor(seconds)}s`;
}

function cardCell(node: NodeStatus): Cell {
  const state = node.card.state;
  return cell(state === 'not-built' ? 'not built' : state, state === 'current' ? 'good' : 'warn');
}

function bootCell(node: NodeStatus): Cell {
  const fb = node.firstboot;
  if (fb && fb.state !== 'done') return cell(`firstboot ${fb.state}`, fb.state === 'failed' ? 'bad' : 'warn');
  const ci = node.cloudInit;
  if (ci) return cell(ci.status, ci.status === 'done' || ci.status === 'disabled' ? 'good' : ci.status === 'running' ? 'warn' : 'bad');
  return fb ? cell('done', 'good') : cell('-', 'dim');
}

function servicesCell(node: NodeStatus): Cell {
  const services = node.units.filter((u) => u.kind === 'service');
  const troubled = node.units.filter((u) => (u.kind === 'service' ? u.active !== 'active' : u.active === 'failed' || u.active === 'activating'));
  if (troubled.length === 0) return cell(services.length === 0 ? '-' : `${services.length}/${services.length} active`, services.length ? 'good' : 'dim');
  const short = (unit: string) => unit.replace(/\.service$/, '');
  return cell(troubled.map((u) => `${short(u.unit)} ${u.load === 'not-found' ? 'missing' : u.active}`).join(', '), 'bad');
}

function lag(bytes: number | null, seconds: number | null): string {
  return `lag ${bytes === null ? '?' : formatBytes(bytes)} / ${seconds === null ? '?' : formatSeconds(seconds)}`;
}

function detailCells(node: NodeStatus, report: StatusReport): Cell[] {
  if (!node.reachable) return [cell(node.error ?? 'unreachable', 'bad')];
  const out: Cell[] = [];
  const pg = node.postgresql;
  const patroni = node.patroni;
  if (pg && !pg.answering) out.push(cell('PostgreSQL not answering', 'bad'));
  if (pg?.answering) {
    const timeline = pg.timeline !== undefined ? `, timeline ${pg.timeline}` : '';
    if (pg.role === 'primary') {
      const standbys = pg.replicas.map((r) => r.node ?? r.name);
      out.push(cell(`primary${timeline}${standbys.length ? `, standbys ${standbys.join(' ')}` : ''}`, 'good'));
      for (const slot of pg.slots.filter((s) => !s.active)) {
        out.push(cell(`slot ${slot.name} inactive${slot.retainedBytes !== null ? ` (${formatBytes(slot.retainedBytes)})` : ''}`, 'warn'));
      }
    } else {
      const rep = node.replication;
      const state = rep?.state ?? 'not streaming';
      out.push(cell(`standby${rep?.from ? ` of ${rep.from}` : ''}${timeline}, ${state}${rep ? `, ${lag(rep.lagBytes, rep.lagSeconds)}` : ''}`,
        state === 'streaming' ? 'good' : 'warn'));
    }
  }
  if (patroni) {
    out.push(patroni.answering
      ? cell(`Patroni ${patroni.state ?? '?'}${patroni.role ? ` (${patroni.role})` : ''}`, patroni.state === 'running' ? 'good' : 'warn')
      : cell('Patroni not answering', 'bad'));
  }
  const etcd = node.etcd;
  if (etcd) out.push(!etcd.answering ? cell('etcd not answering', 'bad') : etcd.healthy ? cell('etcd healthy', 'good') : cell('etcd not healthy', 'bad'));
  const haproxy = node.haproxy;
  if (haproxy && !haproxy.answering) out.push(cell('HAProxy not answering', 'bad'));
  for (const backend of haproxy?.backends ?? []) {
    // Servers that only mirror another one's check (track) are left out: that one is shown.
    const own = backend.servers.filter((s) => !s.tracks);
    const up = own.filter((s) => serverUp(s.status));
    const notUp = own.filter((s) => !serverUp(s.status));
    const faults = notUp.filter((s) => !downByDesign(backend, s, report.nodes));
    const said = notUp.map((s) => (faults.includes(s) ? `${s.name} ${s.status.split(' ')[0]}` : `${s.name} ${pgRoleOf(report, s.name)}`));
    const tone: Tone = !serverUp(backend.status) ? 'bad' : faults.length ? 'warn' : 'good';
    out.push(cell(`${backend.name} ${up.length}/${own.length}${said.length ? ` (${said.join(', ')})` : ''}`, tone));
  }
  if (report.vip && node.holdsVip) out.push(cell(`holds ${report.vip}`, 'good'));
  return out;
}

function pgRoleOf(report: StatusReport, name: string): string {
  return report.nodes.find((n) => n.name === name)?.postgresql?.role ?? '?';
}

const VERDICT_TONE: Record<VerdictState, Tone> = { healthy: 'good', degraded: 'warn', down: 'bad' };

export function formatReport(report: StatusReport, options: FormatOptions): string[] {
  const paint = (c: Cell) => (options.color && c.tone ? `\x1b[${SGR[c.tone]}m${c.text}\x1b[0m` : c.text);
  const verdict = report.verdict;
  const when = report.checkedAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  const lines: string[] = [];
  const headline = [
    cell(report.cluster, 'bold'),
    cell(verdict.state.toUpperCase(), VERDICT_TONE[verdict.state]),
    cell(`${report.nodes.length} node${report.nodes.length === 1 ? '' : 's'}${report.partial ? ' (--node)' : ''} checked in ${report.seconds.toFixed(1)} s, ${when}`, 'dim'),
  ];
  lines.push(headline.map(paint).join('  '));

  const header = ['NODE', 'ROLE', 'UP', 'CARD', 'BOOT', 'SERVICES', 'DETAILS'].map((t) => cell(t, 'dim'));
  const rows: Cell[][] = report.nodes.map((node) => {
    const reached = node.reachable;
    const na = cell('-', 'dim');
    const details = detailCells(node, report);
    return [
      cell(node.name, 'bold'),
      cell(node.role),
      reached && node.uptimeSeconds !== undefined ? cell(formatUptime(node.uptimeSeconds)) : reached ? na : cell('down', 'bad'),
      reached ? cardCell(node) : na,
      reached ? bootCell(node) : na,
      reached ? servicesCell(node) : na,
      // One cell: the parts are joined with their own colours below.
      { text: details.map((d) => d.text).join('; '), tone: undefined, parts: details } as Cell & { parts: Cell[] },
    ];
  });
  const widths = header.map((_, i) => Math.max(header[i]?.text.length ?? 0, ...rows.map((r) => r[i]?.text.length ?? 0)));
  const detailsAt = widths.slice(0, -1).reduce((sum, w) => sum + w + 2, 0);
  // One line per node; on a narrow terminal the details go on under their column instead of
  // being cut, so nothing is lost.
  const render = (row: Cell[]): string[] => {
    const lead = row.slice(0, -1).map((c, i) => paint(c) + ' '.repeat((widths[i] ?? 0) - c.text.length)).join('  ');
    const last = row[row.length - 1] as Cell & { parts?: Cell[] };
    const parts = last.parts ?? [last];
    const room = options.width !== undefined ? Math.max(16, options.width - detailsAt) : Infinity;
    const out: string[] = [];
    let line: Cell[] = [];
    let used = 0;
    for (const part of parts) {
      const text = clip(part.text, room);
      if (line.length > 0 && used + 2 + text.length > room) {
        out.push(line.map(paint).join('; '));
        line = [];
        used = 0;
      }
      used += (line.length > 0 ? 2 : 0) + text.length;
      line.push({ text, tone: part.tone });
    }
    out.push(line.map(paint).join('; '));
    return out.map((text, i) => `${i === 0 ? lead : ' '.repeat(detailsAt - 2)}  ${text}`.trimEnd());
  };
  lines.push(...render(header));
  for (const row of rows) lines.push(...render(row));

  lines.push('');
  const exit = `exit ${verdict.exitCode}`;
  if (verdict.findings.length === 0) lines.push(`${paint(cell('healthy', 'good'))}: every node answers, runs its card and its services (${exit})`);
  else {
    lines.push(`${paint(cell(verdict.state, VERDICT_TONE[verdict.state]))}: ${verdict.findings.length} finding${verdict.findings.length === 1 ? '' : 's'} (${exit})`);
    for (const f of verdict.findings) {
      const text = `  ${f.level === 'down' ? 'DOWN ' : ''}${f.message}`;
      lines.push(f.level === 'down' ? paint(cell(clip(text, options.width ?? Infinity), 'bad')) : clip(text, options.width ?? Infinity));
    }
  }
  if (options.footer) lines.push(paint(cell(options.footer, 'dim')));
  return lines;
}

function clip(text: string, room: number): string {
  return text.length <= room ? text : `${text.slice(0, Math.max(0, room - 1))}…`;
}
