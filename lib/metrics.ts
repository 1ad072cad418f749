// Prometheus metrics, served on `/metrics` of `--health-listen`. Each process gets its own
// registry; gauges that mirror state are collected on scrape from a callback, so nothing on the
// hot path updates them.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export const registry = new Registry();

export function gauge(
  name: string,
  help: string,
  labelNames: string[] = [],
  collect?: (g: Gauge) => void,
): Gauge {
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

export function counter(name: string, help: string, labelNames: string[] = []): Counter {
  return new Counter({ name, help, labelNames, registers: [registry] });
}

export function histogram(name: string, help: string, buckets: number[]): Histogram {
  return new Histogram({ name, help, buckets, registers: [registry] });
}
