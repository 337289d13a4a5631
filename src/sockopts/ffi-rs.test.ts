import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { requireFfiRs } from './ffi-rs.js';

const require = createRequire(import.meta.url);

describe('requireFfiRs (ffi-rs without its process.report probe)', () => {
  it('loads the working prebuild, leaves process.report.getReport as it was, and is the copy net-keepalive uses', () => {
    const before = process.report.getReport;
    const ffi = requireFfiRs();
    assert.equal(process.report.getReport, before);
    assert.equal(typeof ffi.open, 'function');
    assert.equal(typeof ffi.define, 'function');
    assert.equal(requireFfiRs(), ffi);
    // net-keepalive requires 'ffi-rs' itself: it must get this cached module, not a second load.
    assert.equal(require('ffi-rs'), ffi);
    require('net-keepalive');
    const nk = Object.keys(require.cache).filter((k) => k.includes('/ffi-rs/index.js'));
    assert.equal(nk.length, 1);
  });
});
