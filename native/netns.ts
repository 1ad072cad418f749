// Network namespaces as the demo and the tests use them: the kernel's own isolation, so that every
// node and pod of a topology is real and nothing leaks into the host's namespace.
import { randomBytes } from 'node:crypto';
import { run } from './exec.ts';

/** A short random tag for namespace and interface names, so concurrent runs never collide. */
export function uniqueTag(len = 4): string {
  return randomBytes(8).toString('hex').slice(0, len);
}

export async function listNetns(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.length > 0);
}

export async function addNetns(name: string): Promise<void> {
  await run('ip', ['netns', 'add', name]);
  await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
}

export async function deleteNetns(name: string): Promise<void> {
  // Kill anything still running inside first, or the namespace lingers until it exits.
  const pids = await run('ip', ['netns', 'pids', name], { allowFailure: true });
  for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await run('ip', ['netns', 'del', name], { allowFailure: true });
}

/** Run a command inside a namespace; throws with stderr on failure unless allowFailure. */
export function inNetns(
  ns: string,
  file: string,
  args: readonly string[],
  opts: { input?: string; allowFailure?: boolean; timeoutMs?: number } = {},
) {
  return run(file, args, { ...opts, netns: ns });
}

/** Set sysctls in a namespace (new namespaces inherit ip_forward/rp_filter from the host). */
export async function sysctl(ns: string, settings: Record<string, string | number>): Promise<void> {
  const args = ['-qw', ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)];
  await inNetns(ns, 'sysctl', args);
}
