import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { candidateNames, createResolver, filterByAddrConfig, hostFamilies, parseHosts, parseResolvConf } from './resolver.js';
import type { ResolvedAddress } from './resolver.js';

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

describe('address families as AI_ADDRCONFIG (pure)', () => {
  const iface = (address: string, family: 'IPv4' | 'IPv6', internal = false) => ({ address, family, internal, netmask: '', mac: '', cidr: null, ...(family === 'IPv6' ? { scopeid: 0 } : {}) }) as never;

  it('an IPv4-only host: loopback and link-local IPv6 do not count as having IPv6', () => {
    assert.deepEqual(hostFamilies({ lo: [iface('127.0.0.1', 'IPv4', true), iface('::1', 'IPv6', true)], eth0: [iface('10.1.2.3', 'IPv4'), iface('fe80::1', 'IPv6')] }), { v4: true, v6: false });
    assert.deepEqual(hostFamilies({ eth0: [iface('fd00::5', 'IPv6'), iface('169.254.1.1', 'IPv4')] }), { v4: false, v6: true });
    assert.deepEqual(hostFamilies({ lo: [iface('127.0.0.1', 'IPv4', true)] }), { v4: false, v6: false });
  });

  it('AAAA answers on an IPv4-only host are dropped, loopback answers are kept even on a loopback-only host', () => {
    const found: ResolvedAddress[] = [
      { address: '10.0.0.1', family: 4 },
      { address: 'fd00::1', family: 6 },
      { address: '127.0.0.2', family: 4 },
      { address: '::1', family: 6 },
    ];
    assert.deepEqual(filterByAddrConfig(found, { v4: true, v6: false }).map((a) => a.address), ['10.0.0.1', '127.0.0.2', '::1']);
    assert.deepEqual(filterByAddrConfig(found, { v4: false, v6: false }).map((a) => a.address), ['127.0.0.2', '::1']);
    assert.deepEqual(filterByAddrConfig(found, { v4: true, v6: true }).length, 4);
  });
});

describe('/etc/hosts before DNS (system mode)', () => {
  it('parses exact matches of a name or alias, case-insensitive, every matching line', () => {
    const text = '127.0.0.1 localhost\n# 10.9.9.9 inventory\n10.0.0.7 inventory.default.svc Inventory # hostAlias\nfd00::7 inventory\n10.0.0.7 inventory\n';
    assert.deepEqual(parseHosts(text, 'inventory').map((a) => `${a.address}/${a.family}`), ['10.0.0.7/4', 'fd00::7/6']);
    assert.deepEqual(parseHosts(text, 'inventory.default.svc.').map((a) => a.address), ['10.0.0.7']);
    assert.deepEqual(parseHosts(text, 'inventory.default'), []);
  });

  it('a hosts-file match (Kubernetes hostAliases) wins before DNS, and a change of the file is seen on the next round', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ks-hosts-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const hosts = path.join(dir, 'hosts');
    const conf = path.join(dir, 'resolv.conf');
    // A resolver that nobody answers on: had DNS been asked first, the round would take the query timeouts.
    writeFileSync(conf, 'nameserver 192.0.2.1\noptions ndots:5\n');
    writeFileSync(hosts, '127.0.0.1 localhost\n127.0.0.7 alias.example.test\n');
    const resolve = createResolver({ dnsServers: [], resolvConfPath: conf, hostsPath: hosts, families: () => ({ v4: true, v6: false }) });
    const t0 = performance.now();
    assert.deepEqual((await resolve('alias.example.test')).map((a) => a.address), ['127.0.0.7']);
    assert.ok(performance.now() - t0 < 500, 'answered from the file, no DNS query');
    writeFileSync(hosts, '127.0.0.8 alias.example.test\n10.1.1.1 alias.example.test\nfd00::8 alias.example.test\n');
    utimesSync(hosts, new Date(), new Date(Date.now() + 5000));
    assert.deepEqual((await resolve('alias.example.test')).map((a) => a.address), ['127.0.0.8', '10.1.1.1'], 're-read; the AAAA of an IPv4-only host dropped');
  });
});
