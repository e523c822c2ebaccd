/**
 * The cluster.yaml keys of the high-availability layer: the floating address (network.vip), VRRP
 * between the load balancers, Patroni's timers and modes, and the etcd members. schema.ts places
 * them in the inventory; the rules relating them to the node list live in checks-ha.ts.
 */
import type { Field } from './spec.ts';
import { IPV4_PATTERN, LABEL_PATTERN } from './net.ts';

const PORT = { type: 'integer', minimum: 1, maximum: 65535 } as const;

/** network.vip */
export const VIP_FIELD: Field = {
  key: 'vip',
  description:
    'The one address clients use (web site, PostgreSQL write and read ports). keepalived keeps it on one load balancer and moves it to another within seconds when that one fails. Needed as soon as there are two load balancers; a free address inside the CIDR, no node\'s.',
  defaultText: 'none: clients use the only load balancer\'s own address',
  example: '10.0.0.9',
  spec: { type: 'string', pattern: IPV4_PATTERN, label: 'IPv4 address', format: 'four numbers 0-255 without leading zeros, e.g. 10.0.0.9' },
};

/** roles.lb: the VRRP group and the local answer keepalived checks. */
export const LB_HA_FIELDS: readonly Field[] = [
  {
    key: 'vrrp_router_id',
    description:
      'VRRP virtual router id the load balancers share for network.vip (keepalived). Must be unique among the VRRP groups on this network segment (routers and other clusters may use VRRP too).',
    default: 51,
    spec: { type: 'integer', minimum: 1, maximum: 255 },
  },
  {
    key: 'monitor_port',
    description: 'Port on 127.0.0.1 where HAProxy answers "alive"; keepalived asks it every second and gives the address up when HAProxy stops answering.',
    default: 8405,
    spec: PORT,
  },
];

/** roles.patroni */
export const PATRONI_FIELD: Field = {
  key: 'patroni',
  description:
    'Patroni, which runs PostgreSQL on every database node and decides which one is the primary (with etcd as its store). The timers are Patroni\'s `ttl`, `loop_wait` and `retry_timeout`: a primary that dies is replaced after about `ttl` seconds. Patroni requires loop_wait + 2 × retry_timeout ≤ ttl. They are written into the cluster\'s first boot (bootstrap); change a running cluster with `patronictl edit-config`.',
  default: {},
  spec: {
    type: 'object',
    fields: [
      {
        key: 'ttl',
        description:
          'Seconds the primary\'s leader key lives without renewal; the failover takes about this long. Patroni 4.0 (trixie) refuses less than 20; bookworm\'s Patroni 3.0 measured 10 s without writes at ttl 10.',
        defaultText: '10 on a bookworm base (Patroni 3.0), 20 on trixie (Patroni 4.0\'s minimum)',
        spec: { type: 'integer', minimum: 5, maximum: 3600 },
      },
      { key: 'loop_wait', description: 'Seconds between two runs of Patroni\'s loop (the leader renews its key each time).', default: 2, spec: { type: 'integer', minimum: 1, maximum: 600 } },
      {
        key: 'retry_timeout',
        description: 'Seconds Patroni retries etcd and PostgreSQL before it gives up; a primary that cannot renew its key for this long steps down.',
        default: 4,
        spec: { type: 'integer', minimum: 3, maximum: 600 },
      },
      {
        key: 'synchronous_mode',
        description:
          'Each commit waits until a standby has the WAL, and only that standby may be promoted: no acknowledged write is lost in a failover (measured: 0 lost; asynchronous lost the last one). Costs one network round trip per commit; with no standby left, the primary goes on alone.',
        default: true,
        spec: { type: 'boolean' },
      },
      {
        key: 'failsafe_mode',
        description:
          'When etcd loses its quorum, the primary stays primary as long as every Patroni node answers it directly (instead of stepping down and stopping all writes).',
        default: true,
        spec: { type: 'boolean' },
      },
      { key: 'rest_port', description: 'Port of Patroni\'s REST API on each database node; HAProxy asks it who is the primary.', default: 8008, spec: PORT },
    ],
  },
};

/** roles.etcd */
export const ETCD_FIELD: Field = {
  key: 'etcd',
  description:
    'etcd, the store in which Patroni keeps the leader key. It runs on some of the database nodes (its members) and needs a majority of them alive to work.',
  default: {},
  spec: {
    type: 'object',
    fields: [
      {
        key: 'members',
        description:
          'Names of the database nodes that run etcd: 3 (tolerates one dead member) or 5 (two); an even number is refused, since it tolerates no more failures than one fewer. Other database nodes run Patroni against these members.',
        defaultText: 'the first three database nodes (the first one when there are fewer than three)',
        example: '[web1, web2, web3]',
        spec: { type: 'array', minItems: 1, items: { type: 'string', pattern: LABEL_PATTERN, label: 'node name', format: 'a node name from nodes' } },
      },
      { key: 'client_port', description: 'Port etcd serves clients (Patroni, etcdctl) on.', default: 2379, spec: PORT },
      { key: 'peer_port', description: 'Port the etcd members talk to each other on.', default: 2380, spec: PORT },
    ],
  },
};
