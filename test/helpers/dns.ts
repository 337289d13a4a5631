/**
 * A real DNS server for endpoint tests (issue 14): Debian's dnsmasq, answering only from a hosts file we
 * write (--no-resolv --no-hosts --addn-hosts, TTL 1 s), reloaded on SIGHUP; authoritative for every name
 * (--local=/#/), so an unknown name is NXDOMAIN as from a real cluster DNS, not REFUSED. dnsmasq cannot
 * listen on port 0, so instead of a fixed port on our loopback it listens on port 53 of a network namespace
 * the test creates
 * (test/helpers/netns.ts): the port is private to that namespace and nothing can clash with it; the sidecar
 * reaches it through the veth and gets it as upstream.dnsServers.
 *
 * Needs root (CAP_NET_ADMIN for the namespace) and dnsmasq (Debian package dnsmasq-base). Locally without
 * them the test skips with a visible message; under CI=true it fails.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import dns from 'node:dns';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import { createTestHost } from './netns.js';
import type { TestHost } from './netns.js';

const run = promisify(execFile);

export interface TestDns {
  /** "ip:53" for upstream.dnsServers. */
  readonly server: string;
  /** Replaces the hosts file (name -> addresses) and makes dnsmasq reload it (SIGHUP). */
  setHosts(hosts: Readonly<Record<string, readonly string[]>>): Promise<void>;
  /** Kills dnsmasq (the resolver is down; queries to it are refused). */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

let capability: Promise<string | undefined> | undefined;

function probe(): Promise<string | undefined> {
  capability ??= (async () => {
    try {
      await run('dnsmasq', ['--version']);
    } catch (err) {
      return `dnsmasq unavailable (${(err as Error).message.split('\n')[0]}); install the Debian package dnsmasq-base`;
    }
    const ns = `ks_dnsprobe_${process.pid}`;
    try {
      await run('ip', ['netns', 'add', ns]);
      await run('ip', ['netns', 'del', ns]);
    } catch (err) {
      return `network namespaces unavailable (${(err as Error).message.split('\n')[0]}); DNS tests need root and the ip tool`;
    }
    return undefined;
  })();
  return capability;
}

/** Call first in every DNS test: false (after t.skip) when it cannot run here; throws under CI=true. */
export async function requireDns(t: TestContext): Promise<boolean> {
  const why = await probe();
  if (why === undefined) return true;
  if (process.env.CI === 'true') throw new Error(`CI=true and this DNS test cannot run: ${why}`);
  process.stderr.write(`\n*** SKIPPING DNS test "${t.name}": ${why} ***\n`);
  t.skip(why);
  return false;
}

function hostsText(hosts: Readonly<Record<string, readonly string[]>>): string {
  return Object.entries(hosts).flatMap(([name, addrs]) => addrs.map((a) => `${a} ${name}`)).join('\n') + '\n';
}

/** Starts dnsmasq in a fresh namespace answering `hosts`; resolves once it answers. */
export async function startDns(hosts: Readonly<Record<string, readonly string[]>>): Promise<TestDns> {
  const host: TestHost = await createTestHost();
  const dir = mkdtempSync(path.join(tmpdir(), 'ks-dns-'));
  // dnsmasq reads the file after dropping privileges unless --user=root; keep it readable anyway.
  chmodSync(dir, 0o755);
  const file = path.join(dir, 'hosts');
  writeFileSync(file, hostsText(hosts), { mode: 0o644 });
  let child: ChildProcess | undefined = spawn(
    'ip',
    ['netns', 'exec', host.ns, 'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--addn-hosts=${file}`,
      '--local-ttl=1', '--local=/#/', `--listen-address=${host.address}`, '--bind-interfaces', '--port=53', '--user=root', '--pid-file=', '--log-facility=-'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const server = `${host.address}:53`;
  const stopChild = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null) return;
    const gone = new Promise((resolve) => c.once('exit', resolve));
    c.kill('SIGKILL');
    await gone;
  };
  const d: TestDns = {
    server,
    async setHosts(next) {
      writeFileSync(file, hostsText(next));
      // `ip netns exec` execs dnsmasq in place, so the child's pid is dnsmasq's.
      child?.kill('SIGHUP');
      // dnsmasq reloads on the signal at once; one answer with the new content confirms it.
      const first = Object.entries(next)[0];
      if (first !== undefined) await waitAnswer(server, first[0], first[1]);
    },
    async kill() {
      await stopChild();
    },
    async stop() {
      await stopChild();
      await host.remove();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    const first = Object.entries(hosts)[0];
    if (first !== undefined) await waitAnswer(server, first[0], first[1]);
  } catch (err) {
    await d.stop();
    throw new Error(`dnsmasq did not answer: ${(err as Error).message}; stderr: ${stderr}`);
  }
  return d;
}

/** Polls `server` until `name` resolves to exactly `addrs` (bounded: 3 s). */
async function waitAnswer(server: string, name: string, addrs: readonly string[]): Promise<void> {
  const r = new dns.promises.Resolver({ timeout: 200, tries: 1 });
  r.setServers([server]);
  const want = [...addrs].filter((a) => !a.includes(':')).sort().join(',');
  const until = performance.now() + 3000;
  let last = '';
  for (;;) {
    try {
      last = (await r.resolve4(name)).sort().join(',');
      if (last === want) return;
    } catch (err) {
      last = (err as NodeJS.ErrnoException).code ?? String(err);
    }
    if (performance.now() > until) throw new Error(`${name} at ${server}: wanted ${want}, got ${last}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
