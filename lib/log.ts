// Structured JSON logs (pino). Level from FEDMESH_LOG_LEVEL (default info); logs go to stderr so
// that a subcommand's stdout stays machine-readable (eval --output json, demo tables).
import pino from 'pino';

export type Logger = pino.Logger;

export const rootLogger: Logger = pino(
  { level: process.env.FEDMESH_LOG_LEVEL ?? 'info', base: { pid: process.pid } },
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
