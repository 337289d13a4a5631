/**
 * What inject adds to a pod: the sidecar container (native: an init container with restartPolicy Always,
 * Kubernetes >= 1.29; legacy: a regular container), and, when the routes do not fit the single-route
 * environment shortcut, a ConfigMap with the configuration plus the volume that mounts it.
 */
import { stringify } from 'yaml';
import type { RouteSpec } from './routes.js';
import { routesForFile } from './routes.js';

export const SIDECAR_NAME = 'keepalive-sidecar';
/** Container port name of the admin listener; PodMonitors select it (at most 15 characters). */
export const ADMIN_PORT_NAME = 'sidecar-admin';
/** The loopback-only debug port (/debug/*, #11): the config default, never a container port. */
export const DEBUG_PORT = 9902;
export const CONFIG_VOLUME = 'keepalive-sidecar-config';
export const CONFIG_DIR = '/etc/keepalive-sidecar';
export const MANAGED_BY = 'keepalive-sidecar-inject';
/** UID/GID of the image's non-root user (the `node` user of the Node base image). */
const IMAGE_UID = 1000;

export interface SidecarOptions {
  readonly routes: readonly RouteSpec[];
  readonly image: string;
  readonly adminPort: number;
  /** true: regular container (clusters < 1.29); false: native sidecar. */
  readonly isLegacy: boolean;
}

/** True when the routes need a config file (several routes, or keys the environment shortcut cannot carry). */
export function needsConfigMap(routes: readonly RouteSpec[]): boolean {
  return routes.length !== 1 || Object.keys(routes[0]?.extra ?? {}).length > 0;
}

export function configMapName(workloadName: string): string {
  return `${workloadName}-${SIDECAR_NAME}`;
}

/** The sidecar container. */
export function sidecarContainer(opts: SidecarOptions): Record<string, unknown> {
  const useFile = needsConfigMap(opts.routes);
  const only = opts.routes[0];
  const env: Array<{ name: string; value: string }> = [
    // Probes come from the kubelet and scrapes from Prometheus, both to the pod IP: bind the admin port on
    // every address. The routes stay on 127.0.0.1, reachable only from inside the pod.
    { name: 'SIDECAR_ADMIN_HOST', value: '0.0.0.0' },
    { name: 'SIDECAR_ADMIN_PORT', value: String(opts.adminPort) },
    // /debug/* (upstream addresses, socket state, config) stays on loopback, reachable only from inside the
    // pod (kubectl exec / port-forward), as Envoy's admin does under Istio. Not a container port.
    { name: 'SIDECAR_DEBUG_HOST', value: '127.0.0.1' },
    { name: 'SIDECAR_DEBUG_PORT', value: String(DEBUG_PORT) },
  ];
  if (useFile) {
    env.push({ name: 'SIDECAR_CONFIG', value: `${CONFIG_DIR}/config.yaml` });
  } else if (only !== undefined) {
    env.push(
      { name: 'SIDECAR_ROUTE_NAME', value: only.name },
      { name: 'SIDECAR_MODE', value: only.mode },
      { name: 'SIDECAR_LISTEN', value: `${only.listen.host}:${only.listen.port}` },
      { name: 'SIDECAR_UPSTREAM', value: `${only.upstream.host}:${only.upstream.port}` },
    );
  }
  const probe = (path: string): Record<string, unknown> => ({ httpGet: { path, port: ADMIN_PORT_NAME } });
  return {
    name: SIDECAR_NAME,
    image: opts.image,
    // A native sidecar (KEP-753): starts before the app containers, runs for the pod's lifetime, and is
    // stopped after them, so the app never loses its upstream path while it shuts down.
    ...(opts.isLegacy ? {} : { restartPolicy: 'Always' }),
    args: ['run'],
    env,
    ports: [{ name: ADMIN_PORT_NAME, containerPort: opts.adminPort, protocol: 'TCP' }],
    // For a native sidecar the kubelet starts the next container only once this succeeds: the app starts
    // with the routes already bound.
    startupProbe: { ...probe('/ready'), periodSeconds: 1, failureThreshold: 30 },
    readinessProbe: { ...probe('/ready'), periodSeconds: 5 },
    livenessProbe: { ...probe('/live'), periodSeconds: 10, failureThreshold: 3 },
    resources: { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '256Mi' } },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: IMAGE_UID,
      runAsGroup: IMAGE_UID,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    ...(useFile ? { volumeMounts: [{ name: CONFIG_VOLUME, mountPath: CONFIG_DIR, readOnly: true }] } : {}),
  };
}

/** The pod volume for the ConfigMap. */
export function configVolume(workloadName: string): Record<string, unknown> {
  return { name: CONFIG_VOLUME, configMap: { name: configMapName(workloadName) } };
}

/** The ConfigMap holding the routes (same namespace as the workload). */
export function configMap(opts: SidecarOptions, workloadName: string, namespace: string | undefined): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: configMapName(workloadName),
      ...(namespace !== undefined ? { namespace } : {}),
      labels: { 'app.kubernetes.io/name': SIDECAR_NAME, 'app.kubernetes.io/managed-by': MANAGED_BY },
    },
    data: { 'config.yaml': stringify({ routes: routesForFile(opts.routes) }) },
  };
}
