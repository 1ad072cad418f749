// Node's flags for the long-running processes (syncer, agent, services controller): the image's
// entrypoint, the demo and the benchmarks run them alike, so that what is measured is what runs.

/**
 * No memory reducer: after a burst of work it runs three full collections of a heap that is the
 * process's working set anyway (1.5 CPU s at 100,000 endpoints, most of an idle agent's budget).
 */
export const NODE_FLAGS: readonly string[] = ['--no-memory-reducer'];
