/**
 * k8s/: every manifest validates against the Kubernetes API schemas (>= 1.29), the example follows
 * STYLE.md §8 (native sidecar, probes on the admin port, grace period > drain timeout, resources, locked-down
 * securityContext), and every metric name the alerts and the dashboard use is exposed by /metrics of a
 * running sidecar.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { parser as promqlParser } from '@prometheus-io/lezer-promql';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { loadConfig } from '../../src/config/index.js';
import { VERSION } from '../../src/version.js';
import { echoServer } from '../fixtures/upstreams.js';
import type { Fixture } from '../fixtures/upstreams.js';
import { validateK8s } from '../helpers/k8s.js';
import { startTestSidecar, tcpRoute } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const K8S = fileURLToPath(new URL('../../../k8s/', import.meta.url));
type Obj = Record<string, unknown>;

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(join(dir, e.name)) : e.name.endsWith('.yaml') ? [join(dir, e.name)] : [],
  );
}
function readDocs(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  assert.ok(Array.isArray(docs), file);
  return docs.map((d) => {
    assert.deepEqual(d.errors.map((e) => e.message), [], file);
    return d.toJS() as Obj;
  });
}
const isKustomization = (f: string): boolean => f.endsWith('/kustomization.yaml');

/** The documents `kubectl kustomize DIR` renders (the real kustomize, as `kubectl apply -k` runs it). */
function kustomize(dir: string): Obj[] {
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `kubectl kustomize ${dir}: ${r.error?.message ?? ''}${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => {
    assert.deepEqual(d.errors.map((e) => e.message), [], dir);
    return d.toJS() as Obj;
  });
}
const hasKubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;
if (!hasKubectl && process.env.CI === 'true') {
  it('kubectl is installed', () => assert.fail('kubectl missing under CI=true (.ci/run installs Debian kubernetes-client)'));
}
const skipKustomize = hasKubectl ? false : 'kubectl not installed (apt-get install kubernetes-client)';

/** Files a kustomization refers to, and the patch files (which are not whole objects). */
function kustomizations(): { patches: Set<string>; problems: string[] } {
  const patches = new Set<string>();
  const problems: string[] = [];
  for (const file of yamlFiles(K8S).filter(isKustomization)) {
    const k = parseYaml(readFileSync(file, 'utf8')) as { resources?: string[]; patches?: Array<{ path: string }>; configMapGenerator?: Array<{ files: string[] }> };
    const refs = [...(k.resources ?? []), ...(k.patches ?? []).map((p) => p.path), ...(k.configMapGenerator ?? []).flatMap((g) => g.files)];
    for (const ref of refs) if (!existsSync(join(dirname(file), ref))) problems.push(`${file}: ${ref} does not exist`);
    for (const p of k.patches ?? []) patches.add(join(dirname(file), p.path));
  }
  return { patches, problems };
}

const exampleDeployment = (): Obj => readDocs(join(K8S, 'base/deployment.yaml'))[0] as Obj;
const podSpec = (d: Obj): Obj => ((d.spec as Obj).template as Obj).spec as Obj;
const sidecar = (d: Obj): Obj => ((podSpec(d).initContainers as Obj[]) ?? []).find((c) => c.name === 'keepalive-sidecar') as Obj;

describe('k8s/ manifests', () => {
  it('every kustomization references files that exist', () => {
    assert.deepEqual(kustomizations().problems, []);
  });

  it('kubectl kustomize of k8s/ and every overlay renders documents that validate against the Kubernetes API schemas', { skip: skipKustomize }, () => {
    const dirs = yamlFiles(K8S).filter(isKustomization).map((f) => dirname(f));
    assert.ok(dirs.includes(join(K8S, 'overlays/sysctls')) && dirs.length >= 4, dirs.join(', '));
    for (const dir of dirs) {
      const docs = kustomize(dir);
      assert.ok(docs.length > 0, dir);
      for (const [i, obj] of docs.entries()) validateK8s(obj, `kubectl kustomize ${dir} #${i + 1} (${String(obj.kind)})`);
    }
    const kinds = kustomize(K8S).map((d) => d.kind).sort();
    assert.deepEqual(kinds, ['ConfigMap', 'ConfigMap', 'Deployment', 'PodMonitor', 'PrometheusRule']);
  });

  it('the rendered Deployment runs the image `inject` writes by default', { skip: skipKustomize }, () => {
    const d = kustomize(K8S).find((o) => o.kind === 'Deployment') as Obj;
    assert.equal(sidecar(d).image, `keepalive-sidecar:${VERSION}`, 'src/cli/main.ts: inject --image default');
  });

  it('the example runs the sidecar natively with probes on the admin port, resources and a locked-down securityContext', () => {
    const d = exampleDeployment();
    const c = sidecar(d);
    assert.ok(c !== undefined, 'sidecar is an init container');
    assert.equal(c.restartPolicy, 'Always');
    const ports = c.ports as Obj[];
    assert.deepEqual(ports.map((p) => p.name), ['sidecar-admin']);
    for (const [probe, path] of [['livenessProbe', '/live'], ['readinessProbe', '/ready'], ['startupProbe', '/ready']] as const) {
      assert.deepEqual((c[probe] as Obj).httpGet, { path, port: 'sidecar-admin' }, probe);
    }
    const res = c.resources as { requests: Obj; limits: Obj };
    assert.ok(res.requests.cpu !== undefined && res.requests.memory !== undefined && res.limits.memory !== undefined);
    const sc = c.securityContext as Obj;
    assert.equal(sc.runAsNonRoot, true);
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.deepEqual((sc.capabilities as Obj).drop, ['ALL']);
    assert.equal(sc.runAsUser, 1000, 'the image user (Dockerfile USER 1000:1000)');
  });

  it('the ConfigMap loads with the runtime loader; grace period > drain timeout; admin port and PodMonitor agree', () => {
    const d = exampleDeployment();
    const c = sidecar(d);
    const cm = readDocs(join(K8S, 'base/sidecar-config.yaml'))[0] as Obj;
    const volume = (podSpec(d).volumes as Obj[]).find((v) => ((c.volumeMounts as Obj[])[0] as Obj).name === v.name) as Obj;
    assert.equal((volume.configMap as Obj).name, (cm.metadata as Obj).name);
    const env = Object.fromEntries((c.env as Array<{ name: string; value: string }>).map((e) => [e.name, e.value]));
    const config = loadConfig({ env, readFile: () => String((cm.data as Obj)['config.yaml']) });
    assert.equal(env.SIDECAR_CONFIG, `${String(((c.volumeMounts as Obj[])[0] as Obj).mountPath)}/config.yaml`);
    assert.equal(config.admin.host, '0.0.0.0', 'probes and scrapes reach the pod IP');
    assert.equal(((c.ports as Obj[])[0] as Obj).containerPort, config.admin.port);
    assert.ok((podSpec(d).terminationGracePeriodSeconds as number) * 1000 > config.shutdown.drainTimeoutMs);
    const pm = readDocs(join(K8S, 'monitoring/podmonitor.yaml'))[0] as Obj;
    assert.deepEqual(((pm.spec as Obj).podMetricsEndpoints as Obj[]).map((e) => [e.port, e.path]), [['sidecar-admin', '/metrics']]);
  });

  it('the Grafana dashboard is a valid dashboard model: schemaVersion, a datasource variable, panels with unique ids, types, gridPos and targets', () => {
    // No dashboard validator package is available (grep /work/.library/env/packages/), so the structure
    // Grafana's dashboard JSON model requires is checked by hand.
    const dash = JSON.parse(readFileSync(join(K8S, 'monitoring/grafana-dashboard.json'), 'utf8')) as Obj;
    for (const k of ['uid', 'title']) assert.equal(typeof dash[k], 'string', k);
    assert.ok(Number.isInteger(dash.schemaVersion) && (dash.schemaVersion as number) >= 36, `schemaVersion ${String(dash.schemaVersion)}`);
    const vars = (dash.templating as { list: Obj[] }).list;
    const ds = vars.find((v) => v.type === 'datasource');
    assert.ok(ds !== undefined && ds.query === 'prometheus', 'a prometheus datasource template variable');
    const panels = dash.panels as Obj[];
    assert.ok(panels.length > 0);
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, `panel ids unique: ${ids.join(',')}`);
    const known = new Set(['row', 'timeseries', 'heatmap', 'stat', 'gauge', 'table', 'bargauge', 'text']);
    for (const p of panels) {
      const what = `panel ${String(p.id)} "${String(p.title)}"`;
      assert.ok(Number.isInteger(p.id), what);
      assert.ok(known.has(p.type as string), `${what}: type ${String(p.type)}`);
      const g = p.gridPos as Record<string, number>;
      for (const k of ['h', 'w', 'x', 'y']) assert.ok(Number.isInteger(g[k]) && g[k]! >= 0, `${what}: gridPos.${k}`);
      assert.ok(g.x! + g.w! <= 24, `${what}: gridPos beyond 24 columns`);
      if (p.type === 'row') continue;
      assert.deepEqual(p.datasource, { type: 'prometheus', uid: `\${${String(ds.name)}}` }, `${what}: datasource is the variable`);
      const targets = p.targets as Obj[];
      assert.ok(Array.isArray(targets) && targets.length > 0, `${what}: targets`);
      const refIds = targets.map((t) => t.refId);
      assert.ok(refIds.every((r) => typeof r === 'string') && new Set(refIds).size === refIds.length, `${what}: refIds`);
      for (const t of targets) assert.equal(typeof t.expr, 'string', `${what}: target expr`);
    }
  });

  it('the sysctls overlay (rendered by kustomize) sets only the namespaced keepalive sysctls and keeps the sidecar', { skip: skipKustomize }, () => {
    const d = kustomize(join(K8S, 'overlays/sysctls')).find((o) => o.kind === 'Deployment') as Obj;
    const names = ((podSpec(d).securityContext as Obj).sysctls as Obj[]).map((s) => s.name);
    assert.deepEqual(names, ['net.ipv4.tcp_keepalive_time', 'net.ipv4.tcp_keepalive_intvl', 'net.ipv4.tcp_keepalive_probes']);
    assert.equal((podSpec(d).securityContext as Obj).runAsNonRoot, true, 'the patch merges, it does not replace');
    assert.equal(sidecar(d).restartPolicy, 'Always');
  });
});

// ---- alerts and dashboard against a live /metrics ---------------------------------------------------------

/** Grafana's interval variables are not PromQL; give them a duration before parsing. */
const grafanaToPromql = (expr: string): string => expr.replace(/\$__(rate_interval|interval|range)\b/g, '5m');

/** Metric names a PromQL expression selects; fails on syntax errors and on __name__ matchers. */
function metricNames(expr: string, where: string): string[] {
  const names: string[] = [];
  const tree = promqlParser.parse(expr);
  tree.iterate({
    enter(node) {
      if (node.type.isError) assert.fail(`${where}: PromQL syntax error at ${node.from}: ${expr}`);
      if (node.name === 'LabelName' && expr.slice(node.from, node.to) === '__name__') assert.fail(`${where}: use a plain metric name, not __name__`);
      if (node.name === 'VectorSelector') {
        const id = node.node.getChild('Identifier');
        if (id !== null) names.push(expr.slice(id.from, id.to));
      }
    },
  });
  return names;
}

function usedMetricNames(): Map<string, string> {
  const used = new Map<string, string>(); // name -> where
  const rule = readDocs(join(K8S, 'monitoring/prometheusrule.yaml'))[0] as { spec: { groups: Array<{ rules: Array<{ alert?: string; record?: string; expr: string }> }> } };
  for (const g of rule.spec.groups) {
    for (const r of g.rules) for (const n of metricNames(r.expr, `alert ${r.alert ?? r.record}`)) used.set(n, `alert ${r.alert ?? r.record}`);
  }
  type Panel = { title?: string; targets?: Array<{ expr?: string }>; panels?: Panel[] };
  const dash = JSON.parse(readFileSync(join(K8S, 'monitoring/grafana-dashboard.json'), 'utf8')) as { panels: Panel[]; templating: { list: Array<{ name: string; definition?: string }> } };
  const walk = (panels: Panel[]): void => {
    for (const p of panels) {
      for (const t of p.targets ?? []) {
        if (t.expr !== undefined) for (const n of metricNames(grafanaToPromql(t.expr), `panel "${p.title}"`)) used.set(n, `panel "${p.title}"`);
      }
      walk(p.panels ?? []);
    }
  };
  walk(dash.panels);
  for (const v of dash.templating.list) {
    const m = /^label_values\((.+),\s*\w+\)$/.exec(v.definition ?? '');
    if (m?.[1] !== undefined) for (const n of metricNames(m[1], `variable $${v.name}`)) used.set(n, `variable $${v.name}`);
  }
  return used;
}

/** Names in a Prometheus text exposition, with the series names histograms and summaries add. */
function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string];
    names.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
  }
  return names;
}

describe('alerts and dashboard use only metrics that /metrics exposes', () => {
  let upstream: Fixture;
  let sc: TestSidecar;
  let hasHttpRoute = false;

  before(async () => {
    upstream = await echoServer();
    const tcp = tcpRoute(upstream.port, { name: 'pg' });
    const http = { name: 'web', mode: 'http', listen: { port: 0 }, upstream: { host: '127.0.0.1', port: upstream.port } };
    try {
      // With an http route too, so that the http_* metrics are registered wherever HTTP mode registers them.
      sc = await startTestSidecar({ routes: [tcp, http] });
      hasHttpRoute = true;
    } catch (err) {
      // HTTP mode is built on another branch; until it is merged, startSidecar refuses `mode: http` and
      // only the tcp route can be started (then keepalive_sidecar_http_* may be missing, see below).
      if (!/mode http is not implemented/.test((err as Error).message)) throw err;
      sc = await startTestSidecar({ routes: [tcp] });
    }
  });
  after(async () => {
    await sc.stop();
    await upstream.close();
  });

  it('every metric name in the PrometheusRule and the Grafana dashboard appears in a scrape', async (t) => {
    const admin = sc.sidecar.admin;
    assert.ok(admin !== undefined);
    const res = await fetch(`http://127.0.0.1:${admin.port}/metrics`);
    assert.equal(res.status, 200);
    const exposed = exposedNames(await res.text());
    const used = usedMetricNames();
    assert.ok(used.size >= 10, `found ${used.size} metric names`);
    const missing = [...used].filter(([n]) => !exposed.has(n));
    // Only while HTTP mode cannot start a route (before the http branch is merged) may the HTTP metrics
    // (keepalive_sidecar_http_*) be missing; once an http route starts, every name must be there.
    const allowed = hasHttpRoute ? [] : missing.filter(([n]) => n.startsWith('keepalive_sidecar_http_'));
    if (allowed.length > 0) t.diagnostic(`no http route could be started; not checked yet: ${allowed.map(([n]) => n).join(', ')}`);
    assert.deepEqual(missing.filter((m) => !allowed.includes(m)).map(([n, where]) => `${n} (${where})`), []);
    for (const must of ['keepalive_sidecar_upstream_connections', 'keepalive_sidecar_dead_peer_detection_seconds_bucket', 'keepalive_sidecar_sockopt_failures_total', 'keepalive_sidecar_upstream_connect_failures_total']) {
      assert.ok(used.has(must), `${must} is used`);
    }
  });
});
