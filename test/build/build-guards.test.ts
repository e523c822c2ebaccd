/**
 * What protects a build's outputs and secrets from concurrency, kills and full disks (issue 11):
 * one build per output folder, locks that die with their process, nothing secret or unfinished
 * left behind, and a full disk named with the folder and the room needed.
 */
import { execa, type ResultPromise } from 'execa';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { smallProject } from '../helpers/build-project.ts';
import { debugfsCat, debugfsStat, mdirBare, mtype, partitionOffsets } from '../helpers/image.ts';

const CLI = path.resolve('bin/pibake.js');
const EPOCH = '1767225600';
let work: string;
let base: string;
let cache: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pibake-guards-'));
  base = path.join(work, 'base.img');
  cache = path.join(work, 'cache');
  await synthesizeRaspiosImage({ path: base, generation: 'trixie', sizeMiB: 160, bootMiB: 64, diskId: '5e3da7a1' });
});
afterAll(() => rm(work, { recursive: true, force: true }));

function build(config: string, out: string, extra: string[] = [], env: Record<string, string> = {}): ResultPromise<{ reject: false }> {
  return execa('node', [CLI, 'build', '--config', config, '--base', base, '--out', out, '--cache-dir', cache, '--packages', 'online', ...extra], {
    reject: false, env: { SOURCE_DATE_EPOCH: EPOCH, ...env },
  });
}

/** The folder passes its own `sha256sum -c SHA256SUMS`, and SHA256SUMS lists exactly the images there. */
async function expectConsistent(dir: string): Promise<void> {
  await execa('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: dir });
  const listed = (await readFile(path.join(dir, 'SHA256SUMS'), 'utf8')).trim().split('\n').map((l) => l.split('  ')[1]).sort();
  const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as { nodes: Record<string, { image: { file: string } }> };
  expect(Object.values(manifest.nodes).map((n) => n.image.file).sort()).toEqual(listed);
  expect((await readdir(dir)).filter((n) => n.endsWith('.img')).sort()).toEqual(listed);
}

describe('one build at a time per output folder', () => {
  it.each([
    ['the same nodes', [], []],
    ['disjoint --node sets', ['--node', 'lb1'], ['--node', 'web1']],
  ])('a second build while the first runs fails at once with one line; the folder stays consistent (%s)', async (_name, a, b) => {
    const config = await smallProject(path.join(work, `twice-${a.length}`));
    const out = path.join(path.dirname(config), 'output');
    const first = build(config, out, ['--json', ...a]);
    const firstPid = first.pid;
    // The reproduction started the second 0.3 s after the first; on a loaded machine the
    // first may not have started by then, so wait until it is planning its nodes (it holds the lock).
    await waitForEvent(first, '"type":"plan"');
    // A one-node build of this small image can finish before a second node process has started;
    // freezing the first (its lock lives on in its flock child) makes the overlap certain.
    first.kill('SIGSTOP');
    const second = await build(config, out, b).finally(() => first.kill('SIGCONT'));
    const done = await first;
    expect(done.exitCode, done.stderr).toBe(0);
    expect(second.exitCode).toBe(1);
    // The small layout's single-point-of-failure warnings come first; then the one error line.
    expect(second.stderr.trim().split('\n').filter((line) => !line.startsWith('warning: '))).toEqual([
      expect.stringMatching(new RegExp(`^error: the output folder ${out}/small is in use by another pibake build: pid ${firstPid} \\(pibake build, since .+\\) \\(hint: wait for that build to finish, or build into another folder with --out\\)$`)),
    ]);
    await expectConsistent(path.join(out, 'small'));
  });

  it('a build killed with SIGKILL leaves no lock: the next one starts at once and succeeds', async () => {
    const config = await smallProject(path.join(work, 'killed'));
    const out = path.join(path.dirname(config), 'output');
    const killed = build(config, out, ['--json']);
    await waitForStage(killed, 'root filesystem');
    killed.kill('SIGKILL');
    await killed;
    const next = await build(config, out);
    expect(next.exitCode, next.stderr).toBe(0);
    await expectConsistent(path.join(out, 'small'));
  });
});

describe('nothing secret or unfinished left behind', () => {
  it('a build killed while writing root filesystems leaves nothing in $TMPDIR; its private staging is swept by the next build', async () => {
    const config = await smallProject(path.join(work, 'secrets'));
    const out = path.join(path.dirname(config), 'output');
    const tmp = path.join(work, 'tmp');
    await execa('mkdir', ['-p', tmp]);
    for (const delay of [0, 40, 120]) {
      const killed = build(config, out, ['--json', '--force'], { TMPDIR: tmp });
      await waitForStage(killed, 'root filesystem');
      await new Promise((resolve) => setTimeout(resolve, delay));
      killed.kill('SIGKILL');
      await killed;
      expect(await pibakeEntries(tmp)).toEqual([]);
      for (const name of (await readdir(path.join(out, 'small'))).filter((n) => n.includes('pibake-stage'))) {
        const folder = path.join(out, 'small', name);
        expect((await stat(folder)).mode & 0o777).toBe(0o700);
        for (const file of await readdir(folder)) expect((await stat(path.join(folder, file))).mode & 0o777).toBe(0o600);
      }
    }
    const next = await build(config, out, [], { TMPDIR: tmp });
    expect(next.exitCode, next.stderr).toBe(0);
    expect((await readdir(path.join(out, 'small'))).filter((n) => n.endsWith('.partial'))).toEqual([]);
    expect(await pibakeEntries(tmp)).toEqual([]);
  });

  it.each(['trixie', 'bookworm'] as const)('the admin password hash is in the root filesystem (0600), never on the boot partition (%s)', async (generation) => {
    const genBase = generation === 'trixie' ? base : path.join(work, 'bookworm.img');
    if (generation === 'bookworm') await synthesizeRaspiosImage({ path: genBase, generation, sizeMiB: 160, bootMiB: 64 });
    const config = await smallProject(path.join(work, `password-${generation}`));
    await writeFile(config, (await readFile(config, 'utf8')).replace('generate_ssh_key: true', 'generate_ssh_key: true, password: generate'));
    const out = path.join(path.dirname(config), 'output');
    const result = await execa('node', [CLI, 'build', '--config', config, '--base', genBase, '--out', out, '--cache-dir', cache, '--packages', 'online', '--node', 'web1'], { reject: false });
    expect(result.exitCode, result.stderr).toBe(0);
    const secrets = await readFile(path.join(path.dirname(config), 'cluster.secrets.yaml'), 'utf8');
    const hash = /password_hash: (\S+)/.exec(secrets)?.[1] ?? '';
    expect(hash).toMatch(/^'?\$y\$j9T\$/);
    const image = path.join(out, 'small', 'web1.img');
    const { boot, root: rootStart } = await partitionOffsets(image);
    for (const file of (await mdirBare(image, boot)).filter((f) => !f.endsWith('/'))) {
      const content = (await mtype(image, boot, file)).toString('latin1');
      expect(content, file).not.toContain(hash.replace(/'/g, ''));
      expect(content, file).not.toContain('$y$');
    }
    expect(await debugfsStat(image, rootStart, '/etc/pibake/admin-password')).toMatchObject({ type: 'regular', mode: '0600', user: 0, group: 0 });
    expect((await debugfsCat(image, rootStart, '/etc/pibake/admin-password')).toString()).toBe(`pi:${hash.replace(/'/g, '')}\n`);
  });

  it('node images and their archives are readable by their owner only (they hold the node\'s secrets)', async () => {
    const config = await smallProject(path.join(work, 'modes'));
    const out = path.join(path.dirname(config), 'output');
    const result = await build(config, out, ['--node', 'web1', '--compress', 'zstd']);
    expect(result.exitCode, result.stderr).toBe(0);
    for (const file of ['web1.img', 'web1.img.zst']) expect((await stat(path.join(out, 'small', file))).mode & 0o777).toBe(0o600);
  });
});

/** What is in a temp folder apart from tsx's compile cache (tsx runs the CLI's TypeScript). */
async function pibakeEntries(tmp: string): Promise<string[]> {
  return (await readdir(tmp)).filter((name) => !name.startsWith('tsx-'));
}

const root = process.getuid?.() === 0;

/**
 * Runs the CLI in a private mount namespace (unshare, as root) with a small tmpfs at `mount`:
 * the disk fills for real, and the mount vanishes with the namespace. Returns the CLI's exit code
 * and stderr, and what was left in the tmpfs afterwards.
 */
async function buildOnSmallDisk(mount: string, sizeMiB: number, args: string[]): Promise<{ code: number; stderr: string; left: string[] }> {
  await execa('mkdir', ['-p', mount]);
  const script = [
    `mount -t tmpfs -o size=${sizeMiB}m pibake-test "$1"`,
    'shift',
    // --json: progress goes to stdout (dropped), so stderr holds only what the user must read.
    'node "$@" --json >/dev/null; echo "exit=$?"',
    'find "$MOUNT" -mindepth 1 -printf "%P\\n"',
  ].join('\n');
  const result = await execa('unshare', ['--mount', '--propagation', 'private', 'bash', '-c', script, 'sh', mount, CLI, ...args], {
    reject: false, env: { SOURCE_DATE_EPOCH: EPOCH, MOUNT: mount },
  });
  const lines = result.stdout.trim().split('\n');
  const exit = lines.findIndex((l) => l.startsWith('exit='));
  return { code: Number(lines[exit]?.slice(5)), stderr: result.stderr.trim(), left: lines.slice(exit + 1).filter(Boolean) };
}

describe.skipIf(!root)('a full disk is named, with the room needed, and leaves nothing behind (root: tmpfs in a private mount namespace)', () => {
  let fat: string;
  beforeAll(async () => {
    fat = path.join(work, 'fat-base.img');
    // 12 MiB of random (incompressible) data: it overflows a small cache, and its image fits a
    // small output folder while its .xz does not.
    await synthesizeRaspiosImage({ path: fat, generation: 'trixie', sizeMiB: 200, bootMiB: 64, fillMiB: 12 });
  });

  it('a full cache folder', async () => {
    const config = await smallProject(path.join(work, 'full-cache'));
    const small = path.join(work, 'small-cache');
    const result = await buildOnSmallDisk(small, 4, ['build', '--config', config, '--base', fat, '--out', path.join(work, 'full-cache', 'output'), '--cache-dir', small, '--packages', 'online']);
    expect(result.code).toBe(1);
    expect(result.stderr.split('\n')).toEqual([expect.stringMatching(new RegExp(
      `^error: the cache folder ${small} is full \\(\\d+(\\.\\d)? \\w+ free\\): unpacking fat-base\\.img needs up to 200 MiB \\(sparse: only its data; [\\d.]+ MiB of the image were unpacked when it filled\\) ` +
      '\\(hint: free space there, or put the cache on a filesystem with room: PIBAKE_CACHE_DIR=/path or --cache-dir /path\\)$'))]);
    expect(result.left.filter((n) => n !== '.pibake.lock')).toEqual([]);
  });

  it('a full output folder in the middle of --compress xz: no partial left', async () => {
    const config = await smallProject(path.join(work, 'full-out'));
    const out = path.join(work, 'small-out');
    const result = await buildOnSmallDisk(out, 20, ['build', '--config', config, '--base', fat, '--node', 'web1', '--out', out, '--cache-dir', cache, '--compress', 'xz', '--jobs', '1', '--packages', 'online']);
    expect(result.code).toBe(1);
    expect(result.stderr.split('\n')).toEqual([expect.stringMatching(new RegExp(
      `^error: the output folder ${out}/small is full \\(.+ free\\): each node image needs about [\\d.]+ MiB \\(the base's data\\), and its archive up to as much again ` +
      '\\(hint: free space there, or build into another folder with --out\\)$'))]);
    expect(result.left.filter((n) => n.endsWith('.partial') || n.includes('.partial/'))).toEqual([]);
    expect(result.left).not.toContain('small/web1.img.xz');
  });
});

/** Resolves once the --json build announces `stage` for some node. */
async function waitForStage(child: ResultPromise<{ reject: false }>, stage: string): Promise<void> {
  await waitForEvent(child, `"stage":"${stage}"`);
}

/** Resolves once a --json build prints an event containing `text`. */
async function waitForEvent(child: ResultPromise<{ reject: false }>, text: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString();
      if (buffered.includes(text)) {
        child.stdout?.off('data', onData);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    void child.then(() => reject(new Error(`the build ended before printing ${text}`)));
  });
}
