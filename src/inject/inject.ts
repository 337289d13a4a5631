/**
 * `inject`: adds the sidecar to every workload in a stream of Kubernetes YAML documents.
 *
 * Edits are made on the source text, not by re-serialising the document: the yaml Document API locates the
 * nodes (with their offsets), and new text is spliced in at item and key boundaries. Everything inject does
 * not own stays byte-for-byte as it was (comments, quoting, folding, indentation). Each edited document is
 * parsed again and compared with the intended object; if a layout is beyond the splicer (flow collections),
 * that document is re-serialised through the Document API instead, which keeps comments but may reformat.
 * Pure: text and options in, text and warnings out.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Document, Node, Pair, YAMLMap, YAMLSeq } from 'yaml';
import { isMap, isScalar, isSeq, parseAllDocuments, parseDocument, stringify } from 'yaml';
import { InjectError } from '../errors.js';
import type { SidecarOptions } from './sidecar.js';
import { CONFIG_VOLUME, DEBUG_PORT, MANAGED_BY, SIDECAR_NAME, configMap, configMapName, configVolume, needsConfigMap, sidecarContainer } from './sidecar.js';

export type InjectOptions = SidecarOptions;

export interface InjectResult {
  readonly output: string;
  /** Things the user should know that do not stop the injection (printed to stderr by the CLI). */
  readonly warnings: readonly string[];
  /** Workloads found in the input. */
  readonly workloads: number;
}

/** Workload kinds, their apiVersion and where their pod spec sits. */
const WORKLOADS: Readonly<Record<string, { apiVersion: string; podSpec: readonly string[] }>> = {
  Pod: { apiVersion: 'v1', podSpec: ['spec'] },
  Deployment: { apiVersion: 'apps/v1', podSpec: ['spec', 'template', 'spec'] },
  StatefulSet: { apiVersion: 'apps/v1', podSpec: ['spec', 'template', 'spec'] },
  DaemonSet: { apiVersion: 'apps/v1', podSpec: ['spec', 'template', 'spec'] },
  Job: { apiVersion: 'batch/v1', podSpec: ['spec', 'template', 'spec'] },
  CronJob: { apiVersion: 'batch/v1', podSpec: ['spec', 'jobTemplate', 'spec', 'template', 'spec'] },
};

/** Kinds without a pod template that often sit in the same file; they pass through untouched. */
const PASS_THROUGH = new Set([
  'ConfigMap', 'Secret', 'Service', 'ServiceAccount', 'Namespace', 'Ingress', 'NetworkPolicy', 'PersistentVolumeClaim',
  'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding',
  'LimitRange', 'ResourceQuota', 'PriorityClass', 'Endpoints', 'EndpointSlice', 'PodMonitor', 'ServiceMonitor', 'PrometheusRule',
]);

type Js = Record<string, unknown>;
type ListKey = 'initContainers' | 'containers' | 'volumes';

interface Splice {
  readonly start: number;
  readonly end: number;
  readonly text: string;
}

/** A layout the text splicer does not handle; the document is re-serialised instead. */
class Unspliceable extends Error {}

export function injectManifests(source: string, opts: InjectOptions): InjectResult {
  const docs = parseAllDocuments(source, { prettyErrors: false });
  const list: Array<Document.Parsed> = Array.isArray(docs) ? docs : [];
  if (list.length === 0 || list.every((d) => d.contents === null)) throw new InjectError('the input holds no YAML documents');
  const warnings: string[] = [];
  const splices: Splice[] = [];
  const expected: unknown[] = [];
  const ours = new Map<string, number>(); // ConfigMap name -> document index, for ConfigMaps inject made before
  let workloads = 0;

  list.forEach((doc, i) => {
    const where = `document ${i + 1}`;
    const firstError = doc.errors[0];
    if (firstError !== undefined) throw new InjectError(`${where}: not valid YAML: ${firstError.message.split('\n')[0]}`);
    if (doc.contents === null) return;
    const js = doc.toJS({ maxAliasCount: 100 }) as unknown;
    if (js === null || typeof js !== 'object' || Array.isArray(js)) throw new InjectError(`${where}: not a Kubernetes object (expected a mapping with apiVersion and kind)`);
    const kind = (js as Js).kind;
    if (typeof kind !== 'string' || typeof (js as Js).apiVersion !== 'string') {
      throw new InjectError(`${where}: not a Kubernetes object (apiVersion and kind are required)`);
    }
    if (kind === 'ConfigMap' && isOurs(js as Js)) ours.set(String(((js as Js).metadata as Js | undefined)?.name), i);
  });

  list.forEach((doc, i) => {
    const js = doc.contents === null ? null : (doc.toJS({ maxAliasCount: 100 }) as Js);
    if (js === null) {
      expected.push(null);
      return;
    }
    const kind = js.kind as string;
    const where = `document ${i + 1} (${kind}${typeof (js.metadata as Js | undefined)?.name === 'string' ? ` ${String((js.metadata as Js).name)}` : ''})`;
    const w = WORKLOADS[kind];
    if (w === undefined) {
      if (!PASS_THROUGH.has(kind)) {
        throw new InjectError(`${where}: unknown kind "${kind}": inject handles ${Object.keys(WORKLOADS).join(', ')} (and passes ${[...PASS_THROUGH].slice(0, 4).join(', ')}, ... through)`);
      }
      if (!(kind === 'ConfigMap' && isOurs(js))) expected.push(js);
      return;
    }
    if (js.apiVersion !== w.apiVersion) throw new InjectError(`${where}: apiVersion "${String(js.apiVersion)}" is not supported for ${kind} (expected ${w.apiVersion})`);
    workloads++;
    const name = (js.metadata as Js | undefined)?.name;
    if (typeof name !== 'string' || name === '') throw new InjectError(`${where}: metadata.name is required (the sidecar's ConfigMap is named after it)`);
    const namespace = (js.metadata as Js).namespace;
    const podSpecNode = doc.getIn(w.podSpec, true);
    const podSpec = getPath(js, w.podSpec);
    if (!isMap(podSpecNode) || podSpec === undefined) throw new InjectError(`${where}: no pod spec at ${w.podSpec.join('.')}`);
    checkPorts(podSpec, opts, where);
    warnings.push(...warningsFor(kind, podSpec, opts, where));

    const plan = planPodSpec(podSpec, opts, name);
    const after = structuredClone(js);
    setPath(after, w.podSpec, plan.podSpec);
    expected.push(after);
    const docStart = i === 0 ? 0 : doc.range[0];
    const docEnd = doc.range[2];
    if (plan.ops.length > 0) {
      let docSplices: Splice[];
      try {
        docSplices = spliceOps(source, podSpecNode, plan.ops);
        const text = applySplices(source.slice(docStart, docEnd), docSplices.map((s) => ({ start: s.start - docStart, end: s.end - docStart, text: s.text })));
        if (!isDeepStrictEqual(parseDocument(text).toJS({ maxAliasCount: 100 }), after)) throw new Unspliceable('result differs from the plan');
      } catch (err) {
        if (!(err instanceof Unspliceable)) throw err;
        docSplices = [{ start: docStart, end: docEnd, text: reserialise(doc, w.podSpec, plan.podSpec) }];
        warnings.push(`${where}: re-serialised (layout: ${err.message}); comments are kept, formatting may differ`);
      }
      splices.push(...docSplices);
    }

    // The ConfigMap: updated in place when inject made it before, else added right after the workload.
    const cmName = configMapName(name);
    const cmIndex = ours.get(cmName);
    const cmDoc = cmIndex !== undefined ? list[cmIndex] : undefined;
    if (needsConfigMap(opts.routes)) {
      const cm = configMap(opts, name, typeof namespace === 'string' ? namespace : undefined);
      expected.push(cm);
      if (cmDoc !== undefined) {
        if (!isDeepStrictEqual(cmDoc.toJS(), cm)) {
          const start = cmIndex === 0 ? 0 : cmDoc.range[0];
          const marker = source.startsWith('---', cmDoc.range[0]) ? '---\n' : '';
          splices.push({ start, end: cmDoc.range[2], text: `${marker}${stringify(cm)}` });
        }
        ours.delete(cmName);
      } else {
        const lead = docEnd > 0 && source[docEnd - 1] !== '\n' ? '\n' : '';
        const next = list[i + 1];
        const tail = next !== undefined && !source.startsWith('---', next.range[0]) ? '...\n' : '';
        splices.push({ start: docEnd, end: docEnd, text: `${lead}---\n${stringify(cm)}${tail}` });
      }
    } else if (cmDoc !== undefined && cmIndex !== undefined) {
      // The routes now fit the environment: the ConfigMap inject made before is no longer used.
      splices.push({ start: cmIndex === 0 ? 0 : cmDoc.range[0], end: cmDoc.range[2], text: '' });
      ours.delete(cmName);
    }
  });
  // ConfigMaps of ours whose workload is not in this input stay as they were.
  for (const idx of ours.values()) expected.push(list[idx]?.toJS());
  if (workloads === 0) throw new InjectError(`no workload in the input: inject handles ${Object.keys(WORKLOADS).join(', ')}`);

  const output = applySplices(source, splices);
  const check = parseAllDocuments(output);
  const got = (Array.isArray(check) ? check : []).map((d) => d.toJS({ maxAliasCount: 100 }) as unknown);
  // Compared as a multiset (key order aside): added ConfigMaps sit next to their workload, not at the end.
  const unmatched = [...expected];
  const isSame = got.length === expected.length && got.every((g) => {
    const at = unmatched.findIndex((e) => isDeepStrictEqual(e, g));
    if (at >= 0) unmatched.splice(at, 1);
    return at >= 0;
  });
  if (!isSame) throw new Error('inject: internal error: the output does not parse back to the intended objects (please report this with the input)');
  return { output, warnings, workloads };
}

function isOurs(js: Js): boolean {
  const labels = (js.metadata as Js | undefined)?.labels as Js | undefined;
  return labels?.['app.kubernetes.io/managed-by'] === MANAGED_BY;
}

function getPath(js: Js, path: readonly string[]): Js | undefined {
  let cur: unknown = js;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Js)[k];
  }
  return cur !== null && typeof cur === 'object' && !Array.isArray(cur) ? (cur as Js) : undefined;
}

function setPath(js: Js, path: readonly string[], value: Js): void {
  let cur = js;
  for (const k of path.slice(0, -1)) cur = cur[k] as Js;
  cur[path[path.length - 1] as string] = value;
}

function listOf(podSpec: Js, key: ListKey): Js[] {
  const v = podSpec[key];
  return Array.isArray(v) ? (v as Js[]) : [];
}

/** Our listen ports, the admin port and the loopback debug port must not be any other container's port (they
 * share the pod's network namespace, loopback included). */
function checkPorts(podSpec: Js, opts: InjectOptions, where: string): void {
  const wanted = new Map<number, string>([
    [opts.adminPort, 'the admin port'],
    [DEBUG_PORT, 'the sidecar debug port (loopback)'],
  ]);
  for (const r of opts.routes) wanted.set(r.listen.port, `route ${r.name}`);
  for (const key of ['initContainers', 'containers'] as const) {
    for (const c of listOf(podSpec, key)) {
      if (c.name === SIDECAR_NAME) continue;
      for (const p of Array.isArray(c.ports) ? (c.ports as Js[]) : []) {
        const what = typeof p.containerPort === 'number' ? wanted.get(p.containerPort) : undefined;
        if (what !== undefined) {
          throw new InjectError(`${where}: port clash: container "${String(c.name)}" already uses port ${String(p.containerPort)}, which ${what} needs (pick another listen= or --admin-port)`);
        }
      }
    }
  }
}

function warningsFor(kind: string, podSpec: Js, opts: InjectOptions, where: string): string[] {
  const out: string[] = [];
  if (opts.isLegacy && (kind === 'Job' || kind === 'CronJob')) {
    out.push(`${where}: with --legacy the sidecar is a regular container that never exits, so the Job never completes; use a native sidecar (Kubernetes >= 1.29)`);
  }
  const grace = podSpec.terminationGracePeriodSeconds;
  if (typeof grace === 'number' && grace * 1000 <= 15000) {
    out.push(`${where}: terminationGracePeriodSeconds (${grace}) is not longer than the sidecar's drain timeout (15 s): connections may be cut before they drain`);
  }
  return out;
}

type Op =
  | { readonly op: 'insert'; readonly list: ListKey; readonly at: 'start' | 'end'; readonly value: Js }
  | { readonly op: 'replace'; readonly list: ListKey; readonly index: number; readonly value: Js }
  | { readonly op: 'remove'; readonly list: ListKey; readonly index: number };

/** The pod spec after injection and the list edits that get there. Pure. */
function planPodSpec(podSpec: Js, opts: InjectOptions, name: string): { podSpec: Js; ops: Op[] } {
  const ops: Op[] = [];
  const next = structuredClone(podSpec);
  const container = sidecarContainer(opts);
  const target: ListKey = opts.isLegacy ? 'containers' : 'initContainers';
  const other: ListKey = opts.isLegacy ? 'initContainers' : 'containers';
  const setList = (key: ListKey, items: Js[]): void => {
    if (items.length === 0) delete next[key];
    else next[key] = items;
  };

  const otherItems = listOf(next, other);
  const inOther = otherItems.findIndex((c) => c.name === SIDECAR_NAME);
  if (inOther >= 0) {
    ops.push({ op: 'remove', list: other, index: inOther });
    setList(other, otherItems.filter((_, j) => j !== inOther));
  }
  const items = listOf(next, target);
  const at = items.findIndex((c) => c.name === SIDECAR_NAME);
  if (at >= 0) {
    if (!isDeepStrictEqual(items[at], container)) {
      ops.push({ op: 'replace', list: target, index: at, value: container });
      setList(target, items.map((c, j) => (j === at ? container : c)));
    }
  } else if (opts.isLegacy) {
    // Appended: the first container stays the app, which kubectl logs/exec pick by default.
    ops.push({ op: 'insert', list: target, at: 'end', value: container });
    setList(target, [...items, container]);
  } else {
    // First init container: later init containers (migrations, say) can already use the routes.
    ops.push({ op: 'insert', list: target, at: 'start', value: container });
    setList(target, [container, ...items]);
  }

  const volumes = listOf(next, 'volumes');
  const v = volumes.findIndex((x) => x.name === CONFIG_VOLUME);
  if (needsConfigMap(opts.routes)) {
    const volume = configVolume(name);
    if (v < 0) {
      ops.push({ op: 'insert', list: 'volumes', at: 'end', value: volume });
      setList('volumes', [...volumes, volume]);
    } else if (!isDeepStrictEqual(volumes[v], volume)) {
      ops.push({ op: 'replace', list: 'volumes', index: v, value: volume });
      setList('volumes', volumes.map((x, j) => (j === v ? volume : x)));
    }
  } else if (v >= 0) {
    ops.push({ op: 'remove', list: 'volumes', index: v });
    setList('volumes', volumes.filter((_, j) => j !== v));
  }
  return { podSpec: next, ops };
}

// ---- text splicing -------------------------------------------------------------------------------------

function lineStart(src: string, pos: number): number {
  return src.lastIndexOf('\n', pos - 1) + 1;
}

/** Offset just past the end of the line that holds `pos - 1` (a node's value end). */
function afterLine(src: string, pos: number): number {
  if (pos > 0 && src[pos - 1] === '\n') return pos;
  const nl = src.indexOf('\n', pos);
  return nl < 0 ? src.length : nl + 1;
}

function range(node: Node | null | undefined): [number, number, number] {
  const r = node?.range;
  if (r === undefined || r === null) throw new Unspliceable('node without a source range');
  return r;
}

/** Column of the `-` of a block sequence item; throws Unspliceable when the item does not start its own line. */
function dashColumn(src: string, item: Node): number {
  const start = range(item)[0];
  const ls = lineStart(src, start);
  const m = /^( *)- +$/.exec(src.slice(ls, start));
  if (m === null) throw new Unspliceable('a sequence item that does not start its own line');
  return (m[1] ?? '').length;
}

function keyColumn(src: string, pair: Pair): number {
  const start = range(pair.key as Node)[0];
  const ls = lineStart(src, start);
  if (!/^ *$/.test(src.slice(ls, start))) throw new Unspliceable('a key that does not start its own line');
  return start - ls;
}

/** One block sequence item, rendered at `dashCol`. */
function renderItem(value: Js, dashCol: number, indentSeq: boolean): string {
  const text = stringify([value], { indentSeq, lineWidth: 0 });
  const pad = ' '.repeat(dashCol);
  return text
    .split('\n')
    .map((l) => (l.length > 0 ? pad + l : l))
    .join('\n');
}

function findPair(map: YAMLMap, key: string): Pair | undefined {
  return map.items.find((p) => isScalar(p.key) && p.key.value === key) as Pair | undefined;
}

function blockSeq(pair: Pair): YAMLSeq<Node> {
  if (!isSeq(pair.value) || pair.value.flow === true) throw new Unspliceable(`${String((pair.key as { value?: unknown }).value)} is not a block sequence`);
  return pair.value as YAMLSeq<Node>;
}

/** The sequence style of this file: are `- ` items indented under their key? Taken from `containers`. */
function seqIndented(src: string, map: YAMLMap): boolean {
  const pair = findPair(map, 'containers');
  if (pair === undefined || !isSeq(pair.value) || pair.value.flow === true) return false;
  const first = (pair.value as YAMLSeq<Node>).items[0];
  return first !== undefined ? dashColumn(src, first) > keyColumn(src, pair) : false;
}

function spliceOps(src: string, podSpec: YAMLMap, ops: readonly Op[]): Splice[] {
  if (podSpec.flow === true) throw new Unspliceable('the pod spec is a flow mapping');
  if (podSpec.items.length === 0) throw new Unspliceable('the pod spec is empty');
  const indentSeq = seqIndented(src, podSpec);
  const out: Splice[] = [];
  for (const op of ops) {
    const pair = findPair(podSpec, op.list);
    switch (op.op) {
      case 'insert': {
        if (pair === undefined || (isScalar(pair.value) && pair.value.value === null)) {
          out.push(newKey(src, podSpec, op.list, op.value, indentSeq, pair));
          break;
        }
        const seq = blockSeq(pair);
        const first = seq.items[0];
        const last = seq.items[seq.items.length - 1];
        if (first === undefined || last === undefined) throw new Unspliceable('an empty sequence');
        const col = dashColumn(src, first);
        const pos = op.at === 'start' ? lineStart(src, range(first)[0]) : afterLine(src, range(last)[1]);
        const lead = pos === src.length && !src.endsWith('\n') ? '\n' : '';
        out.push({ start: pos, end: pos, text: lead + renderItem(op.value, col, col > keyColumn(src, pair)) });
        break;
      }
      case 'replace': {
        if (pair === undefined) throw new Unspliceable('missing list');
        const seq = blockSeq(pair);
        const [start, end] = itemSpan(src, seq, op.index);
        const item = seq.items[op.index] as Node;
        const col = dashColumn(src, item);
        out.push({ start, end, text: renderItem(op.value, col, col > keyColumn(src, pair)) });
        break;
      }
      case 'remove': {
        if (pair === undefined) throw new Unspliceable('missing list');
        const seq = blockSeq(pair);
        if (seq.items.length === 1) {
          // The only item: the key goes too (an empty list would read back as null).
          out.push({ start: lineStart(src, range(pair.key as Node)[0]), end: itemSpan(src, seq, 0)[1], text: '' });
        } else {
          const [start, end] = itemSpan(src, seq, op.index);
          out.push({ start, end, text: '' });
        }
        break;
      }
    }
  }
  return out;
}

/** From the line of item i's dash to the line of the next item's dash (or the end of item i's last line). */
function itemSpan(src: string, seq: YAMLSeq<Node>, i: number): [number, number] {
  const item = seq.items[i];
  if (item === undefined) throw new Unspliceable('missing item');
  dashColumn(src, item);
  const start = lineStart(src, range(item)[0]);
  const next = seq.items[i + 1];
  return [start, next !== undefined ? lineStart(src, range(next)[0]) : afterLine(src, range(item)[1])];
}

/** Adds `key:` with one item to the pod spec: initContainers just before containers, others at the end. */
function newKey(src: string, podSpec: YAMLMap, key: ListKey, value: Js, indentSeq: boolean, existing: Pair | undefined): Splice {
  const anyPair = podSpec.items[0] as Pair;
  const col = keyColumn(src, anyPair);
  const body = `${' '.repeat(col)}${key}:\n${renderItem(value, col + (indentSeq ? 2 : 0), indentSeq)}`;
  if (existing !== undefined) {
    // `key:` with no value (null): replace that line.
    const start = lineStart(src, range(existing.key as Node)[0]);
    return { start, end: afterLine(src, range(existing.value as Node)[1]), text: body };
  }
  const containers = findPair(podSpec, 'containers');
  if (key === 'initContainers' && containers !== undefined) {
    const pos = lineStart(src, range(containers.key as Node)[0]);
    keyColumn(src, containers);
    return { start: pos, end: pos, text: body };
  }
  const last = podSpec.items[podSpec.items.length - 1] as Pair;
  keyColumn(src, last);
  const pos = afterLine(src, range((last.value ?? last.key) as Node)[1]);
  const lead = pos === src.length && !src.endsWith('\n') ? '\n' : '';
  return { start: pos, end: pos, text: lead + body };
}

function applySplices(text: string, splices: readonly Splice[]): string {
  // Last first, so earlier offsets stay valid. Inserts at one offset keep their order: the later one is
  // applied first and so ends up after the earlier one.
  const sorted = splices.map((s, i) => ({ ...s, i })).sort((a, b) => b.start - a.start || b.end - a.end || b.i - a.i);
  let out = text;
  let limit = Infinity;
  for (const s of sorted) {
    if (s.end > limit) throw new Error('inject: internal error: overlapping edits');
    out = out.slice(0, s.start) + s.text + out.slice(s.end);
    limit = s.start;
  }
  return out;
}

/** Fallback for layouts the splicer does not handle: set the changed lists through the Document API. */
function reserialise(doc: Document.Parsed, podPath: readonly string[], podSpec: Js): string {
  const clone = doc.clone();
  for (const key of ['initContainers', 'containers', 'volumes'] as const) {
    const path = [...podPath, key];
    if (podSpec[key] === undefined) clone.deleteIn(path);
    else clone.setIn(path, clone.createNode(podSpec[key]));
  }
  return clone.toString({ lineWidth: 0 });
}
