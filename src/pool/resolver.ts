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
 * name" do we ask `dns.lookup({ all: true })` once (no TTL), so names only nsswitch knows keep working as
 * they did when net.connect resolved them. With `upstream.dnsServers` set, only those servers are asked,
 * and the name is tried as given (and with the search list when it has fewer dots than ndots).
 *
 * /etc/hosts (system mode only): an exact match of the name wins before DNS, as glibc's `hosts: files dns`
 * (Kubernetes hostAliases are written there), and it works while DNS is down. The file is re-read when
 * its mtime or size changes (a stat per round).
 *
 * Address families, as getaddrinfo's AI_ADDRCONFIG: an address of a family the host has no usable address
 * of (no non-loopback, non-link-local IPv4 / IPv6 on any interface) is dropped, so an IPv4-only pod does
 * not get AAAA endpoints whose every connect fails (ENETUNREACH). Loopback answers (127/8, ::1) are always
 * kept: they are reachable whenever `lo` is up, whatever else is configured, and a loopback-only host
 * (a test namespace) must still reach them (glibc special-cases them the same way). Both families are
 * still queried: the decision is per answer, and the interfaces are read again each round (cheap).
 */
import dns from 'node:dns';
import { readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';

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
  /** Path of the hosts file, system mode only (tests pass their own). */
  readonly hostsPath?: string;
  /** The families the host can reach non-loopback addresses with (tests pass their own); default: hostFamilies(). */
  readonly families?: () => AddressFamilies;
}

/** Which families the host has a usable (non-loopback, non-link-local) address of. */
export interface AddressFamilies {
  readonly v4: boolean;
  readonly v6: boolean;
}

/** AI_ADDRCONFIG's test over os.networkInterfaces(): loopback and link-local addresses do not count. */
export function hostFamilies(ifaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces()): AddressFamilies {
  let v4 = false;
  let v6 = false;
  for (const list of Object.values(ifaces)) {
    for (const i of list ?? []) {
      if (i.internal) continue;
      if (i.family === 'IPv4' && !i.address.startsWith('169.254.')) v4 = true;
      if (i.family === 'IPv6' && !/^fe[89ab]/i.test(i.address) && i.address !== '::1') v6 = true;
    }
  }
  return { v4, v6 };
}

/** True for 127.0.0.0/8 and ::1 (and ::ffff:127.x). */
export function isLoopbackAddress(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.toLowerCase().startsWith('::ffff:127.');
}

/** Drops the answers AI_ADDRCONFIG would: a non-loopback address of a family the host has none of. */
export function filterByAddrConfig(found: readonly ResolvedAddress[], families: AddressFamilies): ResolvedAddress[] {
  return found.filter((a) => isLoopbackAddress(a.address) || (a.family === 4 ? families.v4 : families.v6));
}

/**
 * The addresses an /etc/hosts text gives `host` (case-insensitive exact match of the canonical name or an
 * alias, trailing dot ignored), every matching line in file order (glibc's default `multi on`).
 */
export function parseHosts(text: string, host: string): ResolvedAddress[] {
  const want = host.replace(/\.$/, '').toLowerCase();
  const out: ResolvedAddress[] = [];
  for (const raw of text.split('\n')) {
    const [addr, ...names] = raw.replace(/#.*$/, '').trim().split(/\s+/);
    if (addr === undefined || names.length === 0) continue;
    const family = net.isIP(addr);
    if (family === 0 || !names.some((n) => n.toLowerCase() === want)) continue;
    if (!out.some((a) => a.address === addr)) out.push({ address: addr, family: family as 4 | 6 });
  }
  return out;
}

/** /etc/hosts, re-read when its mtime or size changes; a missing file has no entries. */
function hostsFile(path: string): () => string {
  let stamp = '';
  let text = '';
  return () => {
    try {
      const st = statSync(path);
      const now = `${st.mtimeMs}/${st.size}/${st.ino}`;
      if (now !== stamp) {
        text = readFileSync(path, 'utf8');
        stamp = now;
      }
    } catch {
      stamp = '';
      text = '';
    }
    return text;
  };
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
  const hosts = isSystem ? hostsFile(opts.hostsPath ?? '/etc/hosts') : undefined;
  const familiesOf = opts.families ?? (() => hostFamilies());
  return async (host) => {
    if (net.isIP(host) !== 0) return [{ address: host, family: net.isIP(host) as 4 | 6 }];
    const families = familiesOf();
    let filtered = 0;
    if (hosts !== undefined) {
      const local = filterByAddrConfig(parseHosts(hosts(), host), families);
      if (local.length > 0) return local;
    }
    let firstFailure: Error | undefined;
    for (const name of candidateNames(host, conf)) {
      const [a, aaaa] = await Promise.allSettled([r.resolve4(name, { ttl: true }), r.resolve6(name, { ttl: true })]);
      const all: ResolvedAddress[] = [];
      if (a.status === 'fulfilled') for (const x of a.value) all.push({ address: x.address, family: 4, ttlSec: x.ttl });
      if (aaaa.status === 'fulfilled') for (const x of aaaa.value) all.push({ address: x.address, family: 6, ttlSec: x.ttl });
      const out = filterByAddrConfig(all, families);
      filtered += all.length - out.length;
      if (out.length > 0) return out;
      for (const s of [a, aaaa]) {
        if (s.status === 'rejected' && !NOT_FOUND.has((s.reason as NodeJS.ErrnoException).code ?? '')) firstFailure ??= s.reason as Error;
      }
    }
    if (firstFailure !== undefined) throw firstFailure;
    if (isSystem && filtered === 0) {
      // Every candidate said "no such name" to DNS: nsswitch (myhostname, ...) may still know it.
      const found = filterByAddrConfig((await dns.promises.lookup(host, { all: true })).map((x) => ({ address: x.address, family: x.family === 6 ? 6 : 4 })), families);
      if (found.length > 0) return found;
    }
    const why = filtered > 0 ? `only ${filtered} address(es) of a family this host has no address of` : 'no A or AAAA record';
    const err = new Error(`${host}: ${why} (tried ${candidateNames(host, conf).join(', ')})`) as NodeJS.ErrnoException;
    err.code = 'ENOTFOUND';
    throw err;
  };
}
