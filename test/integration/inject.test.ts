/**
 * `keepalive-sidecar inject`: golden files per workload kind (test/fixtures/k8s/<kind>.yaml ->
 * <kind>.injected.yaml), idempotency, multi-document streams, switching layouts, and the error cases.
 * Every output is validated against the Kubernetes API schemas (>= 1.29), and the sidecar's configuration
 * as written into the manifest is loaded with the runtime's own config loader.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { cliMain } from '../../src/cli/index.js';
import { EXIT } from '../../src/cli/index.js';
import { loadConfig } from '../../src/config/index.js';
import { InjectError } from '../../src/errors.js';
import type { InjectOptions } from '../../src/inject/index.js';
import { injectManifests, parseRouteSpec } from '../../src/inject/index.js';
import { validateK8s } from '../helpers/k8s.js';

const FIXTURES = new URL('../../../test/fixtures/k8s/', import.meta.url);
const read = (name: string): string => readFileSync(new URL(name, FIXTURES), 'utf8');
const PG = 'name=pg,mode=tcp,listen=15432,upstream=postgres.db.svc:5432';
const REDIS = 'name=redis,listen=16379,upstream=redis.cache.svc:6379,userTimeoutMs=8000';
const KINDS = ['pod', 'deployment', 'statefulset', 'daemonset', 'job', 'cronjob'] as const;

function opts(routes: string[], extra: Partial<InjectOptions> = {}): InjectOptions {
  return { routes: routes.map(parseRouteSpec), image: 'keepalive-sidecar:test', adminPort: 9901, isLegacy: false, ...extra };
}

type Obj = Record<string, unknown>;
function docs(text: string): Obj[] {
  const all = parseAllDocuments(text);
  assert.ok(Array.isArray(all));
  return all.map((d) => {
    assert.deepEqual(d.errors, []);
    return d.toJS() as Obj;
  }).filter((d) => d !== null);
}

function podSpecOf(obj: Obj): Obj {
  const path = obj.kind === 'Pod' ? ['spec'] : obj.kind === 'CronJob' ? ['spec', 'jobTemplate', 'spec', 'template', 'spec'] : ['spec', 'template', 'spec'];
  let cur: unknown = obj;
  for (const k of path) cur = (cur as Obj)[k];
  return cur as Obj;
}

function sidecarOf(obj: Obj): { list: string; index: number; container: Obj } {
  const spec = podSpecOf(obj);
  for (const list of ['initContainers', 'containers']) {
    const items = (spec[list] ?? []) as Obj[];
    const index = items.findIndex((c) => c.name === 'keepalive-sidecar');
    if (index >= 0) return { list, index, container: items[index] as Obj };
  }
  assert.fail(`no sidecar in ${String(obj.kind)}`);
}

/** Every line of `input` appears in `output`, in order: inject only added lines. */
function assertOnlyAdded(input: string, output: string): void {
  const out = output.split('\n');
  let j = 0;
  for (const line of input.split('\n')) {
    while (j < out.length && out[j] !== line) j++;
    assert.ok(j < out.length, `input line ${JSON.stringify(line)} is missing or moved in the output`);
    j++;
  }
}

/** Validates every document and loads the sidecar's configuration the way the container will. */
function assertDeployable(output: string): void {
  const objs = docs(output);
  const configMaps = new Map(objs.filter((o) => o.kind === 'ConfigMap').map((o) => [String((o.metadata as Obj).name), o]));
  objs.forEach((o, i) => validateK8s(o, `document ${i + 1}`));
  for (const o of objs.filter((x) => ['Pod', 'Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob'].includes(String(x.kind)))) {
    const { container } = sidecarOf(o);
    const env = Object.fromEntries((container.env as Array<{ name: string; value: string }>).map((e) => [e.name, e.value]));
    const file = env.SIDECAR_CONFIG;
    let readFile: ((p: string) => string) | undefined;
    if (file !== undefined) {
      const volume = ((podSpecOf(o).volumes ?? []) as Obj[]).find((v) => v.name === 'keepalive-sidecar-config');
      const cm = configMaps.get(String((volume?.configMap as Obj | undefined)?.name));
      assert.ok(cm !== undefined, 'the ConfigMap the volume names is in the output');
      readFile = () => String((cm.data as Obj)['config.yaml']);
    }
    const config = loadConfig({ env, readFile });
    assert.equal(config.admin.host, '0.0.0.0');
    assert.ok(config.routes.length >= 1);
    for (const r of config.routes) assert.equal(r.listen.host, '127.0.0.1');
    const ports = container.ports as Array<{ name: string; containerPort: number }>;
    assert.deepEqual(ports.map((p) => [p.name, p.containerPort]), [['sidecar-admin', config.admin.port]]);
  }
}

describe('inject: golden files, one per workload kind', () => {
  for (const kind of KINDS) {
    it(`${kind}: matches ${kind}.injected.yaml, validates, is idempotent, and only adds lines`, () => {
      const input = read(`${kind}.yaml`);
      const golden = read(`${kind}.injected.yaml`);
      const first = injectManifests(input, opts([PG]));
      assert.equal(first.output, golden);
      assert.equal(first.workloads, 1);
      assertOnlyAdded(input, first.output);
      assertDeployable(first.output);
      const [obj] = docs(first.output);
      const s = sidecarOf(obj as Obj);
      assert.deepEqual([s.list, s.index, s.container.restartPolicy], ['initContainers', 0, 'Always'], 'a native sidecar, first init container');
      assert.equal(injectManifests(first.output, opts([PG])).output, first.output, 'second run changes nothing');
    });
  }

  it('deployment --legacy: a regular container after the app, no restartPolicy; switching back gives the native golden', () => {
    const input = read('deployment.yaml');
    const legacy = injectManifests(input, opts([PG], { isLegacy: true }));
    assert.equal(legacy.output, read('deployment.legacy.injected.yaml'));
    assertOnlyAdded(input, legacy.output);
    assertDeployable(legacy.output);
    const s = sidecarOf(docs(legacy.output)[0] as Obj);
    assert.deepEqual([s.list, s.index, s.container.restartPolicy], ['containers', 1, undefined]);
    assert.equal(injectManifests(legacy.output, opts([PG], { isLegacy: true })).output, legacy.output, 'idempotent');
    assert.equal(injectManifests(legacy.output, opts([PG])).output, read('deployment.injected.yaml'), 'legacy -> native');
    assert.equal(injectManifests(read('deployment.injected.yaml'), opts([PG], { isLegacy: true })).output, legacy.output, 'native -> legacy');
  });

  it('a Job with --legacy warns that it would never complete', () => {
    const r = injectManifests(read('job.yaml'), opts([PG], { isLegacy: true }));
    assert.ok(r.warnings.some((w) => w.includes('never completes')), r.warnings.join('\n'));
  });
});

describe('inject: multi-document streams and ConfigMap configuration', () => {
  it('injects every workload, adds one ConfigMap per workload, leaves Service and Secret byte-for-byte', () => {
    const input = read('multi.yaml');
    const r = injectManifests(input, opts([PG, REDIS]));
    assert.equal(r.output, read('multi.injected.yaml'));
    assert.equal(r.workloads, 2);
    assertOnlyAdded(input, r.output);
    assertDeployable(r.output);
    assert.deepEqual(docs(r.output).map((o) => `${String(o.kind)}/${String((o.metadata as Obj).name)}`), [
      'Service/api', 'Deployment/api', 'ConfigMap/api-keepalive-sidecar', 'Secret/api-db', 'Job/api-migrate', 'ConfigMap/api-migrate-keepalive-sidecar',
    ]);
    assert.equal(injectManifests(r.output, opts([PG, REDIS])).output, r.output, 'second run changes nothing');
  });

  it('changing the routes updates the sidecar in place; going back to one route drops the ConfigMap and volume', () => {
    const input = read('multi.yaml');
    const two = injectManifests(input, opts([PG, REDIS])).output;
    const one = injectManifests(input, opts([PG])).output;
    assert.equal(injectManifests(two, opts([PG])).output, one);
    assert.equal(injectManifests(one, opts([PG, REDIS])).output, two);
    const other = injectManifests(two, opts([PG, 'name=redis,listen=16380,upstream=redis.cache.svc:6379'])).output;
    assertDeployable(other);
    assert.match(other, /port: 16380/);
    assert.doesNotMatch(other, /port: 16379/);
  });

  it('a flow-style pod spec is re-serialised (with a warning) and still valid', () => {
    const input = 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: "b:1"}]}\n';
    const r = injectManifests(input, opts([PG]));
    assert.ok(r.warnings.some((w) => w.includes('re-serialised')), r.warnings.join('\n'));
    assertDeployable(r.output);
    assert.equal(injectManifests(r.output, opts([PG])).output, r.output);
  });
});

describe('inject: bad input is refused with a clear error', () => {
  const cases: Array<[string, string, RegExp, string[]?]> = [
    ['not YAML', 'kind: [unclosed\n  - x: : y\n', /not valid YAML/],
    ['a scalar document', 'just text\n', /not a Kubernetes object/],
    ['no kind', 'apiVersion: v1\nmetadata: {name: x}\n', /apiVersion and kind are required/],
    ['unknown kind', 'apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: x}\n', /unknown kind "Rollout"/],
    ['wrong apiVersion', 'apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: x}\nspec: {}\n', /apiVersion "extensions\/v1beta1" is not supported/],
    ['no workload', 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}]}\n', /no workload/],
    ['empty input', '', /no YAML documents/],
    ['no pod spec', 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 1}\n', /no pod spec/],
    ['no name', 'apiVersion: v1\nkind: Pod\nmetadata: {generateName: x-}\nspec:\n  containers:\n    - {name: a, image: b}\n', /metadata.name is required/],
    ['listen port clash', read('deployment.yaml'), /port clash: container "app" already uses port 8080, which route web needs/, ['name=web,listen=8080,upstream=x:80']],
    ['admin port clash', read('daemonset.yaml'), /port clash: container "agent" already uses port 9100, which the admin port needs/],
  ];
  for (const [name, input, message, routes] of cases) {
    it(name, () => {
      assert.throws(() => injectManifests(input, opts(routes ?? [PG], name === 'admin port clash' ? { adminPort: 9100 } : {})), (err: unknown) => {
        assert.ok(err instanceof InjectError, String(err));
        assert.match(err.message, message);
        return true;
      });
    });
  }
});

describe('inject: the command line', () => {
  async function run(argv: string[], stdin = ''): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const code = await cliMain(argv, { env: {}, out: (t) => (out += t), err: (t) => (err += t), readStdin: async () => stdin });
    return { code, out, err };
  }
  const file = new URL('deployment.yaml', FIXTURES).pathname;

  it('reads a file, or stdin with - (and with no file), and prints to stdout', async () => {
    const fromFile = await run(['inject', file, '--route', PG, '--image', 'keepalive-sidecar:test']);
    assert.deepEqual([fromFile.code, fromFile.err], [EXIT.ok, '']);
    assert.equal(fromFile.out, read('deployment.injected.yaml'));
    const fromStdin = await run(['inject', '-', '--route', PG, '--image', 'keepalive-sidecar:test'], read('deployment.yaml'));
    assert.equal(fromStdin.out, fromFile.out);
    const implicit = await run(['inject', '--route', PG, '--image', 'keepalive-sidecar:test'], read('deployment.yaml'));
    assert.equal(implicit.out, fromFile.out);
    const legacy = await run(['inject', file, '--legacy', '--route', PG, '--image', 'keepalive-sidecar:test']);
    assert.equal(legacy.out, read('deployment.legacy.injected.yaml'));
  });

  it('bad input: exit 6, a message on stderr, nothing on stdout', async () => {
    for (const stdin of ['a: [', 'apiVersion: v1\nkind: Gadget\n']) {
      const r = await run(['inject', '-', '--route', PG], stdin);
      assert.equal(r.code, EXIT.input);
      assert.equal(r.out, '');
      assert.match(r.err, /^keepalive-sidecar inject: /);
    }
    const missing = await run(['inject', '/nonexistent/x.yaml', '--route', PG]);
    assert.deepEqual([missing.code, missing.out], [EXIT.input, '']);
    assert.match(missing.err, /cannot read \/nonexistent\/x.yaml: ENOENT/);
    const clash = await run(['inject', file, '--route', 'name=web,listen=8080,upstream=x:80']);
    assert.equal(clash.code, EXIT.input);
    assert.match(clash.err, /port clash/);
  });

  it('usage errors exit 2, invalid route values exit 3', async () => {
    assert.equal((await run(['inject', file])).code, EXIT.usage, 'no --route');
    assert.equal((await run(['inject', file, '--route', 'name=pg,listen=1'])).code, EXIT.usage, 'no upstream');
    assert.equal((await run(['inject', file, '--route', 'name=pg,listen=1,upstream=a:1,colour=red'])).code, EXIT.usage, 'unknown key');
    assert.equal((await run(['inject', file, 'extra', '--route', PG])).code, EXIT.usage, 'two inputs');
    assert.equal((await run(['run', '--route', PG])).code, EXIT.usage, '--route outside inject');
    assert.equal((await run(['inject', file, '--route', PG, '--admin-port', '99999'])).code, EXIT.usage);
    const bad = await run(['inject', file, '--route', 'name=PG,listen=15432,upstream=a:1', '--route', 'name=b,listen=15432,upstream=a:2']);
    assert.equal(bad.code, EXIT.config);
    assert.match(bad.err, /routes\[0\] \(PG\)\.name/);
    assert.match(bad.err, /15432 is already used/);
  });
});
