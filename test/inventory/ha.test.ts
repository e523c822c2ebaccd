/**
 * The high-availability rules of cluster.yaml (checks-ha.ts, schema-ha.ts): the floating address,
 * the load balancers sharing it, the etcd members, Patroni's timer rule, a node that is load
 * balancer and web node at once, and one warning per single point of failure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VALID, edit, expectSingle, locate, workspace } from './helpers.ts';
import type { Workspace } from './helpers.ts';

let ws: Workspace;
beforeAll(async () => {
  ws = await workspace();
});
afterAll(() => ws.cleanup());

const single = (yaml: string, marker: string, message: RegExp): Promise<string> => expectSingle(ws, yaml, marker, message);

const HEAD = VALID.slice(0, VALID.indexOf('nodes:'));
/** VALID's settings with `lbs` load balancers and `dbs` db nodes; `network` lines added under network:. */
function layout(lbs: number, dbs: number, network = '', tail = ''): string {
  const nodes = [
    ...Array.from({ length: lbs }, (_, i) => `  - { name: lb${i + 1}, role: lb, ip: 10.0.0.${20 + i} }`),
    ...Array.from({ length: dbs }, (_, i) => `  - { name: web${i + 1}, role: db, ip: 10.0.0.${11 + i} }`),
  ];
  return `${edit(HEAD, '  dns: [10.0.0.1]\n', `  dns: [10.0.0.1]\n${network}`)}nodes:\n${nodes.join('\n')}\n${tail}`;
}

describe('the floating address', () => {
  it('is loaded when given, and two load balancers need it', async () => {
    const yaml = layout(2, 3, '  vip: 10.0.0.9\n');
    const inventory = await ws.load(yaml);
    expect(inventory.network.vip).toBe('10.0.0.9');
    expect(inventory.warnings).toEqual([]);
    await single(layout(2, 3), '^network:', /2 load balancers \(lb1, lb2\) but no network.vip \(hint: add network.vip: a free address inside 10.0.0.0\/24/);
  });

  it('lies inside the network, and is neither the gateway nor any node\'s address', async () => {
    await single(layout(2, 3, '  vip: 10.0.1.9\n'), 'vip: ^10.0.1.9', /network.vip 10.0.1.9 is outside the network 10.0.0.0\/24/);
    await single(layout(2, 3, '  vip: 10.0.0.255\n'), 'vip: ^10.0.0.255', /is the broadcast address/);
    await single(layout(2, 3, '  vip: 10.0.0.1\n'), 'vip: ^10.0.0.1\n', /network.vip 10.0.0.1 is the gateway/);
    const taken = layout(2, 3, '  vip: 10.0.0.12\n');
    const problem = await single(taken, 'vip: ^10.0.0.12', /network.vip 10.0.0.12 is the address of node web2 \(line \d+\)/);
    expect(problem).toContain(`line ${locate(taken, '{ name: web2, role: db, ip: ^10.0.0.12').split(':')[0]}`);
    await single(layout(2, 3, '  vip: 10.0.0.9x\n'), '^10.0.0.9x', /network.vip: "10.0.0.9x" is not a valid IPv4 address/);
  });
});

describe('etcd members', () => {
  it('default to the first three database nodes, or the first when there are fewer', async () => {
    const members = async (dbs: number) => (await ws.load(layout(1, dbs))).roles.etcd.members;
    expect(await members(1)).toEqual(['web1']);
    expect(await members(2)).toEqual(['web1']);
    expect(await members(3)).toEqual(['web1', 'web2', 'web3']);
    expect(await members(6)).toEqual(['web1', 'web2', 'web3']);
  });

  it('may be listed: an odd number of database nodes, each once', async () => {
    const roles = (members: string) => `roles:\n  etcd:\n    members: ${members}\n`;
    const five = await ws.load(layout(2, 6, '  vip: 10.0.0.9\n', roles('[web2, web3, web4, web5, web6]')));
    expect(five.roles.etcd.members).toEqual(['web2', 'web3', 'web4', 'web5', 'web6']);
    await single(layout(2, 4, '  vip: 10.0.0.9\n', roles('[web1, web2, web3, web4]')), '    ^members:',
      /roles.etcd.members has 4 members, an even number \(hint: 4 members tolerate 1 failure, no more than 3 would; list 3 or 5\)/);
    await single(layout(2, 3, '  vip: 10.0.0.9\n', roles('[web1, lb1, web3]')), 'web1, ^lb1', /roles.etcd.members: lb1 is not a database node \(hint: .*web1, web2, web3\)/);
    await single(layout(2, 3, '  vip: 10.0.0.9\n', roles('[web1, web9, web3]')), 'web1, ^web9', /roles.etcd.members: web9 is not a node with a known role/);
    await single(layout(2, 3, '  vip: 10.0.0.9\n', roles('[web1, web2, web1]')), 'web2, ^web1', /roles.etcd.members lists web1 twice/);
    await single(layout(2, 9, '  vip: 10.0.0.9\n', roles(`[${Array.from({ length: 9 }, (_, i) => `web${i + 1}`).join(', ')}]`)), '    ^members:',
      /roles.etcd.members has 9 members \(hint: every write waits for a majority of them; use 3 or 5/);
  });
});

describe('Patroni and the ports', () => {
  it('keeps Patroni\'s rule loop_wait + 2 × retry_timeout ≤ ttl', async () => {
    const inventory = await ws.load(layout(2, 3, '  vip: 10.0.0.9\n', 'roles:\n  patroni: { ttl: 30, loop_wait: 10, retry_timeout: 10, synchronous_mode: false }\n'));
    expect(inventory.roles.patroni).toEqual({ ttl: 30, loopWait: 10, retryTimeout: 10, synchronousMode: false, failsafeMode: true, restPort: 8008 });
    await single(layout(2, 3, '  vip: 10.0.0.9\n', 'roles:\n  patroni: { ttl: 12, retry_timeout: 6 }\n'), 'ttl: ^12',
      /Patroni needs loop_wait \+ 2 × retry_timeout ≤ ttl, but 2 \+ 2 × 6 = 14 > 12 \(hint: raise roles.patroni.ttl to 14/);
    await single(layout(2, 3, '  vip: 10.0.0.9\n', 'roles:\n  patroni: { retry_timeout: 6 }\n'), 'retry_timeout: ^6',
      /2 \+ 2 × 6 = 14 > 10 \(the default ttl on bookworm\)/);
    await single(layout(2, 3, '  vip: 10.0.0.9\n', 'roles:\n  patroni: { retry_timeout: 2 }\n'), 'retry_timeout: ^2 }', /roles.patroni.retry_timeout must be between 3 and 600/);
  });

  it('gives Patroni, etcd and HAProxy\'s monitor their own ports', async () => {
    await single(layout(2, 3, '  vip: 10.0.0.9\n', 'roles:\n  patroni: { rest_port: 2379 }\n'), 'rest_port: ^2379', /roles.patroni.rest_port 2379 is already used by roles.etcd.client_port \(its default\)/);
    await single(layout(2, 3, '  vip: 10.0.0.9\n', 'roles:\n  lb: { monitor_port: 5000 }\n'), 'monitor_port: ^5000', /roles.lb.monitor_port 5000 is already used by roles.lb.pg_write_port/);
  });

  it('a node that is load balancer and web node needs nginx off port 80 (HAProxy has it)', async () => {
    const three = `${HEAD}nodes:\n${[1, 2, 3].map((i) => `  - { name: pi${i}, role: allinone, ip: 10.0.0.1${i} }`).join('\n')}\n`;
    const withVip = edit(three, '  dns: [10.0.0.1]\n', '  dns: [10.0.0.1]\n  vip: 10.0.0.9\n');
    await single(withVip, '{ name: pi1, role: ^allinone', /node pi1 runs HAProxy and nginx, which would both listen on port 80 \(hint: set roles.web.port/);
    const inventory = await ws.load(`${withVip}roles:\n  web: { port: 8080 }\n`);
    expect(inventory.roles.etcd.members).toEqual(['pi1', 'pi2', 'pi3']);
    expect(inventory.warnings).toEqual([]); // three Pis, no single point of failure left
  });
});

describe('warnings', () => {
  it('name each single point of failure in one line, at the node', async () => {
    const yaml = layout(1, 1);
    const warnings = await ws.warnings(yaml);
    const at = (name: string) => locate(yaml, `{ name: ^${name}, `);
    expect(warnings).toEqual([
      `${at('lb1')}: single point of failure: lb1 is the only load balancer; when it fails, clients lose the web site and the database ports (hint: add a second node with a load-balancer role and set network.vip)`,
      `${at('web1')}: single point of failure: web1 is the only database node; when it fails, the database is down until it is back (hint: add two more database nodes: Patroni fails over between them and etcd needs three members)`,
      `${at('web1')}: single point of failure: web1 is the only web node; when it fails, the web site is down (hint: add a second node with a web role)`,
    ]);
    const two = layout(2, 2, '  vip: 10.0.0.9\n');
    expect(await ws.warnings(two)).toEqual([
      `${locate(two, '{ name: ^web1, ')}: single point of failure: etcd runs on web1 only; when it fails, Patroni cannot elect a primary and writes stop (hint: give etcd three members (roles.etcd.members, three database nodes))`,
    ]);
    expect(await ws.warnings(layout(2, 3, '  vip: 10.0.0.9\n'))).toEqual([]);
  });

  it('say what an old role name is now, and the inventory still loads', async () => {
    const warnings = await ws.warnings(VALID); // lb1, web1 primary, web2 and web3 replica
    const old = warnings.filter((w) => w.includes('is now the same as "db"'));
    expect(old).toHaveLength(3);
    expect(old[0]).toBe(`${locate(VALID, 'web1, role: ^primary')}: node web1: role "primary" is now the same as "db" (Patroni decides at run time which database node is the primary) (hint: write role: db; a cluster built before Patroni needs its data moved once (docs/operator-guide.md, "Moving to Patroni"))`);
    expect(warnings.some((w) => w.includes('lb1 is the only load balancer'))).toBe(true);
  });
});
