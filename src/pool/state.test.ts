import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnEvent, ConnState } from './state.js';
import { transition } from './state.js';

const states: ConnState[] = [
  { state: 'connecting', since: 0, forLease: true },
  { state: 'connecting', since: 0, forLease: false },
  { state: 'idle', idleSince: 0 },
  { state: 'leased', leasedAt: 0 },
  { state: 'closed', closeReason: 'peer_closed', closedAt: 0 },
];
const events: ConnEvent[] = [
  { type: 'connected' },
  { type: 'connect_failed', reason: 'connect_refused' },
  { type: 'lease' },
  { type: 'release' },
  { type: 'fail', reason: 'keepalive_timeout' },
];

/** The whole table: [from, event] -> [to, effects] or 'throws'. */
const expected: Record<string, [string, string[]] | 'throws'> = {
  'connecting(lease)+connected': ['leased', []],
  'connecting(lease)+connect_failed': ['closed:connect_refused', ['destroy']],
  'connecting(lease)+lease': 'throws',
  'connecting(lease)+release': 'throws',
  'connecting(lease)+fail': ['closed:keepalive_timeout', ['destroy']],
  'connecting(spare)+connected': ['idle', ['arm_idle_timers']],
  'connecting(spare)+connect_failed': ['closed:connect_refused', ['destroy']],
  'connecting(spare)+lease': 'throws',
  'connecting(spare)+release': 'throws',
  'connecting(spare)+fail': ['closed:keepalive_timeout', ['destroy']],
  'idle+connected': 'throws',
  'idle+connect_failed': 'throws',
  'idle+lease': ['leased', ['clear_idle_timers']],
  'idle+release': 'throws',
  'idle+fail': ['closed:keepalive_timeout', ['clear_idle_timers', 'destroy']],
  'leased+connected': 'throws',
  'leased+connect_failed': 'throws',
  'leased+lease': 'throws',
  'leased+release': ['idle', ['arm_idle_timers']],
  'leased+fail': ['closed:keepalive_timeout', ['destroy']],
  'closed+connected': 'throws',
  'closed+connect_failed': 'throws',
  'closed+lease': 'throws',
  'closed+release': ['closed:peer_closed', []],
  'closed+fail': ['closed:peer_closed', []],
};

function name(s: ConnState): string {
  return s.state === 'connecting' ? `connecting(${s.forLease ? 'lease' : 'spare'})` : s.state;
}
function describeState(s: ConnState): string {
  return s.state === 'closed' ? `closed:${s.closeReason}` : s.state;
}

describe('pool state transitions (exhaustive)', () => {
  for (const from of states) {
    for (const event of events) {
      const key = `${name(from)}+${event.type}`;
      it(key, () => {
        const want = expected[key];
        assert.ok(want !== undefined, `table entry for ${key}`);
        if (want === 'throws') {
          assert.throws(() => transition(from, event, 5), /invalid pool transition/);
          return;
        }
        const { next, effects } = transition(from, event, 5);
        assert.equal(describeState(next), want[0]);
        assert.deepEqual([...effects], want[1]);
      });
    }
  }

  it('first cause wins: a closed connection keeps its reason', () => {
    const closed = transition({ state: 'leased', leasedAt: 0 }, { type: 'fail', reason: 'user_timeout' }, 1).next;
    const again = transition(closed, { type: 'fail', reason: 'local_shutdown' }, 2).next;
    assert.equal(again.state === 'closed' && again.closeReason, 'user_timeout');
  });

  it('records the time of each transition', () => {
    const next = transition({ state: 'idle', idleSince: 0 }, { type: 'lease' }, 42).next;
    assert.deepEqual(next, { state: 'leased', leasedAt: 42 });
  });
});
