/** `pibake flash NODE|IMAGE|URL --device DEV...`: write node images to cards, safely and verified. */
import { basename } from 'node:path';
import { defineCommand, printResult, withConfig, withJson, withOut } from './options.ts';

export const command = defineCommand({
  builder: (y) =>
    withJson(withOut(withConfig(
      y.positional('target', { type: 'string', demandOption: true, describe: 'node name (its image from pibake build, in <out>/<cluster>/), image file (.img, .img.xz, .img.zst, .zip) or https URL of one (needs --sha256)' }),
      'cluster inventory (for node names)'), 'output root of pibake build: a node\'s image is <out>/<cluster>/<node>.img*'))
      .option('device', { type: 'string', array: true, demandOption: true, describe: 'card to write (whole disk, e.g. /dev/sdX), or a file; repeat for several' })
      .option('yes', { type: 'boolean', default: false, describe: 'do not ask before erasing (needed without a terminal)' })
      .option('verify', { type: 'boolean', default: true, describe: 'read every written range back and compare checksums (--no-verify skips)' })
      .option('unmount', { type: 'boolean', default: false, describe: 'unmount filesystems of the target cards first' })
      .option('allow-non-removable', { type: 'boolean', default: false, describe: 'allow a disk that is not removable (USB/MMC)' })
      .option('allow-large', { type: 'boolean', default: false, describe: 'allow a disk larger than 128 GiB' })
      .option('verify-only', { type: 'boolean', default: false, describe: 'write nothing; check cards written earlier against the image' })
      .option('seal', { type: 'boolean', default: true, describe: 'a sealed image (build --sealed) gets its node\'s secrets from cluster.secrets.yaml before it is written (--no-seal writes it as it is)' })
      .option('bmap', { type: 'string', describe: 'block map file to use (default: X.img.bmap or X.bmap beside the image, or published beside its URL)' })
      .option('sha256', { type: 'string', describe: 'SHA-256 of the image file (as SHA256SUMS lists it): required for a URL, whose download is checked before anything is written; checked for a file when given' }),
  handler: async (args) => {
    const [{ withSealedCopy }, { flash, verifyOnly }, { bmapBeside, filesBesideImage, resolveImage, sealedNodeOf }, { formatBytes }, { withLocalImage }] = await Promise.all([
      import('../build/seal.ts'), import('../flash/flash.ts'), import('../flash/resolve.ts'), import('../common/bytes.ts'), import('../image/remote.ts'),
    ]);
    const image = await resolveImage(args.target, { config: args.config, out: args.out });
    // An image given by URL is downloaded, checked against --sha256, then flashed exactly as a file
    // is, from its local copy: the bmap and manifest.json published beside it are fetched with it.
    await withLocalImage(image, { sha256: args.sha256, beside: filesBesideImage, progress: process.stderr }, async (local) => {
      const downloaded = local !== image;
      const found = args.bmap ? undefined : bmapBeside(local);
      const bmap = args.bmap ?? found;
      // A bmap that came with a download is vouched for by no digest: it may choose what is
      // written, never leave data out (flash checks that every byte it skips is zero).
      const named = {
        label: image,
        checkUnmapped: downloaded && found !== undefined,
        bmapLabel: downloaded && found ? new URL(basename(found), image).href : bmap,
      };
      if (args['verify-only']) {
        const checked = await verifyOnly({ image: local, ...named, bmap, targets: args.device, out: process.stderr });
        printResult(args.json, { image, targets: args.device, comparedBytes: checked.writtenBytes, bmapUsed: checked.bmapUsed },
          () => [`${args.device.join(', ')} match ${image} (${formatBytes(checked.writtenBytes)} compared${checked.bmapUsed ? ', bmap' : ''})`]);
        return;
      }
      const interactive = Boolean(process.stdin.isTTY && process.stderr.isTTY);
      const sealedNode = args.seal ? await sealedNodeOf(local) : undefined;
      const write = (source: string, map: string | undefined, names: Partial<typeof named>) => flash({
        image: source,
        bmap: map,
        ...names,
        targets: args.device,
        yes: args.yes,
        verify: args.verify,
        unmount: args.unmount,
        allowNonRemovable: args['allow-non-removable'],
        allowLarge: args['allow-large'],
        out: process.stderr,
        confirm: interactive ? ask : undefined,
      });
      let result: Awaited<ReturnType<typeof flash>>;
      let sealing = '';
      if (sealedNode) {
        process.stderr.write(`${image} is sealed: adding the secrets of ${sealedNode} from the secrets file beside ${args.config} first\n`);
        const started = Date.now();
        // The sealed copy and its bmap are made here from the checked image: the fetched bmap plays no part.
        result = await withSealedCopy({ image: local, node: sealedNode, config: args.config }, (card, cardBmap) => {
          sealing = ` with the secrets of ${sealedNode} (sealed in ${((Date.now() - started) / 1000).toFixed(1)} s)`;
          return write(card, cardBmap, {});
        });
      } else {
        result = await write(local, bmap, named);
      }
      printResult(args.json, {
        image, sealedFor: sealedNode ?? null, targets: args.device, writtenBytes: result.writtenBytes, bmapUsed: result.bmapUsed,
        verified: result.verified, seconds: result.seconds,
      }, () => [
        `flashed ${image}${sealing} to ${args.device.join(', ')}: ${formatBytes(result.writtenBytes)} written${result.bmapUsed ? ' (bmap)' : ''}, ` +
          `${result.verified ? 'verified' : 'not verified'}, ${result.seconds.toFixed(1)} s`,
      ]);
    });
  },
});

async function ask(summary: string[]): Promise<boolean> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    process.stderr.write(`These cards will be erased:\n${summary.map((s) => `  ${s}\n`).join('')}`);
    const answer = await rl.question('Type "yes" to continue: ');
    return answer.trim().toLowerCase() === 'yes';
  } finally {
    rl.close();
  }
}
