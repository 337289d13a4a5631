/**
 * The upstream on a separate "host" (a network namespace behind a veth pair). The host then silently stops
 * answering that connection: an nftables rule *inside the namespace* drops the flow, so the sidecar's
 * packets leave, cross the veth and vanish, as with a crashed node. New connections keep working.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { requireChaos } from '../helpers/chaos.js';
import { createTestHost } from '../helpers/netns.js';
import { connectClient, readUntil, startTestSidecar, tcpRoute, whenClosed } from '../helpers/sidecar.js';

it('tcp mode: upstream host in a netns goes silent; client reset within 4.5 s, reason keepalive_timeout', async (t) => {
  if (!(await requireChaos(t))) return;
  const host = await createTestHost();
  t.after(() => host.remove());
  const port = await host.startEcho();
  const sc = await startTestSidecar({
    routes: [tcpRoute(port, { upstream: { host: host.address, port }, keepalive: { idleMs: 1000, intervalMs: 1000, probes: 2, userTimeoutMs: 2000 } })],
  });
  t.after(() => sc.stop());
  const pool = sc.sidecar.routes[0]!.pool;
  const reasons: string[] = [];
  pool.on('closed', (_c, i) => reasons.push(i.reason));

  const client = await connectClient(sc.port());
  client.write('ping\n');
  await readUntil(client, 'ping\n');
  const upstreamPort = [...pool.connections()][0]!.socket.localPort!;
  const closed = whenClosed(client);
  await host.exec('nft', ['-f', '-'], [
    'table inet dead {',
    '  chain in {',
    '    type filter hook input priority filter; policy accept;',
    `    tcp dport ${port} tcp sport ${upstreamPort} drop`,
    '  }',
    '}',
    '',
  ].join('\n'));
  const t0 = performance.now();
  const { err, at } = await closed;
  t.diagnostic(`reset after ${Math.round(at - t0)} ms`);
  assert.equal(err?.code, 'ECONNRESET');
  assert.ok(at - t0 <= 4500, `${Math.round(at - t0)} ms`);
  assert.deepEqual(reasons, ['keepalive_timeout']);

  const again = await connectClient(sc.port());
  again.write('again\n');
  await readUntil(again, 'again\n');
  again.destroy();
});
