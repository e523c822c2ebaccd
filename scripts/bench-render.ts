/** Renders one node the way `pibake build` does, for benchmarks that bake without a full build. */
import { openRaspiosImage } from '../builder/image/raspios.ts';
import { roleFolders } from '../builder/common/paths.ts';
import { loadInventory } from '../builder/inventory/load.ts';
import { loadRoles } from '../builder/render/roles.ts';
import { renderNode } from '../builder/render/render.ts';
import { loadOrCreateSecrets } from '../builder/render/secrets.ts';
import type { RenderedNode } from '../builder/render/types.ts';

export async function renderForBench(config: string, base: string, node: string): Promise<RenderedNode> {
  const { roles: rolesDir, overlays: overlaysDir } = roleFolders(config);
  const roles = await loadRoles(rolesDir, overlaysDir);
  const inventory = await loadInventory(config, roles);
  const image = await openRaspiosImage(base);
  const installed = await image.root.readDpkgStatus();
  const secrets = await loadOrCreateSecrets(inventory, roles);
  return renderNode({
    inventory, nodeName: node, roles, secrets, overlaysDir, buildId: 'f'.repeat(64),
    base: { generation: image.generation, installedPackages: new Set(installed.keys()) },
  });
}
