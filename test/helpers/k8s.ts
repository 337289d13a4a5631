/**
 * Validates Kubernetes objects against the API schemas (kubernetes-models 5.x, Kubernetes >= 1.29 fields
 * such as restartPolicy on init containers; prometheus-operator models for PodMonitor/PrometheusRule).
 * The schemas allow unknown fields (as the API server's non-strict mode does), so Container and PodSpec
 * keys are also checked against the schema's property list, like `kubectl apply --validate=strict`.
 */
import { readFileSync } from 'node:fs';
import { ConfigMap, Pod, Secret, Service } from 'kubernetes-models/v1';
import { DaemonSet, Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { PodMonitor, PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';

type Model = new (data: never) => { validate(): void };

const MODELS: Readonly<Record<string, Model>> = {
  'v1/ConfigMap': ConfigMap as unknown as Model,
  'v1/Pod': Pod as unknown as Model,
  'v1/Service': Service as unknown as Model,
  'v1/Secret': Secret as unknown as Model,
  'apps/v1/Deployment': Deployment as unknown as Model,
  'apps/v1/StatefulSet': StatefulSet as unknown as Model,
  'apps/v1/DaemonSet': DaemonSet as unknown as Model,
  'batch/v1/Job': Job as unknown as Model,
  'batch/v1/CronJob': CronJob as unknown as Model,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor as unknown as Model,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor as unknown as Model,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule as unknown as Model,
};

/** Property names the schema declares for an object type, read from the compiled validator. */
function schemaKeys(schema: string): ReadonlySet<string> {
  const file = new URL(`../../../node_modules/kubernetes-models/_schemas/${schema}.js`, import.meta.url);
  const src = readFileSync(file, 'utf8');
  return new Set([...src.matchAll(/void 0!==data\.(\w+)/g)].map((m) => m[1] as string));
}

let containerKeys: ReadonlySet<string> | undefined;
let podSpecKeys: ReadonlySet<string> | undefined;

const POD_SPEC_PATHS: Readonly<Record<string, readonly string[]>> = {
  Pod: ['spec'],
  Deployment: ['spec', 'template', 'spec'],
  StatefulSet: ['spec', 'template', 'spec'],
  DaemonSet: ['spec', 'template', 'spec'],
  Job: ['spec', 'template', 'spec'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
};

/** Throws with a readable message when `obj` is not a valid object of its kind. */
export function validateK8s(obj: unknown, where: string): void {
  const o = obj as { apiVersion?: unknown; kind?: unknown };
  const key = `${String(o.apiVersion)}/${String(o.kind)}`;
  const model = MODELS[key];
  if (model === undefined) throw new Error(`${where}: no schema for ${key}`);
  try {
    new model(obj as never).validate();
  } catch (err) {
    throw new Error(`${where}: ${key} does not validate: ${(err as Error).message}`);
  }
  const path = POD_SPEC_PATHS[String(o.kind)];
  if (path === undefined) return;
  containerKeys ??= schemaKeys('IoK8sApiCoreV1Container');
  podSpecKeys ??= schemaKeys('IoK8sApiCoreV1PodSpec');
  let spec: unknown = obj;
  for (const k of path) spec = (spec as Record<string, unknown>)[k];
  const podSpec = spec as Record<string, unknown>;
  for (const k of Object.keys(podSpec)) if (!podSpecKeys.has(k)) throw new Error(`${where}: unknown PodSpec field "${k}"`);
  for (const list of ['initContainers', 'containers'] as const) {
    for (const c of (podSpec[list] ?? []) as Array<Record<string, unknown>>) {
      for (const k of Object.keys(c)) if (!containerKeys.has(k)) throw new Error(`${where}: unknown field "${k}" in ${list} "${String(c.name)}"`);
    }
  }
}
