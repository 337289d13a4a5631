/**
 * A separate "host" for chaos tests: a network namespace joined to ours by a veth pair, with its own
 * address. Packets dropped inside it vanish exactly as on a dead remote host. Always removed by `remove()`
 * and, as a safety net, when the process exits.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';

const run = promisify(execFile);
const live = new Set<string>();
process.on('exit', () => {
  for (const ns of live) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // Already gone.
    }
  }
});

export interface TestHost {
  readonly ns: string;
  /** The namespace's address (reachable from the root namespace through the veth). */
  readonly address: string;
  /** Runs a command inside the namespace. */
  exec(cmd: string, args: readonly string[], stdin?: string): Promise<string>;
  /** Starts a TCP echo server inside the namespace; resolves with its port. */
  startEcho(): Promise<number>;
  remove(): Promise<void>;
}

let counter = 0;

export async function createTestHost(): Promise<TestHost> {
  const id = `${process.pid % 100000}${++counter}`;
  const ns = `ks${id}`;
  const hostIf = `ksh${id}`.slice(0, 15);
  const nsIf = `ksn${id}`.slice(0, 15);
  const net = `10.213.${(process.pid + counter) % 250}`;
  const address = `${net}.2`;
  live.add(ns);
  const children: ChildProcess[] = [];
  const steps: Array<[string, string[]]> = [
    ['ip', ['netns', 'add', ns]],
    ['ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf]],
    ['ip', ['link', 'set', nsIf, 'netns', ns]],
    ['ip', ['addr', 'add', `${net}.1/30`, 'dev', hostIf]],
    ['ip', ['link', 'set', hostIf, 'up']],
    ['ip', ['-n', ns, 'addr', 'add', `${address}/30`, 'dev', nsIf]],
    ['ip', ['-n', ns, 'link', 'set', nsIf, 'up']],
    ['ip', ['-n', ns, 'link', 'set', 'lo', 'up']],
  ];
  const host: TestHost = {
    ns,
    address,
    async exec(cmd, args, stdin) {
      return new Promise((resolve, reject) => {
        const child = execFile('ip', ['netns', 'exec', ns, cmd, ...args], (err, stdout) => (err ? reject(err) : resolve(stdout)));
        if (stdin !== undefined) child.stdin?.end(stdin);
      });
    },
    async startEcho() {
      const code = `const s=require('net').createServer({allowHalfOpen:true},c=>{c.on('error',()=>{});c.pipe(c)});s.listen(0,'${address}',()=>console.log(s.address().port))`;
      const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(child);
      const [data] = (await once(child.stdout!, 'data')) as [Buffer];
      return Number(data.toString().trim());
    },
    async remove() {
      for (const c of children) c.kill('SIGKILL');
      live.delete(ns);
      await run('ip', ['link', 'del', hostIf]).catch(() => {});
      await run('ip', ['netns', 'del', ns]).catch(() => {});
    },
  };
  try {
    for (const [cmd, args] of steps) await run(cmd, args);
  } catch (err) {
    await host.remove();
    throw err;
  }
  return host;
}
