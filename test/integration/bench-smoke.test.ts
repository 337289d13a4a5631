/**
 * The benchmark harness must not rot: `npm run bench -- --quick` (Node-only peers, tiny runs) has to finish
 * within a minute and produce a summary with the throughput, memory and (where nft works) fault sections.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

const runJs = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'run.js');
const out = mkdtempSync(join(tmpdir(), 'ks-bench-smoke-'));
after(() => rmSync(out, { recursive: true, force: true }));

interface SmokeSummary {
  throughput?: { http: Array<{ target: string; rps: { median: number }; cpuUsPerReq: { median: number } }>; tcp: Array<{ target: string; gbps: { median: number } }> };
  memory?: { rows: Array<{ mode: string; requested: number; idleConns: number; rssKiB: number }> };
  fault?: { variants: Array<{ variant: string; rows: Array<{ target: string; requests: number; blackholed: number }> }> };
  targets?: unknown[];
}

test('npm run bench -- --quick produces a summary, a markdown report and a picture in under 60 s', { timeout: 120_000 }, async () => {
  const started = performance.now();
  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((done) => {
    const child = execFile(process.execPath, [runJs, '--quick', '--out', out], { timeout: 110_000 }, (err, _stdout, stderrText) => {
      const exit = (err as { code?: unknown } | null)?.code;
      done({ code: err === null ? 0 : typeof exit === 'number' ? exit : 1, stderr: stderrText });
    });
    child.stdin?.end();
  });
  const seconds = (performance.now() - started) / 1000;
  assert.equal(code, 0, `bench --quick failed:\n${stderr}`);
  assert.ok(seconds < 60, `bench --quick took ${seconds.toFixed(1)} s (limit 60 s)`);

  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as SmokeSummary;
  const direct = summary.throughput?.http.find((r) => r.target === 'direct');
  const sidecar = summary.throughput?.http.find((r) => r.target === 'sidecar-tcp');
  assert.ok(direct && direct.rps.median > 0, 'direct HTTP row with req/s');
  assert.ok(sidecar && sidecar.rps.median > 0 && sidecar.cpuUsPerReq.median > 0, 'sidecar HTTP row with req/s and CPU per request');
  assert.ok(summary.throughput?.tcp.some((r) => r.target === 'sidecar-tcp' && r.gbps.median > 0), 'sidecar TCP bulk row');
  const spares = summary.memory?.rows.find((r) => r.mode === 'tcp' && r.requested > 0);
  assert.ok(spares && spares.idleConns === spares.requested && spares.rssKiB > 0, `tcp memory row with every spare connected: ${JSON.stringify(spares)}`);
  assert.ok(Array.isArray(summary.targets), 'targets checked');
  assert.ok(existsSync(join(out, 'README.md')), 'markdown report');

  const canFault = process.getuid?.() === 0 && /fault matrix\n/.test(stderr) && !/fault matrix skipped/.test(stderr);
  if (canFault || process.env.CI === 'true') {
    const steady = summary.fault?.variants.find((v) => v.variant === 'steady');
    assert.ok(steady, `fault section present:\n${stderr}`);
    for (const r of steady.rows) {
      assert.ok(r.requests > 300, `${r.target}: open-loop requests sent (${r.requests})`);
      assert.ok(r.blackholed >= 1, `${r.target}: its upstream flows were blackholed (${r.blackholed})`);
    }
    assert.ok(existsSync(join(out, 'timeline.svg')), 'timeline picture');
  } else {
    process.stderr.write('\n*** bench smoke: fault matrix not exercised here (needs root and nft) ***\n');
  }
});
