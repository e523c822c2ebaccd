/**
 * `--packages online`, the source unreachable at first boot and reachable later: pibake-firstboot
 * keeps trying with backoff and brings the role up by itself — nobody re-runs cloud-init.
 *
 * The VM reaches nothing but one address, 10.0.0.200:3142, which qemu connects to an HTTP proxy
 * this test runs. The proxy answers 503 at first (the archive "unreachable"); once the card has
 * failed twice (PIBAKE_ONLINE_FAILURES; 0 opens it from the start, to time a plain online first
 * boot) it forwards to the Debian archive. The card is told about the proxy with an apt
 * configuration file the test adds to the built image (on a real network, routing and DNS take
 * that part).
 */
import { execa } from 'execa';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request, createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInventory } from '../../builder/inventory/load.ts';
import { loadRoles } from '../../builder/render/roles.ts';
import { freePort } from '../helpers/qemu.ts';
import { partitionOffsets } from '../helpers/image.ts';
import { bootAndCheck, expectationsFor } from './boot-and-check.ts';
import { buildBootCluster } from './boot-cluster.ts';
import { consoleLogPath, ensureTestBase } from './test-base.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FAILURES = Number(process.env.PIBAKE_ONLINE_FAILURES ?? 2);
let dir: string;
let base: string;
let proxy: Server | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pibake-boot-online-'));
  base = await ensureTestBase('amd64', 'trixie');
});
afterAll(async () => {
  if (proxy) {
    proxy.closeAllConnections();
    proxy.close();
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A forward proxy for apt: 503 while closed, the real archive once open. */
async function archiveProxy(port: number): Promise<{ open: () => void; refused: () => number; forwarded: () => number }> {
  let isOpen = false;
  let refused = 0;
  let forwarded = 0;
  proxy = createServer((req, res) => {
    if (!isOpen || !req.url?.startsWith('http://deb.debian.org/')) {
      refused++;
      res.writeHead(503);
      res.end();
      return;
    }
    forwarded++;
    const upstream = request(req.url, { method: req.method, headers: { ...req.headers, host: 'deb.debian.org' } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  proxy.listen(port, '127.0.0.1');
  await once(proxy, 'listening');
  return { open: () => { isOpen = true; }, refused: () => refused, forwarded: () => forwarded };
}

describe('pibake-firstboot with --packages online and an archive that answers late', () => {
  it('retries with backoff until the source answers, then brings the role up by itself', async () => {
    const keyFile = join(dir, 'admin_ed25519');
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pibake-boot-test', '-f', keyFile]);
    const { config, out } = await buildBootCluster(dir, base, keyFile, ['--packages', 'online', '--node', 'lb1']);
    const image = join(out, 'boottest', 'lb1.img');

    // The card's way to the archive: an apt proxy at 10.0.0.200:3142 (the only address it can reach).
    const conf = join(dir, '99pibake-test-proxy');
    await writeFile(conf, 'Acquire::http::Proxy "http://10.0.0.200:3142";\n');
    const commands = join(dir, 'debugfs-commands');
    await writeFile(commands, ['cd /etc/apt/apt.conf.d', `write ${conf} 99pibake-test-proxy`,
      'sif 99pibake-test-proxy uid 0', 'sif 99pibake-test-proxy gid 0', 'sif 99pibake-test-proxy mode 0100644', ''].join('\n'));
    const { root } = await partitionOffsets(image);
    await execa('debugfs', ['-w', '-f', commands, `${image}?offset=${root}`]);

    const hostPort = await freePort();
    const archive = await archiveProxy(hostPort);
    const consoleLog = consoleLogPath('online-retry-lb1') ?? join(dir, 'console.log');
    await mkdir(dirname(consoleLog), { recursive: true });
    // qemu appends to the console log; a kept log of an earlier run must not open the archive early.
    await writeFile(consoleLog, '');
    // Open the archive once the card has failed FAILURES times.
    let opened = FAILURES === 0;
    if (opened) archive.open();
    const watcher = (async () => {
      for (let i = 0; i < 3600 && !opened; i++) {
        const text = await readFile(consoleLog, 'utf8').catch(() => '');
        // Whatever the lb role installs (haproxy, keepalived...): the attempt count is what matters.
        if (new RegExp(`pibake-firstboot: waiting: installing [^\\n]* failed \\(attempt ${FAILURES}\\)`).test(text)) {
          archive.open();
          opened = true;
        }
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    })();

    const roles = await loadRoles(join(ROOT, 'roles'));
    const inventory = await loadInventory(config, roles);
    const services = (roles.get('lb')?.services ?? []).map((s) => s.replace(/\.service$/, ''));
    const expected = expectationsFor(inventory, 'lb1', { keyFile, services, packages: [{ name: 'haproxy', version: /^3\.0\./ }] });
    try {
      const report = await bootAndCheck(image, expected, {
        bootTimeoutMs: 30 * 60_000,
        allowRetries: true,
        vm: { guestForwards: [{ guestIp: '10.0.0.200', guestPort: 3142, hostPort }], consoleLog },
      });
      console.log(`online, archive late: pibake-firstboot done ${report.cloudInitSeconds.toFixed(0)} s after qemu started; ` +
        `${archive.refused()} requests refused, ${archive.forwarded()} forwarded`);
    } finally {
      opened = true;
      await watcher;
    }
    expect(archive.forwarded()).toBeGreaterThan(0);
    const console_ = await readFile(consoleLog, 'utf8');
    expect(console_).toMatch(/pibake-firstboot: done: role set up, starting: haproxy.service/);
    if (FAILURES > 0) {
      expect(archive.refused()).toBeGreaterThan(0);
      // The backoff: 15 s after the first failure, 30 s after the second.
      expect(console_).toMatch(/pibake-firstboot: waiting: installing haproxy[^\n]* failed \(attempt 1\); next try in 15s/);
      expect(console_).toMatch(/pibake-firstboot: waiting: installing haproxy[^\n]* failed \(attempt 2\); next try in 30s/);
    }
  });
});
