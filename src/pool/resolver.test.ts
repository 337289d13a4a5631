import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { candidateNames, parseResolvConf } from './resolver.js';

describe('resolv.conf search list and ndots (pure)', () => {
  const pod = parseResolvConf('nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1\n');

  it('reads a pod resolv.conf', () => {
    assert.deepEqual(pod, { search: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local'], ndots: 5 });
  });

  it('a short name tries the search domains first (ndots:5)', () => {
    assert.deepEqual(candidateNames('inventory', pod), [
      'inventory.shop.svc.cluster.local', 'inventory.svc.cluster.local', 'inventory.cluster.local', 'inventory',
    ]);
    assert.equal(candidateNames('inventory.shop.svc.cluster.local', pod)[0], 'inventory.shop.svc.cluster.local.shop.svc.cluster.local', 'only 4 dots: still searched first (why FQDNs get a trailing dot)');
  });

  it('a trailing dot is absolute; enough dots go as given first', () => {
    assert.deepEqual(candidateNames('inventory.shop.svc.cluster.local.', pod), ['inventory.shop.svc.cluster.local']);
    assert.deepEqual(candidateNames('a.b', { search: ['x'], ndots: 1 }), ['a.b', 'a.b.x']);
  });

  it('defaults without search or options; the last search/domain line wins; comments ignored', () => {
    assert.deepEqual(parseResolvConf('nameserver 1.1.1.1\n'), { search: [], ndots: 1 });
    assert.deepEqual(parseResolvConf('domain a.example\nsearch b.example # c.example\noptions ndots:20'), { search: ['b.example'], ndots: 15 });
  });
});
