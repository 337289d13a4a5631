// inject: adds the sidecar (container, config, volume) to Kubernetes workload manifests, editing the source
// text so that everything it does not own stays byte-for-byte. Pure text in, text out: it reads no files,
// no environment, and starts nothing.
export { injectManifests } from './inject.js';
export type { InjectOptions, InjectResult } from './inject.js';
export { parseRouteSpec, validateRoutes } from './routes.js';
export type { RouteSpec } from './routes.js';
export { ADMIN_PORT_NAME, SIDECAR_NAME } from './sidecar.js';
