// The stated memory bound of the feed under stuck clients (syncer/server.ts): what one stuck client
// may cost, what the shared log may hold, and an allowance for the churn's own garbage.

/** Per stuck client: its HTTP/2 stream and session, and the messages it holds in flight. */
export const STUCK_CLIENT_BYTES = 256 * 1024;
/** The working set of rewriting the state (old and new Updates, their encodings) before a GC. */
export const CHURN_ALLOWANCE_BYTES = 64 * 1024 * 1024;

/** RSS bound: the syncer's RSS at rest + churn allowance + the shared log's cap + stuck × per-client. */
export function rssBound(rssBase: number, maxLagBytes: number, stuck: number): number {
  return rssBase + CHURN_ALLOWANCE_BYTES + maxLagBytes + stuck * STUCK_CLIENT_BYTES;
}
