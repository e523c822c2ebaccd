/**
 * What `pibake status` reports: one record per node as seen over ssh, and the cluster's verdict.
 * This is also the shape of `pibake status --json` (format 1), published as
 * schema/status.schema.json; test/status/schema.test.ts keeps the two in step.
 */

export const STATUS_FORMAT = 1;

export type VerdictState = 'healthy' | 'degraded' | 'down';

/** One thing wrong, said so that it reads on its own ("stale card: reflash web2"). */
export interface Finding {
  /** `down`: the cluster cannot do its job (no load balancer, no primary, a backend with no server). */
  level: 'degraded' | 'down';
  /** The node it is about; absent for cluster-wide findings. */
  node?: string;
  message: string;
}

export interface Verdict {
  state: VerdictState;
  /** 0 healthy, 1 degraded, 2 down (3 is used when the cluster could not be checked at all). */
  exitCode: 0 | 1 | 2;
  findings: Finding[];
}

/** Why a node could not be checked: names the cause the operator acts on. */
export type ReachError = 'unreachable' | 'refused' | 'host-key' | 'login' | 'ssh';

/** Whether the card runs the image this build made (/etc/pibake/manifest.json against output/). */
export interface CardStatus {
  /**
   * current: the digest output/<cluster>/manifest.json records for this node; stale: an older or
   * newer build of this node; foreign: another node's or cluster's card; unknown: no readable
   * manifest on the card; not-built: output/ has no record of this node.
   */
  state: 'current' | 'stale' | 'foreign' | 'unknown' | 'not-built';
  /** What the card says about itself. */
  node?: string;
  cluster?: string;
  digest?: string;
  pibake?: string;
  /** The digest of the node's image in output/. */
  expected?: string;
  error?: string;
}

export interface UnitStatus {
  unit: string;
  /** `service`: listed in the role's services (must be active); `firstboot`: a one-shot set-up unit. */
  kind: 'service' | 'firstboot';
  load: string;
  active: string;
  sub: string;
  result: string;
}

export interface CloudInitStatus {
  /** cloud-init's own word: done, running, error, degraded, not started / not run, disabled. */
  status: string;
  detail?: string;
  errors: string[];
}

/** pibake-firstboot's record (/var/lib/pibake/firstboot.status), on cards that have one. */
export interface FirstbootStatus {
  state: string;
  detail?: string;
  updated?: string;
  attempt?: number;
}

export interface ReplicaLink {
  /** The standby's application_name (pibake sets it to the node's slot name). */
  name: string;
  /** The inventory node it belongs to, when known. */
  node?: string;
  client?: string;
  state: string;
  sync?: string;
  lagBytes: number | null;
  lagSeconds: number | null;
}

export interface SlotStatus {
  name: string;
  node?: string;
  active: boolean;
  walStatus?: string;
  /** WAL the primary keeps for this slot (bytes); null on a standby. */
  retainedBytes: number | null;
}

export interface PostgresStatus {
  answering: boolean;
  error?: string;
  role?: 'primary' | 'replica';
  timeline?: number;
  /** server_version_num, e.g. 170002. */
  version?: number;
  /** Primary: its standbys as pg_stat_replication sees them. */
  replicas: ReplicaLink[];
  /** Physical replication slots. */
  slots: SlotStatus[];
  /** Standby: its WAL receiver (null when it receives nothing). */
  receiver?: { status: string; host?: string; slot?: string } | null;
  receiveLagBytes?: number | null;
  replayDelaySeconds?: number | null;
}

/** A standby's replication as one line: whom it follows and how far behind it is. */
export interface Replication {
  /** The node it streams from, when known. */
  from?: string;
  state: string;
  lagBytes: number | null;
  lagSeconds: number | null;
  /** Whose numbers these are: the primary's pg_stat_replication, or the standby's own. */
  source: 'primary' | 'standby';
}

export interface PatroniStatus {
  answering: boolean;
  error?: string;
  state?: string;
  /** Patroni's role, with Patroni 3's `master` said as `primary`. */
  role?: string;
  timeline?: number;
  scope?: string;
  version?: string;
  pendingRestart?: boolean;
}

/** An etcd member's own view (GET /health): healthy while it has a leader and no alarm. */
export interface EtcdStatus {
  answering: boolean;
  error?: string;
  healthy?: boolean;
  /** etcd 3.5 and later say why a member is not healthy. */
  reason?: string;
}

export interface HaproxyServer {
  name: string;
  status: string;
  check?: string;
  backup: boolean;
  /** `track`: the server whose check this one follows (`proxy/server`); its state is that server's. */
  tracks?: string;
}

export interface HaproxyBackend {
  name: string;
  status: string;
  servers: HaproxyServer[];
}

export interface HaproxyStatus {
  answering: boolean;
  error?: string;
  backends: HaproxyBackend[];
}

export interface NodeStatus {
  name: string;
  role: string;
  ip: string;
  reachable: boolean;
  /** Set when the node could not be checked (or the check was cut off). */
  error?: string;
  errorKind?: ReachError | 'timeout';
  /** Wall time of this node's check. */
  seconds: number;
  hostname?: string;
  uptimeSeconds?: number;
  /** The kernel's id of the running boot: changes when the node restarts. */
  bootId?: string;
  card: CardStatus;
  cloudInit?: CloudInitStatus;
  firstboot?: FirstbootStatus;
  /** `systemctl is-system-running`. */
  systemState?: string;
  units: UnitStatus[];
  /** Why the role's units could not be read (then every unit says `unknown`). */
  unitsError?: string;
  /** Every failed unit of the node (`systemctl list-units --state=failed`). */
  failedUnits: string[];
  /** IPv4 addresses with prefix length on the node's interfaces, loopback left out. */
  addresses: string[];
  /** Whether the node holds the cluster's floating address (only when the inventory has one). */
  holdsVip?: boolean;
  postgresql?: PostgresStatus;
  replication?: Replication;
  patroni?: PatroniStatus;
  etcd?: EtcdStatus;
  haproxy?: HaproxyStatus;
}

export interface StatusReport {
  format: typeof STATUS_FORMAT;
  cluster: string;
  /** ISO 8601 time the check started. */
  checkedAt: string;
  seconds: number;
  /** The floating address of the load balancers, when the inventory has one. */
  vip?: string;
  /** True when --node limited the check to some nodes (cluster-wide rules then judge only what was seen). */
  partial: boolean;
  nodes: NodeStatus[];
  verdict: Verdict;
}
