// A dataplane (nft) inside a test's namespace with its kernel watch, both started, both stopped
// when the test ends: the set-up of the repair tests that drive the kernel's own events.
import type { TestContext } from 'node:test';
import { Dataplane, type DataplaneOptions } from '../../agent/dataplane/dataplane.ts';
import { KernelWatch } from '../../agent/dataplane/kernel-watch.ts';
import { IpRouteDriver } from '../../native/iproute.ts';
import { IpSetDriver } from '../../native/ipset.ts';
import { IptablesDriver } from '../../native/iptables.ts';
import { IpMonitorSource } from '../../native/kernel-events.ts';

export function watchedDataplane(
  t: Pick<TestContext, 'after'>,
  netns: string,
  opts: DataplaneOptions,
): { dataplane: Dataplane; watch: KernelWatch } {
  const dataplane = new Dataplane(
    {
      ipsets: new IpSetDriver({ netns }),
      iptables: new IptablesDriver({ backend: 'nft', netns }),
      links: new IpRouteDriver({ netns }),
    },
    opts,
  );
  const watch = new KernelWatch(new IpMonitorSource(netns), dataplane, () => dataplane.desiredKernelState());
  t.after(() => {
    watch.stop();
    dataplane.stop();
  });
  watch.start();
  dataplane.start();
  return { dataplane, watch };
}
