/**
 * Folder locks: one holder at a time, a waiter gets the lock when the holder lets go, and a holder
 * killed with SIGKILL never leaves a lock behind (the kernel drops flock's lock with its pipe).
 */
import { execa } from 'execa';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeHolder, lockHolder, tryLockFolder, waitLockFolder } from '../../builder/common/lock.ts';
import { scratchDir } from '../helpers/image.ts';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await scratchDir('pibake-lock-')));
afterAll(() => cleanup());

describe('folder locks', () => {
  it('has one holder at a time, records who it is, and lets a waiter in when released', async () => {
    const first = await tryLockFolder(dir);
    expect(first).toBeDefined();
    expect(await tryLockFolder(dir)).toBeUndefined();
    expect((await lockHolder(dir))?.pid).toBe(process.pid);
    let heard: string | undefined;
    const waiting = waitLockFolder(dir, (holder) => {
      heard = describeHolder(holder);
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(heard).toMatch(new RegExp(`^pid ${process.pid} \\(pibake.*, since .+\\)$`));
    await first?.release();
    const second = await waiting;
    expect(await tryLockFolder(dir)).toBeUndefined();
    await second.release();
    const third = await tryLockFolder(dir);
    expect(third).toBeDefined();
    await third?.release();
  });

  it('is free again at once when its holder is killed with SIGKILL', async () => {
    const script = `import { tryLockFolder } from ${JSON.stringify(join(import.meta.dirname, '../../builder/common/lock.ts'))};
const lock = await tryLockFolder(${JSON.stringify(dir)});
console.log(lock ? 'held' : 'busy');
setInterval(() => {}, 1000);`;
    const holder = execa('node', ['--import', 'tsx', '--input-type=module', '-e', script], { reject: false });
    await new Promise<void>((resolve) => holder.stdout?.once('data', () => resolve()));
    expect(await tryLockFolder(dir)).toBeUndefined();
    holder.kill('SIGKILL');
    await holder;
    const started = Date.now();
    let lock = await tryLockFolder(dir);
    // flock(1) notices the closed pipe at once; allow a moment for it to exit.
    while (!lock && Date.now() - started < 2000) lock = await tryLockFolder(dir);
    expect(lock).toBeDefined();
    await lock?.release();
  });
});
