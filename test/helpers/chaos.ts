/**
 * Silent peer death, for real: an nftables table that drops one established TCP flow (matched on its
 * ports, both directions) while new connections keep working.
 *
 * Chaos tests need CAP_NET_ADMIN and `nft`. Locally without them they skip with a visible message;
 * under CI=true they FAIL (a chaos test that cannot run must never pass silently).
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';

const run = promisify(execFile);
const liveTables = new Set<string>();
let counter = 0;

// Safety net: whatever happens to a test, its tables go when the process exits.
process.on('exit', () => {
  for (const t of liveTables) {
    try {
      execFileSync('nft', ['delete', 'table', 'inet', t], { stdio: 'ignore' });
    } catch {
      // Already gone.
    }
  }
});

let capability: Promise<string | undefined> | undefined;

/** Resolves undefined when nft works here, else the reason it does not. */
function probe(): Promise<string | undefined> {
  capability ??= (async () => {
    const name = `ks_probe_${process.pid}`;
    try {
      await run('nft', ['add', 'table', 'inet', name]);
      await run('nft', ['delete', 'table', 'inet', name]);
      return undefined;
    } catch (err) {
      return `nftables unavailable (${(err as Error).message.split('\n')[0]}); chaos tests need the nft tool and CAP_NET_ADMIN`;
    }
  })();
  return capability;
}

/**
 * Call at the start of every chaos test. Returns false (after t.skip with the reason) when it cannot run
 * locally; throws under CI=true.
 */
export async function requireChaos(t: TestContext): Promise<boolean> {
  const why = await probe();
  if (why === undefined) return true;
  if (process.env.CI === 'true') throw new Error(`CI=true and this chaos test cannot run: ${why}`);
  process.stderr.write(`\n*** SKIPPING chaos test "${t.name}": ${why} ***\n`);
  t.skip(why);
  return false;
}

export type Hook = 'output' | 'input';

/**
 * Creates one nft table (inet family) from the lines that go inside it, registers it for cleanup and returns
 * its handle. Every chaos rule set goes through here.
 */
async function addTable(body: readonly string[]): Promise<Blackhole> {
  const table = `ks_${process.pid}_${++counter}`;
  const ruleset = [`table inet ${table} {`, ...body.map((l) => `  ${l}`), '}', ''].join('\n');
  liveTables.add(table);
  await new Promise<void>((resolve, reject) => {
    const child = execFile('nft', ['-f', '-'], (err) => (err ? reject(err) : resolve()));
    child.stdin?.end(ruleset);
  });
  return handle(table);
}

function handle(table: string): Blackhole {
  let removed = false;
  return {
    table,
    async dropped() {
      const { stdout } = await run('nft', ['list', 'table', 'inet', table]);
      let n = 0;
      for (const m of stdout.matchAll(/counter packets (\d+)/g)) n += Number(m[1]);
      return n;
    },
    async remove() {
      if (removed) return;
      removed = true;
      liveTables.delete(table);
      await run('nft', ['delete', 'table', 'inet', table]).catch(() => {});
    },
  };
}

/** Drops every SYN to 127.0.0.1:port (input hook): connects hang as to a host that vanished. */
export function dropSyns(port: number): Promise<Blackhole> {
  return addTable([
    'chain c {',
    '  type filter hook input priority filter; policy accept;',
    `  ip daddr 127.0.0.1 tcp dport ${port} tcp flags & (syn | ack) == syn counter drop`,
    '}',
  ]);
}

/**
 * A dead pod (issue 14): every packet to and from address:port is dropped, established flows and new SYNs
 * alike, so its connections go silent and connects to it hang. Other addresses on the same port are untouched.
 */
export function blackholeEndpoint(address: string, port: number, hook: Hook): Promise<Blackhole> {
  return addTable([
    'chain c {',
    `  type filter hook ${hook} priority filter; policy accept;`,
    `  ip daddr ${address} tcp dport ${port} counter drop`,
    `  ip saddr ${address} tcp sport ${port} counter drop`,
    '}',
  ]);
}

export interface Blackhole {
  readonly table: string;
  /** Packets the rules dropped so far. */
  dropped(): Promise<number>;
  remove(): Promise<void>;
}

/**
 * Drops every packet between 127.0.0.1:serverPort and the given client ports, both directions.
 * `output`: the local stack cannot send (segments stay unsent, probes/backoff rise).
 * `input`: packets leave and vanish as in a real network (retransmissions, unacked > 0).
 */
export async function blackhole(serverPort: number, clientPorts: readonly number[], hook: Hook): Promise<Blackhole> {
  if (clientPorts.length === 0) throw new Error('blackhole: no client ports');
  const set = `{ ${clientPorts.join(', ')} }`;
  return addTable([
    'chain c {',
    `  type filter hook ${hook} priority filter; policy accept;`,
    `  ip daddr 127.0.0.1 tcp dport ${serverPort} tcp sport ${set} counter drop`,
    `  ip saddr 127.0.0.1 tcp sport ${serverPort} tcp dport ${set} counter drop`,
    '}',
  ]);
}

/**
 * Drops only the first data-carrying segment from 127.0.0.1:clientPort to serverPort (a one-off loss, as on a
 * real network); its retransmission and everything after pass. A dynamic set remembers the flow: the first
 * data packet (IP length > 80: more than a bare ACK with timestamps) is added to it and dropped, later ones
 * match the set and are accepted.
 */
export async function dropFirstDataSegment(serverPort: number, clientPort: number, hook: Hook): Promise<Blackhole> {
  const flow = `ip daddr 127.0.0.1 tcp dport ${serverPort} tcp sport ${clientPort}`;
  return addTable([
    'set seen {',
    '  type ipv4_addr . inet_service',
    '  flags dynamic',
    '}',
    'chain c {',
    `  type filter hook ${hook} priority filter; policy accept;`,
    `  ${flow} ip saddr . tcp sport @seen accept`,
    `  ${flow} ip length > 80 add @seen { ip saddr . tcp sport } counter drop`,
    '}',
  ]);
}
