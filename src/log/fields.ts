/** Canonical log field names, so logs stay greppable and dashboards can rely on them. */
export const F = {
  component: 'component',
  route: 'route',
  connId: 'connId',
  reason: 'reason',
  ageMs: 'ageMs',
  sinceLastRecvMs: 'sinceLastRecvMs',
  bytesIn: 'bytesIn',
  bytesOut: 'bytesOut',
  upstream: 'upstream',
  local: 'local',
  remote: 'remote',
  connectMs: 'connectMs',
  sockopts: 'sockopts',
  option: 'option',
  err: 'err',
} as const;
