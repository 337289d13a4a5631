/**
 * A burst on brand-new sessions against a server whose SETTINGS_MAX_CONCURRENT_STREAMS is small (issue 13):
 * grpcio's C-core (test/fixtures/grpc_ping_server.py) with grpc.max_concurrent_streams 10. Streams are opened
 * on a new session only once its first SETTINGS arrived (as grpc-go's client, not READY before the server
 * preface), up to the limit they carry; the rest go to other sessions, whose pre-SETTINGS budget is the limit
 * this endpoint last announced. Before the fix, streams opened before the SETTINGS exceeded the server's
 * limit and some calls ended DEADLINE_EXCEEDED (61/600 in one of 3 runs).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Status, grpcClient, serverStream } from '../fixtures/grpc.js';
import { h2Route, requirePythonGrpc, startH2Sidecar, startPingPolicyServer } from '../helpers/h2-sidecar.js';

const LIMIT = 10;
const N = 200;
const HOLD = '/test.Echo/Hold';

describe('h2 route: new sessions wait for the server SETTINGS', () => {
  it(`a burst of ${N} calls against grpcio max_concurrent_streams=${LIMIT}: 0 failures, at most ceil(N/limit) sessions`, async (t) => {
    if (!requirePythonGrpc(t)) return;
    const up = await startPingPolicyServer(t, { maxConcurrentStreams: LIMIT });
    const sc = await startH2Sidecar(t, [h2Route(up.port, {}, { maxConnections: 64 })]);
    const client = grpcClient(sc.port);
    t.after(() => client.close());
    // Each call holds its stream 200 ms, so the burst really has N streams open at once.
    const rs = await Promise.all(Array.from({ length: N }, () => serverStream(client, HOLD, '0.2', { deadlineMs: 20_000 })));
    const bad = rs.filter((r) => r.code !== Status.OK);
    const opened = await sc.metric('keepalive_sidecar_upstream_connections_opened_total', { route: 'grpc' });
    t.diagnostic(`failures ${bad.length}/${N} (${[...new Set(bad.map((r) => `${r.code} ${r.details}`))].join('; ')}); sessions opened ${opened}; most calls at once on one connection ${up.maxActive}`);
    assert.equal(bad.length, 0);
    assert.equal(up.calls.length, N, 'every call reached the server once');
    assert.ok(up.maxActive <= LIMIT, `at most ${LIMIT} calls at once on one connection (server saw ${up.maxActive})`);
    assert.ok(opened >= 1 && opened <= Math.ceil(N / LIMIT), `sessions opened ${opened} <= ${Math.ceil(N / LIMIT)}`);
  });
});
