/**
 * Reading what the probe (probe-script.ts) printed on a node: the sections, and each program's output
 * in the format that program really prints (cloud-init 22.4 and 25, systemd, iproute2, psql's
 * JSON line, Patroni's REST API, etcd's /health, HAProxy's `show stat` CSV). Pure: text in, records out.
 */
import type {
  CardStatus, CloudInitStatus, EtcdStatus, FirstbootStatus, HaproxyBackend, HaproxyStatus, NodeStatus, PatroniStatus,
  PostgresStatus, ReplicaLink, SlotStatus, UnitStatus,
} from './types.ts';
import type { ProbeTarget } from './probe.ts';

export interface Section {
  name: string;
  text: string;
  /** undefined when the section was cut off (the check ran out of time mid-way). */
  exitCode?: number;
}

const BEGIN = /^@@pibake-status begin (\S+)$/;
const END = /^@@pibake-status end (\S+) (\d+)$/;

export function splitSections(output: string): Map<string, Section> {
  const sections = new Map<string, Section>();
  let current: { name: string; lines: string[] } | undefined;
  for (const line of output.split('\n')) {
    const begin = BEGIN.exec(line);
    if (begin) {
      current = { name: begin[1] as string, lines: [] };
      sections.set(current.name, { name: current.name, text: '' });
      continue;
    }
    const end = END.exec(line);
    if (end && current && end[1] === current.name) {
      // The probe prints a newline before the end marker; drop it.
      sections.set(current.name, { name: current.name, text: current.lines.join('\n').replace(/\n$/, ''), exitCode: Number(end[2]) });
      current = undefined;
      continue;
    }
    if (current) {
      current.lines.push(line);
      sections.set(current.name, { name: current.name, text: current.lines.join('\n') });
    }
  }
  return sections;
}

/** The first line worth quoting from a failed step (sudo's or psql's complaint, an exception). */
export function firstLine(text: string): string {
  return text.split('\n').map((l) => l.trim()).find(Boolean) ?? '';
}

function failure(section: Section | undefined, what: string): string {
  if (!section) return `${what}: not checked`;
  if (section.exitCode === undefined) return `${what}: cut off (the check ran out of time)`;
  const line = firstLine(section.text);
  if (section.exitCode === 124) return `${what}: no answer within the probe's time limit`;
  return line || `${what}: exit ${section.exitCode}`;
}

/** The JSON object in a section's text; anything printed around it (warnings) is ignored. */
function jsonIn(text: string): unknown {
  const start = text.indexOf('{');
  const end = text.lastIndexOf('}');
  if (start < 0 || end < start) return undefined;
  try {
    return JSON.parse(text.slice(start, end + 1));
  } catch {
    return undefined;
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : null);

// ------------------------------------------------------------------------------------ host

export function parseHost(text: string): { hostname?: string; uptimeSeconds?: number; bootId?: string } {
  const [hostname, uptime, bootId] = text.split('\n').map((l) => l.trim());
  const seconds = Number(uptime?.split(/\s+/)[0]);
  return {
    hostname: hostname || undefined,
    uptimeSeconds: Number.isFinite(seconds) ? seconds : undefined,
    bootId: bootId && /^[0-9a-f-]{36}$/.test(bootId) ? bootId : undefined,
  };
}

/** What the probe says instead of asking cloud-init again in a boot where it was done already. */
export const CLOUD_INIT_SETTLED = 'done earlier in this boot';

// ------------------------------------------------------------------------------------ card

/**
 * The card's /etc/pibake/manifest.json (written by `pibake build`) against the digest that
 * output/<cluster>/manifest.json records for the node.
 */
export function judgeCard(
  section: Section | undefined,
  expect: { node: string; cluster: string; digest?: string },
): CardStatus {
  if (!section || section.exitCode !== 0) {
    return { state: 'unknown', error: section ? firstLine(section.text) || 'no /etc/pibake/manifest.json' : 'not checked' };
  }
  const parsed = jsonIn(section.text);
  if (!isRecord(parsed)) return { state: 'unknown', error: '/etc/pibake/manifest.json is not JSON' };
  const card: CardStatus = {
    state: 'unknown',
    node: str(parsed.node),
    cluster: str(parsed.cluster),
    digest: str(parsed.digest),
    pibake: str(parsed.pibake),
    expected: expect.digest,
  };
  if (card.node !== expect.node || card.cluster !== expect.cluster) card.state = 'foreign';
  else if (expect.digest === undefined) card.state = 'not-built';
  else card.state = card.digest === expect.digest ? 'current' : 'stale';
  return card;
}

// ------------------------------------------------------------------------------------ cloud-init

/**
 * `cloud-init status --format json` (22.4: status done/running/error/not run/disabled; 25:
 * also extended_status such as "degraded done" and recoverable_errors). Older ones print only
 * `status: done`.
 */
export function parseCloudInit(section: Section | undefined): CloudInitStatus | undefined {
  if (!section || section.exitCode === 127 || section.exitCode === undefined) return undefined;
  if (section.exitCode === 0 && section.text.trim() === CLOUD_INIT_SETTLED) return { status: 'done', detail: CLOUD_INIT_SETTLED, errors: [] };
  const parsed = jsonIn(section.text);
  if (isRecord(parsed) && typeof parsed.status === 'string') {
    const extended = str(parsed.extended_status);
    const errors = Array.isArray(parsed.errors) ? parsed.errors.map(String) : [];
    const recoverable = isRecord(parsed.recoverable_errors)
      ? Object.entries(parsed.recoverable_errors).flatMap(([level, list]) => (Array.isArray(list) ? list.map((e) => `${level}: ${String(e)}`) : []))
      : [];
    // 25.x reports a finished boot with recoverable errors as status "done", extended "degraded done".
    const status = extended?.startsWith('degraded') ? 'degraded' : parsed.status;
    return { status, detail: str(parsed.detail), errors: [...errors, ...recoverable] };
  }
  const plain = /^status:\s*(.+)$/m.exec(section.text);
  if (plain) return { status: (plain[1] as string).trim(), errors: [] };
  return { status: 'unknown', detail: firstLine(section.text), errors: [] };
}

// ------------------------------------------------------------------------------------ first boot

/** /var/lib/pibake/firstboot.status: `key=value` lines (state, source, attempt, updated, detail). */
export function parseFirstboot(section: Section | undefined): FirstbootStatus | undefined {
  if (!section || section.exitCode !== 0) return undefined;
  const values = new Map<string, string>();
  for (const line of section.text.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) values.set(line.slice(0, at).trim(), line.slice(at + 1).trim());
  }
  const state = values.get('state');
  if (!state) return undefined;
  const attempt = Number(values.get('attempt'));
  return { state, detail: values.get('detail') || undefined, updated: values.get('updated') || undefined, attempt: Number.isInteger(attempt) ? attempt : undefined };
}

// ------------------------------------------------------------------------------------ systemd

/** `systemctl show --property=Id,LoadState,ActiveState,SubState,Result UNIT...`: blocks of key=value. */
export function parseUnits(text: string, target: Pick<ProbeTarget, 'services' | 'firstboot'>): UnitStatus[] {
  const blocks = text.split(/\n\s*\n/).map((block) => {
    const values = new Map<string, string>();
    for (const line of block.split('\n')) {
      const at = line.indexOf('=');
      if (at > 0) values.set(line.slice(0, at), line.slice(at + 1));
    }
    return values;
  });
  const byId = new Map(blocks.filter((b) => b.has('Id')).map((b) => [b.get('Id') as string, b]));
  const unit = (name: string, kind: UnitStatus['kind']): UnitStatus => {
    const b = byId.get(name);
    return {
      unit: name,
      kind,
      load: b?.get('LoadState') ?? 'unknown',
      active: b?.get('ActiveState') ?? 'unknown',
      sub: b?.get('SubState') ?? 'unknown',
      result: b?.get('Result') ?? 'unknown',
    };
  };
  return [...target.services.map((s) => unit(s, 'service')), ...target.firstboot.map((s) => unit(s, 'firstboot'))];
}

/** `systemctl is-system-running` says one word (running, degraded, starting...); anything else is a complaint. */
export function systemState(section: Section | undefined): string | undefined {
  const word = section?.text.trim() ?? '';
  return /^[a-z-]+$/.test(word) ? word : undefined;
}

/** `systemctl list-units --state=failed --plain --no-legend`: the first word of each line. */
export function parseFailedUnits(text: string): string[] {
  return text.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((u) => /\.[a-z]+$/.test(u));
}

// ------------------------------------------------------------------------------------ addresses

/** `ip -4 -br addr show`: "eth0  UP  10.0.0.10/24 10.0.0.9/24"; loopback left out. */
export function parseAddresses(text: string): string[] {
  return text.split('\n').flatMap((line) => {
    const [name, , ...addresses] = line.trim().split(/\s+/);
    if (!name || name === 'lo') return [];
    return addresses.filter((a) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(a));
  });
}

export function hasAddress(addresses: string[], ip: string): boolean {
  return addresses.some((a) => a.split('/')[0] === ip);
}

// ------------------------------------------------------------------------------------ PostgreSQL

export function parsePostgres(section: Section | undefined): PostgresStatus {
  const parsed = section?.exitCode === 0 ? jsonIn(section.text) : undefined;
  if (!isRecord(parsed)) {
    return { answering: false, error: failure(section, 'PostgreSQL'), replicas: [], slots: [] };
  }
  const replicas: ReplicaLink[] = (Array.isArray(parsed.replicas) ? parsed.replicas : []).filter(isRecord).map((r) => ({
    name: str(r.name) ?? '',
    client: str(r.client),
    state: str(r.state) ?? 'unknown',
    sync: str(r.sync),
    lagBytes: num(r.lag_bytes),
    lagSeconds: num(r.lag_seconds),
  }));
  const slots: SlotStatus[] = (Array.isArray(parsed.slots) ? parsed.slots : []).filter(isRecord).map((s) => ({
    name: str(s.name) ?? '',
    active: s.active === true,
    walStatus: str(s.wal_status),
    retainedBytes: num(s.retained_bytes),
  }));
  const receiver = isRecord(parsed.receiver)
    ? { status: str(parsed.receiver.status) ?? 'unknown', host: str(parsed.receiver.host), slot: str(parsed.receiver.slot) }
    : null;
  const recovery = parsed.recovery === true;
  const timeline = num(parsed.timeline);
  const version = num(parsed.version);
  return {
    answering: true,
    role: recovery ? 'replica' : 'primary',
    timeline: timeline ?? undefined,
    version: version ?? undefined,
    replicas,
    slots,
    ...(recovery ? { receiver, receiveLagBytes: num(parsed.receive_lag_bytes), replayDelaySeconds: num(parsed.replay_delay_seconds) } : {}),
  };
}

// ------------------------------------------------------------------------------------ Patroni

/** GET /patroni: state, role (Patroni 3 says `master`, 4 `primary`), timeline, patroni.{version,scope}. */
export function parsePatroni(section: Section | undefined): PatroniStatus {
  const parsed = section?.exitCode === 0 ? jsonIn(section.text) : undefined;
  if (!isRecord(parsed) || (parsed.state === undefined && parsed.role === undefined)) {
    return { answering: false, error: failure(section, "Patroni's REST API") };
  }
  const role = str(parsed.role);
  const patroni = isRecord(parsed.patroni) ? parsed.patroni : {};
  const timeline = num(parsed.timeline);
  return {
    answering: true,
    state: str(parsed.state),
    role: role === 'master' ? 'primary' : role,
    timeline: timeline ?? undefined,
    scope: str(patroni.scope),
    version: str(patroni.version),
    pendingRestart: parsed.pending_restart === true ? true : undefined,
  };
}

// --------------------------------------------------------------------------------------- etcd

/** GET /health: `{"health":"true"}` (3.4), with a `reason` from 3.5 on; 503 and "false" without a leader. */
export function parseEtcd(section: Section | undefined): EtcdStatus {
  const parsed = section?.exitCode === 0 ? jsonIn(section.text) : undefined;
  if (!isRecord(parsed) || parsed.health === undefined) return { answering: false, error: failure(section, "etcd's /health") };
  const reason = str(parsed.reason);
  return { answering: true, healthy: parsed.health === 'true' || parsed.health === true, ...(reason ? { reason } : {}) };
}

// ------------------------------------------------------------------------------------ HAProxy

export type StatRow = Record<string, string>;

/** HAProxy's statistics CSV (`show stat`, or `<stats uri>;csv`): `# pxname,svname,...` then rows. */
export function parseStatCsv(text: string): StatRow[] | undefined {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const at = lines.findIndex((l) => l.startsWith('# pxname,'));
  if (at < 0) return undefined;
  const names = (lines[at] as string).slice(2).split(',');
  return lines.slice(at + 1).map((row) => Object.fromEntries(row.split(',').map((v, i) => [names[i] ?? `c${i}`, v])));
}

/** Proxies that have servers (backends and listens), with the backend's own status and each server's. */
export function parseHaproxy(section: Section | undefined): HaproxyStatus {
  const rows = section?.exitCode === 0 ? parseStatCsv(section.text) : undefined;
  if (!rows) return { answering: false, error: failure(section, "HAProxy's stats socket"), backends: [] };
  const backends = new Map<string, HaproxyBackend>();
  for (const row of rows) {
    const proxy = row.pxname ?? '';
    if (row.svname === 'FRONTEND') continue;
    const backend = backends.get(proxy) ?? { name: proxy, status: 'unknown', servers: [] };
    backends.set(proxy, backend);
    if (row.svname === 'BACKEND') backend.status = row.status ?? 'unknown';
    else {
      backend.servers.push({
        name: row.svname ?? '', status: row.status ?? 'unknown', check: lastCheck(row.check_status), backup: row.bck === '1',
        ...(row.tracked ? { tracks: row.tracked } : {}),
      });
    }
  }
  return { answering: true, backends: [...backends.values()].filter((b) => b.servers.length > 0) };
}

/** The result of the server's last check. While a check runs, HAProxy shows the one before it marked "* ". */
function lastCheck(field: string | undefined): string | undefined {
  return field?.replace(/^\* /, '') || undefined;
}

/** A server HAProxy sends traffic to (UP, or UP while its checks start failing, or unchecked). */
export function serverUp(status: string): boolean {
  return /^(UP|no check|OPEN)/.test(status);
}

// ------------------------------------------------------------------------------------ a whole node

/** A reachable node's record from its probe's output. */
export function readNode(
  target: ProbeTarget,
  output: string,
  expect: { cluster: string; digest?: string; vip?: string },
): Omit<NodeStatus, 'seconds'> {
  const s = splitSections(output);
  const host = s.get('host');
  const units = s.get('units');
  const node: Omit<NodeStatus, 'seconds'> = {
    name: target.name,
    role: target.role,
    ip: target.ip,
    reachable: true,
    ...(host?.exitCode === 0 ? parseHost(host.text) : {}),
    card: judgeCard(s.get('manifest'), { node: target.name, cluster: expect.cluster, digest: expect.digest }),
    cloudInit: parseCloudInit(s.get('cloud-init')),
    firstboot: parseFirstboot(s.get('firstboot')),
    systemState: systemState(s.get('system')),
    units: parseUnits(units?.text ?? '', target),
    failedUnits: parseFailedUnits(s.get('failed')?.text ?? ''),
    addresses: parseAddresses(s.get('addresses')?.text ?? ''),
  };
  if (target.services.length + target.firstboot.length > 0 && (units?.exitCode !== 0 || !/^Id=/m.test(units.text))) {
    node.unitsError = failure(units, 'systemctl');
  }
  if (expect.vip) node.holdsVip = hasAddress(node.addresses, expect.vip);
  if (target.postgresqlPort !== undefined) node.postgresql = parsePostgres(s.get('postgresql'));
  if (target.patroniUrl) node.patroni = parsePatroni(s.get('patroni'));
  if (target.etcdUrl) node.etcd = parseEtcd(s.get('etcd'));
  if (target.haproxy) node.haproxy = parseHaproxy(s.get('haproxy'));
  return node;
}
