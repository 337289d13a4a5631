/**
 * The PrometheusRule's alerts, checked by the tool Prometheus users run: `promtool check rules` on its
 * spec.groups and `promtool test rules` on k8s/monitoring/tests/alerts.test.yaml (each alert: one case that
 * fires, one that does not, series shaped like a scrape of the sidecar). A broken expression and a rule
 * that no longer fires must both make promtool fail, which proves the wiring. Under CI=true a missing
 * promtool (Debian `prometheus`) fails the test; elsewhere it is skipped with the reason.
 * Also `promtool check metrics` (the exposition linter) on a live /metrics scrape after traffic on a tcp, an
 * http and an h2 route: our own families must lint clean.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { parse as parseYaml, stringify } from 'yaml';
import { request } from '../helpers/scrape.js';
import { h2Route, startTestSidecar, tcpRoute } from '../helpers/sidecar.js';

const MONITORING = fileURLToPath(new URL('../../../k8s/monitoring/', import.meta.url));
type Obj = Record<string, unknown>;
interface Rule { alert?: string; expr: string }
interface Group { name: string; rules: Rule[] }

const hasPromtool = spawnSync('promtool', ['--version']).status === 0;
const skip = hasPromtool ? false : 'promtool not installed (apt-get install prometheus)';
if (!hasPromtool && process.env.CI === 'true') {
  it('promtool is installed', () => assert.fail('promtool missing under CI=true (.ci/run installs Debian prometheus)'));
}

function groups(): Group[] {
  const cr = parseYaml(readFileSync(join(MONITORING, 'prometheusrule.yaml'), 'utf8')) as Obj;
  assert.equal(cr.kind, 'PrometheusRule');
  return (cr.spec as { groups: Group[] }).groups;
}

const dirs: string[] = [];
/** A temp dir holding rules.yaml (from `gs`) and a copy of the unit tests, as alerts.test.yaml expects. */
function workdir(gs: Group[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'ks-promtool-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'rules.yaml'), stringify({ groups: gs }));
  copyFileSync(join(MONITORING, 'tests/alerts.test.yaml'), join(dir, 'alerts.test.yaml'));
  return dir;
}
function promtool(dir: string, ...args: string[]): { status: number | null; out: string } {
  const r = spawnSync('promtool', args, { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('PrometheusRule under promtool', { skip }, () => {
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('promtool check rules accepts every rule', () => {
    const gs = groups();
    const r = promtool(workdir(gs), 'check', 'rules', 'rules.yaml');
    assert.equal(r.status, 0, r.out);
    const n = gs.reduce((s, g) => s + g.rules.length, 0);
    assert.match(r.out, new RegExp(`SUCCESS: ${n} rules found`), r.out);
  });

  it('promtool test rules: each alert fires on its firing series and stays quiet on the other', () => {
    const r = promtool(workdir(groups()), 'test', 'rules', 'alerts.test.yaml');
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /SUCCESS/, r.out);
  });

  it('every alert has a firing and a non-firing unit test', () => {
    const tests = (parseYaml(readFileSync(join(MONITORING, 'tests/alerts.test.yaml'), 'utf8')) as {
      tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
    }).tests.flatMap((t) => t.alert_rule_test);
    for (const rule of groups().flatMap((g) => g.rules).filter((x) => x.alert !== undefined)) {
      const mine = tests.filter((t) => t.alertname === rule.alert);
      assert.ok(mine.some((t) => t.exp_alerts.length > 0), `${rule.alert}: no firing case`);
      assert.ok(mine.some((t) => t.exp_alerts.length === 0), `${rule.alert}: no non-firing case`);
    }
  });

  it('a broken expression fails promtool check rules', () => {
    const gs = groups();
    const first = gs[0]!.rules[0]!;
    first.expr = first.expr.replace(/\)\s*>\s*0\s*$/, ' > 0'); // one closing parenthesis short
    const r = promtool(workdir(gs), 'check', 'rules', 'rules.yaml');
    assert.notEqual(r.status, 0, r.out);
    assert.match(r.out, /parse error|unclosed|unexpected/i, r.out);
  });

  it('a rule that parses but no longer matches the metric fails promtool test rules', () => {
    const gs = groups();
    for (const rule of gs.flatMap((g) => g.rules)) rule.expr = rule.expr.replaceAll('keepalive_sidecar_', 'keepalive_sidecar_renamed_');
    const r = promtool(workdir(gs), 'test', 'rules', 'alerts.test.yaml');
    assert.notEqual(r.status, 0, r.out);
    assert.match(r.out, /FAILED/, r.out);
  });
});

/**
 * prom-client's default gauges keep their historical `_total` names (`nodejs_active_handles_total`...; the
 * registry test pins parity with collectDefaultMetrics, and dashboards use these names), which promtool's
 * linter flags. Anything else it reports is ours and fails the test.
 */
const PROM_CLIENT_LINT = /^keepalive_sidecar_nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/;

describe('promtool check metrics on a live scrape', { skip }, () => {
  it('after tcp, http and h2 traffic, the only lint findings are prom-client default-metric names', async () => {
    const echo = net.createServer((s) => s.pipe(s));
    const web = http.createServer((_req, res) => res.end('ok'));
    const h2up = http2.createServer((_req, res) => res.end('ok'));
    await Promise.all([echo, web, h2up].map((srv) => new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))));
    const port = (srv: net.Server | http.Server | http2.Http2Server): number => (srv.address() as AddressInfo).port;
    const sc = await startTestSidecar({
      routes: [
        tcpRoute(port(echo), { name: 't' }),
        { name: 'h', mode: 'http', listen: { port: 0 }, upstream: { host: '127.0.0.1', port: port(web) } },
        h2Route(port(h2up), { name: 'g' }),
      ],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const c = net.connect(sc.port('t'), '127.0.0.1', () => c.end('x'));
        c.on('data', () => {});
        c.on('close', () => resolve());
        c.on('error', reject);
      });
      assert.equal((await request(sc.port('h'), '/')).status, 200);
      await new Promise<void>((resolve, reject) => {
        const session = http2.connect(`http://127.0.0.1:${sc.port('g')}`);
        session.on('error', reject);
        const req = session.request({ ':path': '/' });
        req.on('data', () => {});
        req.on('end', () => session.close(() => resolve()));
        req.on('error', reject);
        req.end();
      });
      const scrape = await request(sc.sidecar.admin!.port, '/metrics');
      assert.equal(scrape.status, 200);
      assert.match(scrape.body, /keepalive_sidecar_http_requests_total/);
      const r = spawnSync('promtool', ['check', 'metrics'], { input: scrape.body, encoding: 'utf8', timeout: 30_000 });
      const findings = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() !== '');
      const ours = findings.filter((l) => !PROM_CLIENT_LINT.test(l.trim()));
      assert.deepEqual(ours, [], `promtool check metrics (exit ${r.status}):\n${findings.join('\n')}`);
      assert.ok(r.status === 0 || findings.length > 0, `promtool exited ${r.status} without saying why`);
    } finally {
      await sc.stop();
      for (const srv of [echo, web, h2up]) srv.close();
    }
  });
});
