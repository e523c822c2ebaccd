/** Inventory values judged against the base image itself: its zoneinfo and its system accounts. */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRaspiosImage } from '../../builder/image/raspios.ts';
import { synthesizeRaspiosImage } from '../helpers/synthesize.ts';
import { buildErrorLines, buildOptions, smallProject } from '../helpers/build-project.ts';

let work: string;
let base: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pibake-base-checks-'));
  base = path.join(work, 'base.img');
  await synthesizeRaspiosImage({ path: base, generation: 'trixie', sizeMiB: 160, bootMiB: 64 });
  // What a real base has and the synthesized one lacks: zoneinfo without legacy aliases, service accounts.
  const image = await openRaspiosImage(base);
  const file = (p: string, text: string) => ({ kind: 'file' as const, path: p, data: Buffer.from(text), mode: 0o644, uid: 0, gid: 0 });
  await image.root.apply([
    file('/usr/share/zoneinfo/Europe/London', 'TZif2 (stand-in)\n'),
    file('/usr/share/zoneinfo/Etc/UTC', 'TZif2 (stand-in)\n'),
    file('/etc/passwd', 'root:x:0:0:root:/root:/bin/bash\nsvc-metrics:x:120:120::/nonexistent:/usr/sbin/nologin\n'),
  ]);
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe('inventory against the base image', () => {
  it('refuses a zone the base image does not have and a user that is one of its system accounts, at their lines', async () => {
    const config = await smallProject(path.join(work, 'p'), undefined, ['locale: { timezone: US/Pacific }']);
    await writeFile(config, (await readFile(config, 'utf8')).replace('user: pi', 'user: svc-metrics'));
    const lines = await buildErrorLines(buildOptions(config, base, path.join(work, 'cache')));
    expect(lines).toEqual([
      `error: ${config}:4:16: admin.user "svc-metrics" is a system account of the base image base.img (uid 120) (hint: name an ordinary user such as pi or admin)`,
      `error: ${config}:5:21: time zone "US/Pacific" does not exist in the base image base.img (no /usr/share/zoneinfo/US/Pacific) (hint: name a current zone such as Europe/London or America/Los_Angeles; old aliases (US/Pacific, GB) are not installed)`,
    ]);
  });
});
