/**
 * Where roles and overlays are found: beside the inventory when the project has them, else
 * pibake's own; folders named explicitly win. (That build and render both use them, file for file,
 * is test/build/render-folder.test.ts.)
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot, roleFolders } from '../../builder/common/paths.ts';
import { scratchDir } from '../helpers/image.ts';

let scratch: Awaited<ReturnType<typeof scratchDir>>;

beforeAll(async () => {
  scratch = await scratchDir('pibake-paths-');
});
afterAll(async () => scratch?.cleanup());

describe('roleFolders', () => {
  it('prefers roles/ and overlays/ beside the inventory, each on its own; explicit folders win', async () => {
    const dir = path.join(scratch.dir, 'project');
    const config = path.join(dir, 'cluster.yaml');
    await mkdir(path.join(dir, 'roles'), { recursive: true });
    expect(roleFolders(config)).toEqual({ roles: path.join(dir, 'roles'), overlays: path.join(packageRoot, 'overlays') });
    await mkdir(path.join(dir, 'overlays'));
    expect(roleFolders(config)).toEqual({ roles: path.join(dir, 'roles'), overlays: path.join(dir, 'overlays') });
    expect(roleFolders(path.join(scratch.dir, 'cluster.yaml'))).toEqual({ roles: path.join(packageRoot, 'roles'), overlays: path.join(packageRoot, 'overlays') });
    expect(roleFolders(config, { roles: '/r' })).toEqual({ roles: '/r', overlays: path.join(dir, 'overlays') });
  });
});
