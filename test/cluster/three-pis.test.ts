/**
 * The smallest layout without a single point of failure: three Pis, each with every role
 * (roles/allinone.yaml: HAProxy + keepalived, nginx + the app on port 8080, Patroni + etcd). Built,
 * extracted and brought up like the 5-node cluster test (same harness), then the worst single
 * failure of this layout: the Pi holding both the floating address and the primary loses its cable.
 *
 * Opt-in (about 90 s more): PIBAKE_CLUSTER_THREE=1 npm run test:cluster. Figures in docs/cluster-test.md.
 */
import { rmSync } from 'node:fs';
import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerCleanup, type NetnsLab } from '../helpers/netns.ts';
import { Figures, TARGET, against } from './figures.ts';
import { Daemons, sleep } from './harness.ts';
import { Cluster, buildAndExtract, labFor, requireTools, seconds, tearDown } from './ha-harness.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RUN = process.env.PIBAKE_CLUSTER_THREE === '1';
const NS_PREFIX = `${process.env.PIBAKE_NETNS_PREFIX ?? 'pibakecl'}3`;
const KEEP = process.env.PIBAKE_CLUSTER_KEEP === '1';

const INVENTORY = `cluster: { name: pitrio, domain: pitrio.lan }
network: { cidr: 10.0.0.0/24, gateway: 10.0.0.1, vip: 10.0.0.9 }
base: { path: ./given-on-the-command-line.img }
admin: { user: pi }
nodes:
  - { name: pi1, role: allinone, ip: 10.0.0.11 }
  - { name: pi2, role: allinone, ip: 10.0.0.12 }
  - { name: pi3, role: allinone, ip: 10.0.0.13 }
roles:
  web: { port: 8080 }   # HAProxy has port 80 on every Pi
`;

let tmp: string;
let lab: NetnsLab;
let cluster: Cluster;
const figures = new Figures();
const figure = figures.add;
const started = Date.now();

describe.skipIf(!RUN)('three Pis with every role (allinone)', () => {
  beforeAll(async () => {
    await requireTools();
    tmp = await mkdtemp(path.join(tmpdir(), 'pibake-three-'));
    await chmod(tmp, 0o755);
    const scratch = tmp;
    if (!KEEP) registerCleanup(() => rmSync(scratch, { recursive: true, force: true }));
    const built = await buildAndExtract(tmp, INVENTORY, repo);
    expect(built.output).not.toMatch(/^warning:/m); // three Pis: no single point of failure left
    figure('0 build', 'pibake build of 3 images (400 MiB base)', seconds(built.buildMs));
    lab = await labFor(built.nodes, NS_PREFIX, '10.0.0.250');
    cluster = new Cluster(lab, new Daemons(lab, tmp), built.nodes, built.bin, built.secrets, 'client');
  }, 300_000);

  afterAll(async () => {
    await tearDown({ cluster, lab, tmp, keep: KEEP }, () => {
      figure('total', 'wall time of the file', seconds(Date.now() - started));
      console.log(figures.table('pibake three-Pi test figures', KEEP ? `kept: ${tmp}` : ''));
    });
  }, 60_000);

  it('1. bring-up: every Pi runs etcd, Patroni, nginx + app, HAProxy and keepalived', async () => {
    expect(cluster.lbs.map((n) => n.name)).toEqual(['pi1', 'pi2', 'pi3']);
    expect(cluster.dbs.map((n) => n.name)).toEqual(['pi1', 'pi2', 'pi3']);
    await cluster.bringUp((metric, value) => figure('1 bring-up', metric, value));
    const r = await cluster.wrk(8);
    figures.wrk('2 steady load', r);
    expect(r.non2xx + Object.values(r.socketErrors).reduce((a, b) => a + b, 0)).toBe(0);
  }, 300_000);

  it('2. the Pi holding the address and the primary loses its cable: the address and the primary move, no acknowledged write is lost', async () => {
    // Put the primary where the address is: the worst case of this layout.
    const [holderName] = await cluster.vipHolders();
    const holder = cluster.node(holderName ?? '');
    const leader = await cluster.waitLeader(30_000);
    if (leader !== holder) {
      // In synchronous mode only the sync standby may take over: switch over asynchronously.
      await cluster.setDynamicConfig(leader, { synchronous_mode: false });
      await cluster.switchover(leader, holder);
      await cluster.setDynamicConfig(holder, { synchronous_mode: true });
    }
    await cluster.waitSync(holder, 60_000);
    const label = `three-${process.pid}`;
    const writer = cluster.startWriter(label);
    const probe = cluster.probe(`http://${cluster.vip}/`, 25, 1);
    await sleep(3_000);
    const event = Date.now();
    await lab.setCable(holder.name, 'down');
    const { to, ms } = await cluster.waitVipMoved(holder, 30_000);
    figure('3 address + primary cable pulled', `event → the address only on ${to.name}`, against(ms, TARGET.vipMs));
    const newLeader = await cluster.waitLeader(90_000, holder);
    figure('3 address + primary cable pulled', `event → ${newLeader.name} answers /primary`, seconds(Date.now() - event));
    await sleep(3_000);
    const records = await writer.stop();
    figures.probe('3 address + primary cable pulled', await probe, event);
    const t0 = Date.now();
    await lab.setCable(holder.name, 'up');
    await cluster.waitStreaming(newLeader, 120_000);
    figure('3 address + primary cable pulled', `${holder.name} back → streaming from ${newLeader.name}`, seconds(Date.now() - t0));
    expect(figures.writes('3 address + primary cable pulled', records, event, await cluster.rowsOf(newLeader, label))).toBe(0);
    for (const n of cluster.dbs) figure('4 memory (RSS)', n.name, cluster.agentMemory(n));
  }, 300_000);
});
