// Kubernetes objects as the kubernetes datastore hands them to the model (model/validate.ts):
// a Node's Calico annotations become the Calico Node, pods that Calico counts as finished have no
// endpoint. The same conversions apply to these objects in a file datastore.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateResource } from '../../model/validate.ts';

const origin = { source: 'test' };

const pod = (extra: { phase?: string; annotations?: Record<string, string>; deleting?: boolean }) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: 'p',
    namespace: 'shop',
    ...(extra.annotations ? { annotations: extra.annotations } : {}),
    ...(extra.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
  },
  spec: { nodeName: 'n1', containers: [{ name: 'c' }] },
  status: { phase: extra.phase ?? 'Running', podIP: '10.0.0.5' },
});

describe('Kubernetes Node → Calico Node', () => {
  test('the three Calico annotations fill the Node', () => {
    const r = validateResource(
      {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: {
          name: 'n1',
          labels: { zone: 'a' },
          annotations: {
            'projectcalico.org/IPv4Address': '192.168.1.5/24',
            'projectcalico.org/IPv4VXLANTunnelAddr': '10.0.0.1',
            'projectcalico.org/VXLANTunnelMACAddr': '66:aa:00:00:00:05',
          },
        },
      },
      origin,
      '/',
    );
    assert.ok('resource' in r && r.resource.kind === 'Node');
    assert.equal(r.resource.labels.zone, 'a');
    assert.deepEqual(r.resource.spec, {
      ipv4Address: '192.168.1.5',
      ipv4PrefixLen: 24,
      vxlanTunnelAddress: '10.0.0.1',
      vxlanTunnelMac: '66:aa:00:00:00:05',
    });
  });

  test('a Node without them is a Node without addresses (not an error)', () => {
    const r = validateResource({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n2' } }, origin, '/');
    assert.ok('resource' in r && r.resource.kind === 'Node');
    assert.deepEqual(r.resource.spec, {});
  });

  test('a bad annotation is refused, naming the annotation', () => {
    const r = validateResource(
      {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: 'n3', annotations: { 'projectcalico.org/VXLANTunnelMACAddr': 'zz:zz' } },
      },
      origin,
      '/',
    );
    assert.ok('errors' in r);
    assert.equal(r.errors[0]?.field, 'metadata.annotations["projectcalico.org/VXLANTunnelMACAddr"]');
    assert.equal(r.errors[0]?.resource, 'Node/n3');
  });
});

describe('pods Calico counts as finished', () => {
  test('Running has an endpoint; Succeeded, Failed and Completed do not', () => {
    assert.ok('resource' in validateResource(pod({}), origin, '/'));
    for (const phase of ['Succeeded', 'Failed', 'Completed'])
      assert.ok('ignored' in validateResource(pod({ phase }), origin, '/'), phase);
  });

  test('terminating: gone once the CNI plugin released its address, not before', () => {
    const released = pod({ deleting: true, annotations: { 'cni.projectcalico.org/podIP': '' } });
    assert.ok('ignored' in validateResource(released, origin, '/'));
    const stillThere = pod({ deleting: true, annotations: { 'cni.projectcalico.org/podIP': '10.0.0.5/32' } });
    assert.ok('resource' in validateResource(stillThere, origin, '/'));
    // Not terminating: an empty annotation just means "use the status".
    const notDeleting = pod({ annotations: { 'cni.projectcalico.org/podIP': '' } });
    assert.ok('resource' in validateResource(notDeleting, origin, '/'));
  });
});
