/**
 * `pibake status` against a node that really booted: web1 (PostgreSQL primary, nginx, the app)
 * built by `pibake build` from the test base and booted under qemu, where systemd, cloud-init,
 * sudo and Debian's psql are the real ones (the namespace test stands in for systemd). status
 * reaches it through qemu's ssh forward on 127.0.0.1 with an --ssh-config, and still holds its host
 * key to the build's known_hosts under the node's name.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../builder/status/types.ts';
import { QemuVm, ssh, waitForSsh, type SshTarget } from '../helpers/qemu.ts';
import { consoleLogPath, ensureTestBase } from './test-base.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const validate = new Ajv2020({ strict: true, allErrors: true }).addFormat('date-time', true)
  .compile(JSON.parse(readFileSync(join(ROOT, 'schema/status.schema.json'), 'utf8')) as object);
let dir: string;
let vm: QemuVm | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pibake-boot-status-'));
});
afterAll(async () => {
  await vm?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('pibake status against a booted node', () => {
  it('reads the real systemd, cloud-init, sudo and PostgreSQL of web1, and sees a service stopped', async () => {
    const base = await ensureTestBase('amd64');
    const config = join(dir, 'cluster.yaml');
    await writeFile(config, [
      'cluster: { name: boottest, domain: boottest.internal }',
      'network: { cidr: 10.0.0.0/24, gateway: 10.0.0.1, dns: [10.0.0.1] }',
      `base: { path: ${JSON.stringify(base)} }`,
      // The generated cluster admin key (boottest-admin beside this file) is what status uses.
      'admin: { user: admin, generate_ssh_key: true }',
      'locale: { timezone: Europe/London, locale: en_GB.UTF-8, keyboard: gb }',
      'roles: { postgresql: { version: 15 } }', // the test base is Debian bookworm
      'nodes:',
      '  - { name: lb1, role: lb, ip: 10.0.0.10 }',
      '  - { name: web1, role: primary, ip: 10.0.0.11 }',
      '',
    ].join('\n'));
    const out = join(dir, 'output');
    await execa('node', [join(ROOT, 'bin/pibake.js'), 'build', '--config', config, '--base', base, '--out', out,
      '--node', 'web1', '--node', 'lb1', '--cache-dir', join(dir, 'cache')], { cwd: dir, stdin: 'ignore', stderr: 'inherit' });

    vm = await QemuVm.boot({
      image: join(out, 'boottest', 'web1.img'), network: { cidr: '10.0.0.0/24', gateway: '10.0.0.1', guestIp: '10.0.0.11' },
      consoleLog: consoleLogPath('status-web1'),
    });
    const t0 = Date.now();
    await vm.waitForConsole(/Cloud-init v\. \S+ finished/, 10 * 60_000);
    const target: SshTarget = { port: vm.sshPort, user: 'admin', keyFile: join(dir, 'boottest-admin') };
    await waitForSsh(target, 120_000);
    console.log(`web1 booted: cloud-init finished ${((Date.now() - t0) / 1000).toFixed(0)} s after the wait began`);

    // The node address goes to qemu's forward; the host key is still checked as web1's.
    const sshConfig = join(dir, 'ssh_config');
    await writeFile(sshConfig, `Host 10.0.0.11\n  HostName 127.0.0.1\n  Port ${vm.sshPort}\n`);
    const status = async (json: boolean) => {
      const r = await execa('node', [join(ROOT, 'bin/pibake.js'), 'status', '--config', config, '--out', out, '--node', 'web1',
        '--ssh-config', sshConfig, '--timeout', '60', ...(json ? ['--json'] : [])], { reject: false, env: { NO_COLOR: '1' } });
      console.log(r.stdout.length > 2000 ? r.stdout.slice(0, 2000) : r.stdout, r.stderr);
      return r;
    };

    const healthy = await status(true);
    const report = JSON.parse(healthy.stdout) as StatusReport;
    expect(validate(report), JSON.stringify(validate.errors)).toBe(true);
    const web1 = report.nodes[0];
    expect(report.verdict.findings).toEqual([]);
    expect(healthy.exitCode).toBe(0);
    expect(web1).toMatchObject({
      name: 'web1', reachable: true, hostname: 'web1', systemState: 'running', failedUnits: [], addresses: ['10.0.0.11/24'],
      card: { state: 'current', node: 'web1', cluster: 'boottest' }, cloudInit: { status: 'done' },
      postgresql: { answering: true, role: 'primary', timeline: 1, replicas: [] },
    });
    expect(web1?.units.map((u) => `${u.unit} ${u.active}`)).toEqual([
      'nginx.service active', 'postgresql.service active', 'pibake-webapp.service active',
      'pibake-ownership.service active', 'pibake-web-setup.service active', 'pibake-postgresql-setup.service active', 'pibake-primary-setup.service active',
    ]);
    expect(web1?.unitsError).toBeUndefined();

    // systemd's own word for a stopped service.
    await ssh(target, 'sudo -n systemctl stop nginx.service');
    const stopped = await status(false);
    expect(stopped.exitCode).toBe(1);
    expect(stopped.stdout).toMatch(/^web1 +primary +\S+( \S+)? +current +done +nginx inactive +primary, timeline 1$/m);
    expect(stopped.stdout).toMatch(/^degraded: 1 finding \(exit 1\)\n {2}web1: nginx\.service inactive$/m);
  }, 20 * 60_000);
});
