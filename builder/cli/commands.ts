/** Every pibake subcommand, in pipeline order. Each lives in its own module beside this one. */
import type { CommandModule } from 'yargs';
import { buildCommand } from './build.ts';
import { devicesCommand } from './devices.ts';
import { flashCommand } from './flash.ts';
import { inspectCommand } from './inspect.ts';
import { renderCommandModule } from './render.ts';
import { sealCommand } from './seal.ts';
import { secretsCommand } from './secrets.ts';
import { statusCommand } from './status.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [
  renderCommandModule,
  secretsCommand,
  buildCommand,
  inspectCommand,
  sealCommand,
  flashCommand,
  devicesCommand,
  statusCommand,
];
