/**
 * Name resolution for a route's endpoints (issue 14): every A and AAAA record of `upstream.host`, with TTLs.
 *
 * Why c-ares (`dns.Resolver#resolve4/resolve6`) and not `dns.lookup`: resolve* returns TTLs (the re-resolve
 * interval follows them) and runs on the event loop, while `dns.lookup` is getaddrinfo on libuv's 4-thread
 * pool, where a few slow DNS answers stall every other fs/dns job of the process. But c-ares' resolve* sends
 * the name exactly as given: it applies neither the search list nor `ndots` of /etc/resolv.conf, which every
 * Kubernetes pod relies on (`search ns.svc.cluster.local svc.cluster.local cluster.local`, `ndots:5`, so
 * `inventory` means `inventory.ns.svc.cluster.local`). So for the system default we read /etc/resolv.conf
 * ourselves and try the candidates in resolv.conf(5) order. Only when every candidate answers "no such
 * name" do we ask `dns.lookup({ all: true })` once (no TTL), so /etc/hosts names and `localhost` keep
 * working as they did when net.connect resolved them. With `upstream.dnsServers` set, only those servers
 * are asked, and the name is tried as given (and with the search list when it has fewer dots than ndots).
 */
import dns from 'node:dns';
import { readFileSync } from 'node:fs';
import net from 'node:net';

/** One resolved address; `ttlSec` when the resolver gave one (c-ares does, getaddrinfo does not). */
export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
  readonly ttlSec?: number | undefined;
}

/** Resolves a host name to every address (A and AAAA). Rejects when none can be had (the error says why). */
export type ResolveFn = (host: string) => Promise<ResolvedAddress[]>;

/** The parts of resolv.conf(5) that decide which names are asked. */
export interface SearchConfig {
  readonly search: readonly string[];
  /** Names with at least this many dots are tried as given first (resolv.conf default 1, pods 5). */
  readonly ndots: number;
}

/** Parses resolv.conf text: the last `search`/`domain` line wins (as in glibc), `options ndots:N` (max 15). */
export function parseResolvConf(text: string): SearchConfig {
  let search: string[] = [];
  let ndots = 1;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...rest] = line.split(/\s+/);
    if (key === 'search' || key === 'domain') search = rest.filter((s) => s.length > 0 && s !== '.').map((s) => s.replace(/\.$/, ''));
    if (key === 'options') {
      for (const o of rest) {
        const m = /^ndots:(\d+)$/.exec(o);
        if (m !== null) ndots = Math.min(15, Number(m[1]));
      }
    }
  }
  return { search, ndots };
}

/**
 * The names to try, in order (resolv.conf(5)): a name ending in "." only as given; a name with at least
 * `ndots` dots as given first, then with each search domain; otherwise the search domains first.
 */
export function candidateNames(host: string, conf: SearchConfig): string[] {
  if (host.endsWith('.')) return [host.slice(0, -1)];
  const dots = host.split('.').length - 1;
  const searched = conf.search.map((d) => `${host}.${d}`);
  return dots >= conf.ndots ? [host, ...searched] : [...searched, host];
}

/** Error codes that mean "this name has no such record" (try the next candidate), not "the resolver failed". */
const NOT_FOUND = new Set(['ENOTFOUND', 'ENODATA', 'NOTFOUND', 'NODATA']);

/** Per query: c-ares' timeout and tries (so a dead resolver fails a round in ~2 s, not 5 s x 4). */
const QUERY_TIMEOUT_MS = 1000;
const QUERY_TRIES = 2;

export interface ResolverOptions {
  /** "host:port" (or "[v6]:port") list; empty = the system's resolv.conf. */
  readonly dnsServers: readonly string[];
  /** Path of resolv.conf (tests pass their own). */
  readonly resolvConfPath?: string;
}

/** The resolver for a route. An IP literal never reaches it (the endpoint set takes it as is). */
export function createResolver(opts: ResolverOptions): ResolveFn {
  const r = new dns.promises.Resolver({ timeout: QUERY_TIMEOUT_MS, tries: QUERY_TRIES });
  const isSystem = opts.dnsServers.length === 0;
  if (!isSystem) r.setServers([...opts.dnsServers]);
  let conf: SearchConfig;
  try {
    conf = parseResolvConf(readFileSync(opts.resolvConfPath ?? '/etc/resolv.conf', 'utf8'));
  } catch {
    conf = { search: [], ndots: 1 };
  }
  return async (host) => {
    if (net.isIP(host) !== 0) return [{ address: host, family: net.isIP(host) as 4 | 6 }];
    let firstFailure: Error | undefined;
    for (const name of candidateNames(host, conf)) {
      const [a, aaaa] = await Promise.allSettled([r.resolve4(name, { ttl: true }), r.resolve6(name, { ttl: true })]);
      const out: ResolvedAddress[] = [];
      if (a.status === 'fulfilled') for (const x of a.value) out.push({ address: x.address, family: 4, ttlSec: x.ttl });
      if (aaaa.status === 'fulfilled') for (const x of aaaa.value) out.push({ address: x.address, family: 6, ttlSec: x.ttl });
      if (out.length > 0) return out;
      for (const s of [a, aaaa]) {
        if (s.status === 'rejected' && !NOT_FOUND.has((s.reason as NodeJS.ErrnoException).code ?? '')) firstFailure ??= s.reason as Error;
      }
    }
    if (firstFailure !== undefined) throw firstFailure;
    if (isSystem) {
      // Every candidate said "no such name" to DNS: /etc/hosts (and nsswitch) may still know it.
      const found = await dns.promises.lookup(host, { all: true });
      if (found.length > 0) return found.map((x) => ({ address: x.address, family: x.family === 6 ? 6 : 4 }));
    }
    const err = new Error(`${host}: no A or AAAA record (tried ${candidateNames(host, conf).join(', ')})`) as NodeJS.ErrnoException;
    err.code = 'ENOTFOUND';
    throw err;
  };
}
