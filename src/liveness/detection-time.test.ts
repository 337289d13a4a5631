import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDuration, idleDetectionMs, inFlightDetectionMs, retransmitTimeoutMs } from './detection-time.js';

describe('detection time model (net/ipv4/tcp_timer.c)', () => {
  it('tcp_retries2 = 15 gives the documented 924.6 s (ip-sysctl.rst)', () => {
    assert.equal(retransmitTimeoutMs(15), 924_600);
  });

  it('doubles from 200 ms while below the 120 s cap, then adds 120 s per retry', () => {
    assert.equal(retransmitTimeoutMs(0), 200);
    assert.equal(retransmitTimeoutMs(1), 600);
    assert.equal(retransmitTimeoutMs(3), 3_000);
    // ilog2(120000 / 200) = 9: 1023 * 200 ms = 204.6 s after 9 doublings.
    assert.equal(retransmitTimeoutMs(9), 204_600);
    assert.equal(retransmitTimeoutMs(10), 324_600);
    assert.equal(retransmitTimeoutMs(8), 102_200);
  });

  it('idle without keepalive is never detected', () => {
    assert.equal(idleDetectionMs({ isKeepaliveOn: false, idleSec: 7200, intvlSec: 75, probes: 9, userTimeoutMs: 0 }), Infinity);
  });

  it('idle with kernel-default keepalive: 7200 + 9 * 75 s', () => {
    assert.equal(idleDetectionMs({ isKeepaliveOn: true, idleSec: 7200, intvlSec: 75, probes: 9, userTimeoutMs: 0 }), 7_875_000);
  });

  it('idle with a user timeout: the first probe tick at or after UT (probe count ignored)', () => {
    // Measured in the chaos tests: 1 s / 1 s / 2 probes, UT 2 s -> ~2.0 s; 1/1/3, UT 4 s -> ~4.0 s.
    assert.equal(idleDetectionMs({ isKeepaliveOn: true, idleSec: 1, intvlSec: 1, probes: 2, userTimeoutMs: 2000 }), 2000);
    assert.equal(idleDetectionMs({ isKeepaliveOn: true, idleSec: 1, intvlSec: 1, probes: 3, userTimeoutMs: 4000 }), 4000);
    // Defaults (3 s / 1 s / 3, UT 5 s).
    assert.equal(idleDetectionMs({ isKeepaliveOn: true, idleSec: 3, intvlSec: 1, probes: 3, userTimeoutMs: 5000 }), 5000);
    // UT shorter than idle: still needs one probe out, so idle + one interval.
    assert.equal(idleDetectionMs({ isKeepaliveOn: true, idleSec: 10, intvlSec: 5, probes: 3, userTimeoutMs: 2000 }), 15_000);
    // UT between ticks rounds up to the next tick.
    assert.equal(idleDetectionMs({ isKeepaliveOn: true, idleSec: 3, intvlSec: 2, probes: 9, userTimeoutMs: 4500 }), 5000);
  });

  it('in flight: the user timeout when set, else tcp_retries2', () => {
    assert.equal(inFlightDetectionMs({ userTimeoutMs: 5000 }, 15), 5000);
    assert.equal(inFlightDetectionMs({ userTimeoutMs: 0 }, 15), 924_600);
    assert.equal(inFlightDetectionMs({ userTimeoutMs: 0 }, 8), 102_200);
  });

  it('formats durations in plain words', () => {
    assert.equal(formatDuration(2000), '2 s');
    assert.equal(formatDuration(12.4), '12 ms');
    assert.equal(formatDuration(1250), '1.3 s');
    assert.equal(formatDuration(924_600), '924.6 s (15 min 25 s)');
    assert.equal(formatDuration(7_875_000), '7875 s (2 h 11 min 15 s)');
    assert.equal(formatDuration(Infinity), 'never');
  });
});
