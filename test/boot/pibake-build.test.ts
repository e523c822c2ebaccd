/**
 * Proof on real parts, end to end: `pibake build` bakes lb1 (HAProxy) and web1 (PostgreSQL primary,
 * nginx and the web app) from the test base, and both images boot together under qemu on one
 * bridge with no route anywhere (test/boot/vm-cluster.ts). pibake wrote every seed; the test only
 * reads the result, and checks what a user would:
 * - web1 serves: `GET http://web1/healthz` answers 200 and a query through the app returns a row;
 * - lb1 serves: its HAProxy reports web1 UP on its statistics page, and HTTP through it answers;
 * - on each node (over ssh, held to the host key pibake baked): first boot finished cleanly
 *   (cloud-init `status: done` without errors or recoverable errors, where the base uses
 *   cloud-init), the static address applied (by NetworkManager where the base has it), the role's
 *   services active, no failed unit, no error in the journal from pibake's units.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRaspiosImage } from '../../builder/image/raspios.ts';
import { serverRow } from '../helpers/haproxy-stats.ts';
import { ensureTestBase } from './test-base.ts';
import { VmCluster, buildTestCluster, type BuiltCluster } from './vm-cluster.ts';

const arch = process.env.PIBAKE_BOOT_ARCH === 'arm64' ? 'arm64' : 'amd64';
const SERVING_TIMEOUT_MS = Number(process.env.PIBAKE_VM_SERVING_TIMEOUT_S ?? 45 * 60) * 1000;
let dir: string;
let base: string;
let built: BuiltCluster;
let cluster: VmCluster | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pibake-boot-build-'));
  base = await ensureTestBase(arch);
});
afterAll(async () => {
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('pibake-built node images', () => {
  it('boot and serve: web1 answers through its app, lb1 reports it UP', async () => {
    // The base has cloud-init and 99_raspberry-pi.cfg: pibake must give it cloud-init seeds.
    const generation = (await openRaspiosImage(base)).generation;
    built = await buildTestCluster(dir, base, 'boottest', [
      { name: 'lb1', role: 'lb', ip: '10.0.0.10' },
      { name: 'web1', role: 'primary', ip: '10.0.0.11' },
    ]);
    expect(generation, 'the first-boot kind pibake picks for the base').toBe(built.base.cloudInit ? 'trixie' : 'bookworm');
    cluster = await VmCluster.boot(built, ['lb1', 'web1'], { arch, logPrefix: 'pibake-build' });
    const serving = await cluster.waitUntilServing(SERVING_TIMEOUT_MS);
    console.log(`pibake-built lb1 + web1 on ${built.base.suite}/${arch}: ${Object.entries(serving.nodes)
      .map(([name, t]) => `${name} serving ${t.servingSeconds.toFixed(0)} s after qemu started` +
        (t.cloudInitSeconds === undefined ? '' : ` (cloud-init finished at ${t.cloudInitSeconds.toFixed(0)} s)`)).join(', ')}`);

    // What waitUntilServing waited for, asserted once more so the test says it in its own words.
    const web1 = cluster.node('web1').ip;
    expect((await cluster.http(`http://${web1}/healthz`)).status).toBe(200);
    const status = await cluster.http(`http://${web1}/status`);
    expect(status.status).toBe(200);
    expect((JSON.parse(status.body) as { row?: { message?: string } }).row?.message).toMatch(/written on the primary web1/);
    expect(serverRow(await cluster.haproxyStats('lb1'), 'web', 'web1').status).toBe('UP');
    expect(VmCluster.pageNode((await cluster.http(`http://${cluster.node('lb1').ip}/`)).body)).toBe('web1');
  });

  it('come up as their inventory entries describe', async () => {
    expect(cluster, 'the nodes booted').toBeDefined();
    expect(await (cluster as VmCluster).checkNodes()).toEqual({ lb1: [], web1: [] });
  });
});
