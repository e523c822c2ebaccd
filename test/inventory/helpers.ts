/** Shared inputs for the inventory tests: a valid inventory, the shipped roles' tags, locating text. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { expect } from 'vitest';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PibakeError, formatProblem } from '../../builder/common/errors.ts';
import type { Problem } from '../../builder/common/errors.ts';
import { loadInventory } from '../../builder/inventory/load.ts';
import type { Inventory } from '../../builder/inventory/types.ts';

/** The shipped roles and their tags (roles/*.yaml); render's loadRoles provides the real map. */
export const ROLES: ReadonlyMap<string, { tags: string[]; replacedBy?: string }> = new Map([
  ['lb', { tags: ['load-balancer'] }],
  ['db', { tags: ['web', 'postgresql'] }],
  ['allinone', { tags: ['load-balancer', 'web', 'postgresql'] }],
  ['primary', { tags: ['web', 'postgresql'], replacedBy: 'db' }],
  ['replica', { tags: ['web', 'postgresql'], replacedBy: 'db' }],
]);

export const SHA = '483db18a48da399b5b7022ffae9a07bc6d99daab30e593aedac09b69ff422843';

/** Block style, one value per line, so every rule's location is easy to see. */
export const VALID = `cluster:
  name: pistack
  domain: pistack.lan
network:
  cidr: 10.0.0.0/24
  gateway: 10.0.0.1
  dns: [10.0.0.1]
base:
  url: https://downloads.raspberrypi.com/raspios_lite_arm64/images/x/x-raspios-trixie-arm64-lite.img.xz
  sha256: ${SHA}
admin:
  user: pi
  generate_ssh_key: true
  password: none
nodes:
  - { name: lb1, role: lb, ip: 10.0.0.10 }
  - { name: web1, role: primary, ip: 10.0.0.11 }
  - { name: web2, role: replica, ip: 10.0.0.12 }
  - { name: web3, role: replica, ip: 10.0.0.13, mac: "dc:a6:32:00:00:13" }
`;

/** The one problem `yaml` has; it must be reported at the `^` of `marker`. */
export async function expectSingle(ws: Workspace, yaml: string, marker: string, message: RegExp): Promise<string> {
  const problems = await ws.problems(yaml);
  expect(problems, problems.join('\n')).toHaveLength(1);
  const [problem = ''] = problems;
  expect(problem.startsWith(`${locate(yaml, marker)}: `), problem).toBe(true);
  expect(problem).toMatch(message);
  return problem;
}

/** `VALID` with `from` replaced by `to` (which must change something). */
export function edit(yaml: string, from: string, to: string): string {
  if (!yaml.includes(from)) throw new Error(`test bug: "${from}" is not in the yaml`);
  return yaml.replace(from, to);
}

/**
 * line:column of the `^` in `marker` within yaml: `locate(yaml, 'gateway: ^10.0.0.1')` is where
 * the gateway's value starts. Found by plain text search, independently of the parser.
 */
export function locate(yaml: string, marker: string): string {
  const caret = marker.indexOf('^');
  const text = marker.replace('^', '');
  const start = yaml.indexOf(text);
  if (start < 0 || yaml.indexOf(text, start + 1) >= 0) throw new Error(`test bug: "${text}" must occur exactly once`);
  const offset = start + (caret < 0 ? 0 : caret);
  const before = yaml.slice(0, offset).split('\n');
  return `${before.length}:${(before.at(-1)?.length ?? 0) + 1}`;
}

export interface Workspace {
  dir: string;
  file: string;
  write(name: string, text: string): Promise<string>;
  load(yaml: string, roles?: ReadonlyMap<string, { tags: string[] }>): Promise<Inventory>;
  /** The problems loading yaml reports, as "line:column message (hint: …)"; fails if it loads. */
  problems(yaml: string, roles?: ReadonlyMap<string, { tags: string[] }>): Promise<string[]>;
  /** The warnings of a valid yaml, as "line:column message (hint: …)". */
  warnings(yaml: string, roles?: ReadonlyMap<string, { tags: string[] }>): Promise<string[]>;
  cleanup(): Promise<void>;
}

export async function workspace(): Promise<Workspace> {
  const dir = await mkdtemp(join(tmpdir(), 'pibake-inventory-'));
  const file = join(dir, 'cluster.yaml');
  const ws: Workspace = {
    dir,
    file,
    async write(name, text) {
      const path = join(dir, name);
      await writeFile(path, text);
      return path;
    },
    async load(yaml, roles = ROLES) {
      await writeFile(file, yaml);
      return loadInventory(file, roles);
    },
    async problems(yaml, roles = ROLES) {
      try {
        await ws.load(yaml, roles);
      } catch (error) {
        if (!(error instanceof PibakeError)) throw error;
        return error.problems.map((problem: Problem) => {
          if (problem.location?.file !== file) throw new Error(`problem without this file's location: ${formatProblem(problem)}`);
          return formatProblem(problem).slice(file.length + 1);
        });
      }
      throw new Error('the inventory loaded without problems');
    },
    async warnings(yaml, roles = ROLES) {
      return (await ws.load(yaml, roles)).warnings.map((problem) => formatProblem(problem).slice(file.length + 1));
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
  return ws;
}
