/** Renders one node the way `pibake build` does, for benchmarks that bake without a full build. */
import { openRaspiosImage } from '../builder/image/raspios.ts';
import { loadProject, projectSecrets, renderProjectNode, selectNodes } from '../builder/render/project.ts';
import type { RenderedNode } from '../builder/render/types.ts';

export async function renderForBench(config: string, base: string, node: string): Promise<RenderedNode> {
  const project = await loadProject(config);
  const [spec] = selectNodes(project.inventory, [node]);
  const image = await openRaspiosImage(base);
  const facts = { generation: image.generation, installedPackages: new Set((await image.root.readDpkgStatus()).keys()) };
  const { secrets, standIns } = await projectSecrets(project, { sealed: false, base: facts });
  return (await renderProjectNode(project, spec!, { secrets, standIns, base: facts })).rendered;
}
