import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { KERNEL_DEFAULTS, readKernelSettings } from './kernel.js';

/** A fake /proc root with the given sysctl files (value undefined = file absent). */
function fakeProc(files: Record<string, string | undefined>): string {
  const root = mkdtempSync(path.join(tmpdir(), 'ks-proc-'));
  const dir = path.join(root, 'sys', 'net', 'ipv4');
  mkdirSync(dir, { recursive: true });
  for (const [name, value] of Object.entries(files)) if (value !== undefined) writeFileSync(path.join(dir, name), value);
  roots.push(root);
  return root;
}
const roots: string[] = [];

describe('readKernelSettings (injectable /proc root)', () => {
  after(() => {
    for (const r of roots) rmSync(r, { recursive: true, force: true });
  });

  it('reads the four sysctls as the kernel writes them (value + newline)', async () => {
    const root = fakeProc({ tcp_keepalive_time: '600\n', tcp_keepalive_intvl: '30\n', tcp_keepalive_probes: '5\n', tcp_retries2: '8\n' });
    const k = await readKernelSettings(root);
    assert.deepEqual(k.settings, { keepaliveTimeSec: 600, keepaliveIntvlSec: 30, keepaliveProbes: 5, retries2: 8 });
    assert.deepEqual(k.problems, []);
    assert.ok(Object.values(k.isRead).every(Boolean));
  });

  it('a missing or malformed file is a problem, and the Linux default is assumed for it', async () => {
    const root = fakeProc({ tcp_keepalive_time: '600\n', tcp_keepalive_intvl: 'abc\n', tcp_keepalive_probes: undefined, tcp_retries2: '15\n' });
    const k = await readKernelSettings(root);
    assert.equal(k.settings.keepaliveTimeSec, 600);
    assert.equal(k.settings.keepaliveIntvlSec, KERNEL_DEFAULTS.keepaliveIntvlSec);
    assert.equal(k.settings.keepaliveProbes, KERNEL_DEFAULTS.keepaliveProbes);
    assert.equal(k.problems.length, 2);
    assert.match(k.problems.join('\n'), /tcp_keepalive_intvl: expected a whole number/);
    assert.match(k.problems.join('\n'), /cannot read .*tcp_keepalive_probes \(ENOENT\)/);
    assert.equal(k.isRead.keepaliveProbes, false);
  });

  it('a proc root without the files at all reports all four', async () => {
    const k = await readKernelSettings(path.join(tmpdir(), 'ks-no-such-proc-root'));
    assert.equal(k.problems.length, 4);
    assert.deepEqual(k.settings, KERNEL_DEFAULTS);
  });
});
