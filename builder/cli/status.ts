/** `pibake status`: every node, its services, replication and load-balancer backends, and a verdict. */
import { PibakeError } from '../common/errors.ts';
import type { StatusPlan } from '../status/status.ts';
import type { StatusReport } from '../status/types.ts';
import { setExitCode } from './exit-code.ts';
import { defineCommand, withConfig, withJson, withNodes, withOut } from './options.ts';

interface WatchOptions {
  json: boolean;
  interval: number;
  count?: number;
}

export const command = defineCommand({
  builder: (y) =>
    withJson(
      withNodes(withOut(withConfig(y), 'output root of pibake build (its manifest and known_hosts are used)'), 'check only these nodes'),
      'print the report as JSON (schema/status.schema.json); with --watch one line per round',
    )
      .option('watch', { alias: 'w', type: 'boolean', default: false, describe: 'check again every --interval seconds, redrawing in place (Ctrl-C ends)' })
      .option('interval', { type: 'number', default: 3, describe: 'seconds between rounds of --watch' })
      .option('count', { type: 'number', describe: 'with --watch: stop after this many rounds' })
      .option('timeout', { type: 'number', default: 10, describe: 'seconds one node may take before it counts as unreachable' })
      .option('ssh-config', { type: 'string', describe: 'ssh config file to use instead of ~/.ssh/config (e.g. a jump host); host keys are still checked' })
      .check((a) => {
        for (const key of ['interval', 'timeout', 'count'] as const) {
          const value = a[key];
          if (value !== undefined && (!Number.isFinite(value) || value <= 0)) throw new PibakeError(`--${key} must be a positive number, not ${String(value)}`);
        }
        if (a.count !== undefined && !a.watch) throw new PibakeError('--count counts rounds of --watch', { hint: 'add --watch, or leave --count out' });
        return true;
      }),
  handler: async (args) => {
    const { checkCluster, planStatus } = await import('../status/status.ts');
    const plan = await planStatus({ config: args.config, out: args.out, nodes: args.node, timeout: args.timeout, sshConfig: args['ssh-config'] });
    const report = args.watch ? await watch(plan, args) : await checkCluster(plan);
    if (!args.watch) process.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : `${await render(report)}\n`);
    setExitCode(report.verdict.exitCode);
  },
});

async function render(report: StatusReport, footer?: string): Promise<string> {
  const { formatReport } = await import('../status/format.ts');
  const tty = process.stdout.isTTY === true;
  return formatReport(report, {
    color: tty && !process.env.NO_COLOR,
    width: tty ? process.stdout.columns : undefined,
    footer,
  }).join('\n');
}

/**
 * Rounds until Ctrl-C (or --count): on a terminal each frame is drawn over the last; otherwise
 * frames follow each other. Every node keeps one ssh connection open meanwhile, so a round costs
 * one session per node, not one login.
 */
async function watch(plan: StatusPlan, args: WatchOptions): Promise<StatusReport> {
  const [{ SshMasters }, { checkCluster }] = await Promise.all([import('../status/ssh.ts'), import('../status/status.ts')]);
  const tty = process.stdout.isTTY === true && !args.json;
  const masters = await SshMasters.create(plan.ssh);
  let stop: (() => void) | undefined;
  let stopped = false;
  const onSignal = () => {
    stopped = true;
    stop?.();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const onExit = () => masters.closeSync();
  process.once('exit', onExit);
  if (tty) process.stdout.write('\x1b[?25l\x1b[2J');
  let last: StatusReport | undefined;
  try {
    for (let round = 1; !stopped; round++) {
      for (const target of plan.targets) masters.ensure(target);
      const report = await checkCluster(plan, masters.sessionSettings, last);
      if (stopped && last) break;
      last = report;
      const final = args.count !== undefined && round >= args.count;
      if (args.json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else {
        const footer = final ? undefined : `next check in ${args.interval} s; Ctrl-C ends`;
        const frame = await render(report, footer);
        // Home, each line cleared to its end, then everything below the frame: no flicker.
        process.stdout.write(tty ? `\x1b[H${frame.split('\n').map((l) => `${l}\x1b[K`).join('\n')}\n\x1b[J` : `${frame}\n\n`);
      }
      if (final) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, args.interval * 1000);
        stop = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
    if (tty) process.stdout.write('\x1b[?25h');
    await masters.close();
  }
  return last as StatusReport;
}
