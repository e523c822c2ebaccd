/**
 * Proof on real parts, end to end: `pibake build` bakes lb1 (HAProxy) and web1 (the PostgreSQL
 * primary with nginx and the web app) from the test base, shaped like Raspberry Pi OS Lite and
 * without the role packages, carrying them on the card (the default).
 *
 * Before booting, the built images are judged without booting: e2fsck, fsck.vfat and sfdisk,
 * debugfs read-back of the carried repository against the cache. web1's packages do not fit the
 * test base's root filesystem, so its image was grown (the boot then proves the grown image too).
 *
 * Then both cards boot together under qemu on one bridge with no route anywhere — no mirror, no
 * internet (test/boot/vm-cluster.ts) — and must come up with their role installed from the card.
 * Checked as a user would, from a client on the bridge:
 * - web1 serves: `GET http://web1/healthz` answers 200 and a query through the app returns a row;
 * - lb1 serves: its HAProxy reports web1 UP on its statistics page, and HTTP through it answers;
 * - on each node (over ssh, held to the host key pibake baked): HAProxy / PostgreSQL / nginx of the
 *   base's Debian release, pibake-firstboot done, cloud-init `status: done` with no errors and no
 *   recoverable errors (trixie), the static address NetworkManager's, every role service active,
 *   no failed unit, no error of pibake's units in the journal;
 * - `pibake status` from the client (the build's known_hosts, the schema-valid --json): healthy,
 *   with Patroni's primary, etcd healthy and lb1 holding the floating address; then, with web1's
 *   nginx stopped, exactly what is wrong (exit 2: the only web server is gone).
 *
 * Runs on the trixie and the bookworm test base (PIBAKE_BOOT_SUITES picks).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRaspiosImage } from '../../builder/image/raspios.ts';
import type { StatusReport } from '../../builder/status/types.ts';
import { serverRow } from '../helpers/haproxy-stats.ts';
import { debugfs, debugfsCat, expectCleanImage, sfdiskJson } from '../helpers/image.ts';
import { ssh } from '../helpers/qemu.ts';
import { waitFor } from '../helpers/wait.ts';
import { ROLE_PACKAGES, bootSuites, ensureTestBase, type Suite } from './test-base.ts';
import { VmCluster, buildTestCluster, type BuiltCluster } from './vm-cluster.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const validateStatus = new Ajv2020({ strict: true, allErrors: true }).addFormat('date-time', true)
  .compile(JSON.parse(readFileSync(join(ROOT, 'schema/status.schema.json'), 'utf8')) as object);
const arch = process.env.PIBAKE_BOOT_ARCH === 'arm64' ? 'arm64' : 'amd64';
const SERVING_TIMEOUT_MS = Number(process.env.PIBAKE_VM_SERVING_TIMEOUT_S ?? 40 * 60) * 1000;
let dir: string;
const bases = new Map<Suite, string>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pibake-boot-build-'));
  // Built (minutes) or found in the cache before the tests' own clocks start.
  for (const suite of bootSuites()) bases.set(suite, await ensureTestBase(arch, suite));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.each(bootSuites())('pibake-built lb1 and web1 on the %s test base, booted offline together', (suite) => {
  let built: BuiltCluster | undefined;
  let cluster: VmCluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('are clean images that carry their role packages', async () => {
    const base = bases.get(suite) as string;
    const work = join(dir, suite);
    await mkdir(work, { recursive: true });
    built = await buildTestCluster(work, base, 'boottest', [
      { name: 'lb1', role: 'lb', ip: '10.0.0.10' },
      { name: 'web1', role: 'db', ip: '10.0.0.11' },
    ]);
    console.log(`${suite}: pibake build of lb1 and web1 in ${built.buildSeconds.toFixed(0)} s\n` +
      built.buildLog.split('\n').filter((l) => /carrying|warning/.test(l)).join('\n'));
    // pibake picks the first boot by what the base has (cloud-init and 99_raspberry-pi.cfg).
    expect((await openRaspiosImage(base)).generation).toBe(suite);
    expect(built.base.cloudInit).toBe(suite === 'trixie');

    const manifest = JSON.parse(await readFile(join(built.out, 'manifest.json'), 'utf8')) as { nodes: Record<string, { files: Record<string, string> }> };
    for (const node of ['lb1', 'web1']) {
      const image = join(built.out, `${node}.img`);
      // The images themselves, judged by tools that share no code with pibake.
      await expectCleanImage(image);
      const root = (await sfdiskJson(image)).partitions[1]!;
      expect((root.start + root.size) * 512, `${node}: the root partition ends where the image ends (first-boot resize)`)
        .toBe((await openRaspiosImage(image)).layout.sizeBytes);
      // Every carried .deb is in the image, byte for byte the file apt verified against the archive.
      const offset = root.start * 512;
      const carried = Object.entries(manifest.nodes[node]!.files).filter(([k]) => k.startsWith('carry:') && k.endsWith('.deb'));
      expect(carried.length, `${node} carries .debs`).toBeGreaterThan(0);
      const index = (await debugfsCat(image, offset, '/var/lib/pibake/packages/Packages')).toString('utf8');
      const listing = await debugfs(image, offset, 'ls -p /var/lib/pibake/packages');
      for (const [, sha] of carried) {
        const stanza = index.split('\n\n').find((st) => st.includes(`\nSHA256: ${sha}\n`) || st.endsWith(`\nSHA256: ${sha}`));
        const name = /^Filename: \.\/(.+)$/m.exec(stanza ?? '')?.[1];
        expect(name, `${node}: an index record for ${sha}`).toBeDefined();
        expect(listing, `${node}: ${name}`).toContain(`/${name}/`);
        const data = await debugfsCat(image, offset, `/var/lib/pibake/packages/${name}`);
        expect(createHash('sha256').update(data).digest('hex'), `${node}: ${name} read back`).toBe(sha);
      }
    }
  });

  it('boot offline and serve: web1 answers through its app, lb1 reports it UP', async () => {
    expect(built, 'the images were built').toBeDefined();
    cluster = await VmCluster.boot(built as BuiltCluster, ['lb1', 'web1'], { arch, logPrefix: `${suite}-pibake-build` });
    const serving = await cluster.waitUntilServing(SERVING_TIMEOUT_MS);
    console.log(`${suite}: lb1 + web1 from qemu start: ${Object.entries(serving.nodes).map(([name, t]) =>
      `${name} first boot done ${t.firstBootSeconds?.toFixed(0) ?? '?'} s, serving ${t.servingSeconds.toFixed(0)} s`).join('; ')}`);

    // What waitUntilServing waited for, asserted once more so the test says it in its own words.
    const web1 = cluster.node('web1').ip;
    expect((await cluster.http(`http://${web1}/healthz`)).status).toBe(200);
    const status = await cluster.http(`http://${web1}/status`);
    expect(status.status).toBe(200);
    expect((JSON.parse(status.body) as { row?: { message?: string } }).row?.message).toMatch(/the first primary was web1/);
    expect(serverRow(await cluster.haproxyStats('lb1'), 'web', 'web1').status).toBe('UP');
    expect(VmCluster.pageNode((await cluster.http(`http://${cluster.node('lb1').ip}/`)).body)).toBe('web1');
  });

  it('come up as their inventory entries describe, roles installed from the card', async () => {
    expect(cluster, 'the nodes booted').toBeDefined();
    expect(await (cluster as VmCluster).checkNodes(ROLE_PACKAGES[suite])).toEqual({ lb1: [], web1: [] });
  });

  it('pibake status from the client reads the real systemd, cloud-init, Patroni, etcd, HAProxy and keepalived', async () => {
    expect(cluster, 'the nodes booted').toBeDefined();
    const c = cluster as VmCluster;
    const b = built as BuiltCluster;
    // The run's key is listed under admin.ssh_keys (not generated): status leaves it to ssh, as it
    // would an operator's own key; known_hosts is still the build's.
    const sshConfig = join(dir, suite, 'status_ssh_config');
    await writeFile(sshConfig, `Host *\n  IdentityFile ${b.keyFile}\n`);
    const status = async (json: boolean) => {
      const r = await execa('ip', ['netns', 'exec', c.clientNs, process.execPath, join(ROOT, 'bin/pibake.js'), 'status', '--config', b.config,
        '--out', dirname(b.out), '--ssh-config', sshConfig, '--timeout', '60', ...(json ? ['--json'] : [])], { reject: false, env: { NO_COLOR: '1' } });
      if (!json) console.log(`${suite}: pibake status\n${r.stdout}${r.stderr}`);
      return r;
    };
    const healthy = await status(true);
    expect(healthy.stderr).toBe('');
    const report = JSON.parse(healthy.stdout) as StatusReport;
    expect(validateStatus(report), JSON.stringify(validateStatus.errors)).toBe(true);
    expect(report.verdict.findings).toEqual([]);
    expect(healthy.exitCode).toBe(0);
    const node = (name: string) => report.nodes.find((n) => n.name === name);
    for (const name of ['lb1', 'web1']) {
      expect(node(name)).toMatchObject({ reachable: true, hostname: name, systemState: 'running', failedUnits: [], card: { state: 'current' }, cloudInit: { status: 'done' } });
      expect(node(name)?.units.filter((u) => u.kind === 'service').map((u) => u.active)).toEqual(node(name)?.role === 'lb' ? ['active', 'active'] : ['active', 'active', 'active', 'active']);
    }
    expect(node('web1')).toMatchObject({ postgresql: { answering: true, role: 'primary' }, patroni: { answering: true, state: 'running', role: 'primary' }, etcd: { answering: true, healthy: true } });
    expect(node('lb1')).toMatchObject({ holdsVip: true, haproxy: { answering: true } });
    await status(false);

    // systemd's own word for a stopped service; with the only web server gone the site is down.
    await ssh(c.sshTarget('web1'), 'sudo -n systemctl stop nginx.service');
    await waitFor('lb1 marks web1 DOWN', 60_000, async () => (serverRow(await c.haproxyStats('lb1'), 'web', 'web1').status?.startsWith('DOWN') ? true : undefined), 1_000);
    const stopped = await status(true);
    expect((JSON.parse(stopped.stdout) as StatusReport).verdict.findings.map((f) => f.message)).toEqual([
      'lb1: HAProxy backend web has no server UP', 'lb1: HAProxy marks web1 DOWN (web)', 'web1: nginx.service inactive',
    ]);
    expect(stopped.exitCode).toBe(2);
  });
});
