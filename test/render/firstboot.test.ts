/**
 * pibake-firstboot's script, run by bash as rendered, against stand-ins for apt-get, dpkg,
 * dpkg-query and systemctl that record what they were asked (and fail when told to): retry with
 * backoff until the install succeeds, services held during the install, baked files kept, the role
 * set up only afterwards and in order, the state in one status file and the journal.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { firstBootScript, firstBootUnit, type FirstBootPlan } from '../../builder/render/firstboot.ts';

let dir: string;
let root: string;
let bin: string;

const PLAN: FirstBootPlan = {
  node: 'web1',
  packages: ['nginx', 'postgresql'],
  source: 'card',
  services: ['nginx.service', 'postgresql.service'],
  firstboot: ['pibake-ownership.service', 'pibake-web-setup.service'],
};

/** The stand-ins: each appends "tool args" to calls.log; apt-get install fails FAIL_INSTALLS times. */
async function standIns(): Promise<void> {
  const tool = async (name: string, body: string) => {
    await writeFile(path.join(bin, name), `#!/bin/bash\necho "${name} $*" >> "$LOG"\n${body}\n`);
    await chmod(path.join(bin, name), 0o755);
  };
  await tool('apt-get', `
case " $* " in
  *" install "*)
    n=$(cat "$STATE/fails" 2>/dev/null || echo 0)
    # What the package scripts would see: invoke-rc.d asks policy-rc.d, ucf reads UCF_FORCE_CONFFOLD.
    echo "policy=$("$ROOT/usr/sbin/policy-rc.d" nginx start >/dev/null 2>&1; echo $?) ucf=\${UCF_FORCE_CONFFOLD:-} frontend=\${DEBIAN_FRONTEND:-}" >> "$LOG"
    if [ "$n" -gt 0 ]; then echo $((n - 1)) > "$STATE/fails"; echo "E: Unable to fetch some archives" >&2; exit 100; fi
    for p in "$@"; do case $p in -*|install|*=*|*::*) ;; *) echo "$p" >> "$STATE/installed" ;; esac; done ;;
esac
exit 0`);
  await tool('dpkg', 'exit 0');
  await tool('dpkg-query', 'grep -qx "${@: -1}" "$STATE/installed" 2>/dev/null && printf installed; exit 0');
  await tool('systemctl', '[ -e "$STATE/failing-unit" ] && [ "$2" = "$(cat "$STATE/failing-unit")" ] && exit 1; exit 0');
}

async function run(plan: FirstBootPlan, env: Record<string, string> = {}) {
  const script = path.join(dir, 'firstboot.sh');
  await writeFile(script, firstBootScript(plan));
  return execa('bash', [script], {
    reject: false,
    env: {
      PATH: `${bin}:/usr/bin:/bin`, LOG: path.join(dir, 'calls.log'), STATE: path.join(dir, 'state'), ROOT: root,
      PIBAKE_FIRSTBOOT_ROOT: root, PIBAKE_FIRSTBOOT_DELAY: '0', PIBAKE_FIRSTBOOT_CONSOLE: path.join(dir, 'console'), ...env,
    },
  });
}

const calls = async () => (await readFile(path.join(dir, 'calls.log'), 'utf8')).trim().split('\n');
const status = async () => Object.fromEntries((await readFile(path.join(root, 'var/lib/pibake/firstboot.status'), 'utf8'))
  .trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
const exists = (p: string) => stat(p).then(() => true, () => false);

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pibake-firstboot-'));
  root = path.join(dir, 'root');
  bin = path.join(dir, 'bin');
  await mkdir(bin);
  await mkdir(path.join(dir, 'state'));
  await mkdir(path.join(root, 'var/lib/pibake/packages'), { recursive: true });
  await writeFile(path.join(root, 'var/lib/pibake/packages/nginx_1.26.3-3_amd64.deb'), 'deb');
  await writeFile(path.join(root, 'var/lib/pibake/packages/Packages'), 'Package: nginx\n');
  await standIns();
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('pibake-firstboot', () => {
  it('retries a failed install with backoff, holding services, then sets the role up in order', async () => {
    await writeFile(path.join(dir, 'state/fails'), '2');
    const result = await run(PLAN);
    expect(result.exitCode, result.stderr).toBe(0);
    const log = await calls();
    const installs = log.filter((l) => /^apt-get .* install /.test(l));
    expect(installs).toHaveLength(3);
    for (const line of installs) {
      // Only the card's repository; baked conffiles kept; no Recommends.
      expect(line).toContain(`Dir::Etc::SourceList=${root}/run/pibake-firstboot/sources.d/pibake.list`);
      expect(line).toMatch(/--force-confold .*install -y --fix-broken nginx postgresql$/);
      expect(line).toContain('APT::Install-Recommends=false');
    }
    expect(await readFile(path.join(root, 'run/pibake-firstboot/sources.d/pibake.list'), 'utf8')).toBe(`deb [trusted=yes] file:${root}/var/lib/pibake/packages ./\n`);
    // During every install: policy-rc.d said 101 (no service starts), ucf keeps baked files.
    expect(log.filter((l) => l.startsWith('policy='))).toEqual(Array(3).fill('policy=101 ucf=1 frontend=noninteractive'));
    // An interrupted dpkg is finished before every attempt.
    expect(log.filter((l) => l === 'dpkg --configure -a')).toHaveLength(3);
    // The role setup only after the install, in role order.
    const setup = log.slice(log.lastIndexOf(installs[2]!) + 2).filter((l) => l.startsWith('systemctl'));
    expect(setup).toEqual([
      'systemctl daemon-reload',
      'systemctl enable nginx.service postgresql.service',
      'systemctl start pibake-ownership.service',
      'systemctl start pibake-web-setup.service',
      'systemctl restart --no-block nginx.service postgresql.service',
    ]);
    expect(await status()).toMatchObject({ state: 'done', source: 'card', attempt: '2' });
    expect(result.stdout).toMatch(/^<4>pibake-firstboot: waiting: installing nginx postgresql failed \(attempt 1\); next try in 0s$/m);
    expect(result.stdout).toMatch(/^<6>pibake-firstboot: done: role set up, starting: nginx.service postgresql.service$/m);
    expect(result.stdout).not.toMatch(/^<3>/m);
    expect(await readFile(path.join(dir, 'console'), 'utf8')).toMatch(/pibake-firstboot: done/);
    expect(await exists(path.join(root, 'usr/sbin/policy-rc.d'))).toBe(false);
    expect(await exists(path.join(root, 'var/lib/pibake/firstboot.done'))).toBe(true);
    // The carried .debs are gone once installed; the index stays as the record.
    expect(await exists(path.join(root, 'var/lib/pibake/packages/nginx_1.26.3-3_amd64.deb'))).toBe(false);
    expect(await exists(path.join(root, 'var/lib/pibake/packages/Packages'))).toBe(true);
  });

  it('skips the install when a previous run got that far, and keeps a policy-rc.d the image had', async () => {
    await writeFile(path.join(dir, 'state/installed'), 'nginx\npostgresql\n');
    await mkdir(path.join(root, 'usr/sbin'), { recursive: true });
    await writeFile(path.join(root, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    expect((await run(PLAN)).exitCode).toBe(0);
    expect((await calls()).filter((l) => l.startsWith('apt-get'))).toEqual([]);
    expect(await readFile(path.join(root, 'usr/sbin/policy-rc.d'), 'utf8')).toBe('#!/bin/sh\nexit 0\n');
  });

  it('fails visibly when a setup unit fails, so systemd runs it again', async () => {
    await writeFile(path.join(dir, 'state/failing-unit'), 'pibake-web-setup.service');
    const result = await run(PLAN);
    expect(result.exitCode).toBe(1);
    expect(await status()).toMatchObject({ state: 'failed', detail: 'pibake-web-setup.service failed (journalctl -u pibake-web-setup.service); systemd runs the setup again' });
    expect(result.stdout).toMatch(/^<3>pibake-firstboot: failed: pibake-web-setup.service failed/m);
    expect(await exists(path.join(root, 'var/lib/pibake/firstboot.done'))).toBe(false);
    expect((await calls()).filter((l) => l.startsWith('systemctl restart'))).toEqual([]);
  });

  it('online: installs from the image\'s own sources, and leaves nothing carried to delete', async () => {
    await writeFile(path.join(dir, 'state/fails'), '1');
    expect((await run({ ...PLAN, source: 'online' })).exitCode).toBe(0);
    const apt = (await calls()).filter((l) => l.startsWith('apt-get'));
    expect(apt[0]).toBe('apt-get -q update');
    expect(apt.join('\n')).not.toContain('Dir::Etc');
    expect(await status()).toMatchObject({ state: 'done', source: 'online', attempt: '1' });
  });

  it('with nothing to install, only sets the role up', async () => {
    expect((await run({ ...PLAN, packages: [] })).exitCode).toBe(0);
    expect((await calls()).filter((l) => !l.startsWith('systemctl'))).toEqual([]);
  });

  it('is a unit boot never waits for, ordered after cloud-init\'s config stage, done once', () => {
    const unit = firstBootUnit();
    expect(unit).toMatch(/^Type=exec$/m);
    expect(unit).toMatch(/^After=network-online.target cloud-config.service$/m);
    expect(unit).toMatch(/^ConditionPathExists=!\/var\/lib\/pibake\/firstboot.done$/m);
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(/^WantedBy=multi-user.target$/m);
  });
});
