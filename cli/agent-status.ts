// `fedmesh status --agent HOST:PORT`: one node agent's own view, from its health server's /status:
// whether it is programmed, and which policies the kernel refused (each keeps its last good
// version while every other change is applied).
import { parseHostPort } from '../lib/health.ts';

export interface AgentStatusOptions {
  agent: string;
  output: string;
  timeoutMs: number;
}

interface AgentRefusal {
  policy: string;
  objects: string[];
  reason: string;
}

interface AgentStatus {
  node?: string;
  backend?: string;
  feedConnected?: boolean;
  dataplane?: {
    applies?: number;
    failures?: number;
    lastError?: string;
    refused?: { table: string; object: string; policy?: string; endpoint?: string; reason: string }[];
  };
  refusedPolicies?: AgentRefusal[];
}

export async function runAgentStatus(opts: AgentStatusOptions): Promise<number> {
  const { host, port } = parseHostPort(opts.agent, '--agent');
  let body: AgentStatus;
  try {
    const res = await fetch(`http://${host}:${port}/status`, { signal: AbortSignal.timeout(opts.timeoutMs) });
    body = (await res.json()) as AgentStatus;
  } catch (e) {
    process.stderr.write(`fedmesh status: --agent ${opts.agent}: ${(e as Error).message}\n`);
    return 1;
  }
  const policies = body.refusedPolicies ?? [];
  const other = (body.dataplane?.refused ?? []).filter((r) => r.policy === undefined);
  if (opts.output === 'json') {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return policies.length + other.length > 0 ? 2 : 0;
  }
  const dp = body.dataplane ?? {};
  process.stdout.write(
    `node: ${body.node ?? '?'}   backend: ${body.backend ?? '?'}   feed connected: ${body.feedConnected ? 'yes' : 'no'}   apply passes: ${dp.applies ?? 0}   failed: ${dp.failures ?? 0}\n`,
  );
  if (dp.lastError) process.stdout.write(`last error: ${dp.lastError}\n`);
  if (policies.length + other.length === 0) {
    process.stdout.write('refused by the kernel: none\n');
    return 0;
  }
  process.stdout.write('refused by the kernel (last good version kept, everything else applied):\n');
  for (const p of policies)
    process.stdout.write(`  policy ${p.policy}: ${p.reason} [${p.objects.join(', ')}]\n`);
  for (const r of other)
    process.stdout.write(
      `  ${r.table} ${r.object}${r.endpoint ? ` (endpoint ${r.endpoint})` : ''}: ${r.reason}\n`,
    );
  return 2;
}
