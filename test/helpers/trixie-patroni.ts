/**
 * Patroni 4.0 as Debian 13 "trixie" ships it, to check rendered configs with the validator of the
 * version a trixie card runs. The package is architecture-independent Python: it is downloaded once
 * from Debian's archive with apt-get (a throw-away apt state, trixie's index only), unpacked into
 * the pibake cache, and run with this machine's python3 and bookworm's Patroni dependencies
 * (python3-psycopg2, python3-etcd, ... installed with bookworm's patroni).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';

const PACKAGES = ['patroni', 'python3-ydiff'];

function cacheDir(): string {
  return path.join(process.env.PIBAKE_CACHE_DIR ?? path.join(homedir(), '.cache', 'pibake'), 'trixie-patroni');
}

/** The folder to put on PYTHONPATH for trixie's Patroni; fetched on first use. */
export async function trixiePatroniPath(): Promise<string> {
  const dist = path.join(cacheDir(), 'usr/lib/python3/dist-packages');
  if (existsSync(path.join(dist, 'patroni/__init__.py'))) return dist;
  const work = await mkdtemp(path.join(tmpdir(), 'pibake-trixie-apt-'));
  try {
    for (const dir of ['lists/partial', 'cache/archives/partial', 'debs']) await mkdir(path.join(work, dir), { recursive: true });
    await writeFile(path.join(work, 'sources.list'), 'deb http://deb.debian.org/debian trixie main\n');
    await writeFile(path.join(work, 'status'), '');
    const apt = [
      '-o', `Dir::Etc::SourceList=${work}/sources.list`, '-o', 'Dir::Etc::SourceParts=/dev/null', '-o', `Dir::State::Lists=${work}/lists`,
      '-o', `Dir::State::Status=${work}/status`, '-o', `Dir::Cache=${work}/cache`, '-o', 'APT::Sandbox::User=root', '-q',
    ];
    await execa('apt-get', [...apt, 'update'], { timeout: 300_000 });
    await execa('apt-get', [...apt, 'download', ...PACKAGES], { cwd: path.join(work, 'debs'), timeout: 300_000 });
    const unpacked = path.join(work, 'root');
    for (const deb of await readdir(path.join(work, 'debs'))) await execa('dpkg-deb', ['-x', path.join(work, 'debs', deb), unpacked]);
    await mkdir(path.dirname(cacheDir()), { recursive: true });
    await rm(cacheDir(), { recursive: true, force: true });
    await rename(unpacked, cacheDir());
  } catch (error) {
    throw new Error(`could not fetch trixie's Patroni from deb.debian.org (${String(error).split('\n')[0]}); the check needs Debian's archive once`, { cause: error });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return dist;
}

/** `patroni --validate-config FILE` with trixie's Patroni; its version is printed first. */
export async function validateWithTrixiePatroni(config: string): Promise<{ exitCode: number; all: string; version: string }> {
  const dist = await trixiePatroniPath();
  const run = (args: string[]) => execa('/usr/bin/python3', ['-c', 'import sys; from patroni.__main__ import main; sys.argv[0] = "patroni"; main()', ...args], {
    env: { PYTHONPATH: dist }, reject: false, all: true, timeout: 60_000,
  });
  const version = (await run(['--version'])).stdout.trim();
  const result = await run(['--validate-config', config]);
  return { exitCode: result.exitCode ?? -1, all: result.all ?? '', version };
}
