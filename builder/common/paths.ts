/** Where pibake's own data lives, and where a project's roles and overlays are found. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder holding package.json, roles/ and overlays/: two up from this module both in the sources
 * (builder/common/) and compiled (dist/common/, as tsconfig.build.json's rootDir is builder/).
 */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const toolVersion: string = (
  JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }
).version;

/** The folders a project's roles and overlays are loaded from. */
export interface RoleFolders {
  roles: string;
  overlays: string;
}

/**
 * Where `pibake build` and `pibake render` load roles and overlays from, so a render shows what a
 * build bakes: for each of `roles/` and `overlays/`, the one beside the inventory when the project
 * has its own, otherwise the one shipped with pibake — so a user's new role is a file and a
 * folder, never a code change. Folders named explicitly (render's --roles, --overlays) win.
 */
export function roleFolders(inventoryFile: string, given: Partial<RoleFolders> = {}): RoleFolders {
  return { roles: given.roles ?? projectDir(inventoryFile, 'roles'), overlays: given.overlays ?? projectDir(inventoryFile, 'overlays') };
}

function projectDir(inventoryFile: string, name: 'roles' | 'overlays'): string {
  const beside = path.join(path.dirname(path.resolve(inventoryFile)), name);
  return existsSync(beside) ? beside : path.join(packageRoot, name);
}
