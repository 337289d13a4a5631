import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hasNoAckEvidence } from './ack-evidence.js';
import type { AckSnapshot } from './ack-evidence.js';

const healthy: AckSnapshot = { state: 'established', unacked: 0, retransmits: 0, probes: 0, backoff: 0, lastAckRecvMs: 299 };

describe('hasNoAckEvidence', () => {
  it('a slow upstream that ACKed the request is not dead', () => {
    assert.equal(hasNoAckEvidence(healthy, 300), false);
    assert.equal(hasNoAckEvidence({ ...healthy, lastAckRecvMs: 2900 }, 3000), false);
  });
  it('segments lost in the network (unacked, retransmitting, no ACK since the write) is dead', () => {
    assert.equal(hasNoAckEvidence({ ...healthy, unacked: 1, retransmits: 1, backoff: 1, lastAckRecvMs: 5000 }, 300), true);
  });
  it('zero-window probing (a live peer that is not reading: snd_wnd 0) is never dead-peer evidence', () => {
    assert.equal(hasNoAckEvidence({ ...healthy, probes: 1, backoff: 3, lastAckRecvMs: 1600, sndWnd: 0 }, 350), false);
    assert.equal(hasNoAckEvidence({ ...healthy, probes: 1, backoff: 3, lastAckRecvMs: 1600, sndWnd: 65535 }, 350), true);
  });

  it('unsendable data (output drop: probes/backoff, unacked 0) is dead', () => {
    assert.equal(hasNoAckEvidence({ ...healthy, probes: 1, backoff: 1, lastAckRecvMs: 1200 }, 350), true);
  });
  it('one lost segment that was retransmitted and ACKed is not dead', () => {
    assert.equal(hasNoAckEvidence({ ...healthy, unacked: 0, lastAckRecvMs: 90 }, 300), false);
    // Still retransmitting but an ACK arrived after the write (partial delivery): not dead.
    assert.equal(hasNoAckEvidence({ ...healthy, unacked: 1, retransmits: 1, lastAckRecvMs: 100 }, 300), false);
  });
  it('a socket not established is left to the kernel', () => {
    assert.equal(hasNoAckEvidence({ ...healthy, state: 'close', unacked: 1, lastAckRecvMs: 5000 }, 300), false);
  });
});
