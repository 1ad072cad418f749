// Structured JSON logs (pino). Level from FEDMESH_LOG_LEVEL (default info); logs go to stderr so
// that a subcommand's stdout stays machine-readable (eval --output json, demo tables).
import pino from 'pino';
import { clip, clipDeep } from './text.ts';

export type Logger = pino.Logger;

/** Longest string in one log field or message: input echoed in a log line never arrives whole. */
const LOG_STRING_MAX = 2000;

export const rootLogger: Logger = pino(
  {
    level: process.env.FEDMESH_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    hooks: {
      // A 3 MB name or a 1 MB label value must not become a 3 MB log line.
      logMethod(args, method) {
        const clipped = args.map((a) =>
          typeof a === 'string'
            ? clip(a, LOG_STRING_MAX)
            : a !== null && typeof a === 'object' && !(a instanceof Error)
              ? clipDeep(a, LOG_STRING_MAX)
              : a,
        );
        return method.apply(this, clipped as Parameters<typeof method>);
      },
    },
  },
  pino.destination({ dest: 2, sync: true }),
);

export function logger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger.child({ component, ...bindings });
}

/**
 * For CLI commands that run syncer code in-process (eval, explain): its info/warn lines would bury
 * the command's own output and warnings. FEDMESH_LOG_LEVEL, when set, still wins.
 */
export function quietLogsForCli(): void {
  if (!process.env.FEDMESH_LOG_LEVEL) rootLogger.level = 'error';
}
