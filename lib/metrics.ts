// Prometheus metrics, served on `/metrics` of `--health-listen`. Each process gets its own
// registry; gauges that mirror state are collected on scrape from a callback, so nothing on the
// hot path updates them.
import { Gauge, Registry } from 'prom-client';

export const registry = new Registry();

/**
 * A metric is (re)defined by the component that owns it; a second instance in one process (tests
 * run several syncers) replaces the first, so the newest component's callbacks are the ones read.
 */
function fresh(name: string): void {
  if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
}

export function gauge(
  name: string,
  help: string,
  labelNames: string[] = [],
  collect?: (g: Gauge) => void,
): Gauge {
  fresh(name);
  return new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    ...(collect
      ? {
          collect() {
            collect(this);
          },
        }
      : {}),
  });
}

/** A counter read from the owner's own tally on scrape (the owner keeps counting, nothing else). */
export function counter(name: string, help: string, read: () => number): void {
  gauge(name, help, [], (g) => g.set(read()));
}
