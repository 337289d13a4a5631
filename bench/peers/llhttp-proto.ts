/**
 * Research prototype (issue 12, task 3), not the sidecar: the app side on node's own llhttp binding
 * (`process.binding('http_parser').HTTPParser`, what node:http uses) instead of node:http's server objects,
 * plus the same undici Pool dispatch as `minimal`. No IncomingMessage, ServerResponse, OutgoingMessage or
 * stream per request: the parser's callbacks feed dispatch(), and the response head is one string written with
 * the body in one cork/uncork. Handles only what the benchmark sends (bodiless keep-alive GETs, one request at
 * a time per connection; a pipelined request waits for the previous response). Usage: node llhttp-proto.js
 * UPSTREAM_PORT [PORT]. Prints "listening PORT".
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';

interface ParserCtor {
  new (): Parser;
  REQUEST: number;
  kOnHeadersComplete: number;
  kOnMessageComplete: number;
  kOnBody: number;
  kOnHeaders: number;
  kOnExecute: number;
}
interface Parser {
  initialize(type: number, resource: object, maxHeaderSize?: number, lenient?: number): void;
  execute(b: Buffer): number | Error;
  [k: number]: unknown;
}
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const binding = (process as any).binding('http_parser') as { HTTPParser: ParserCtor; methods: string[] };
const { HTTPParser, methods } = binding;

const upstreamPort = Number(process.argv[2]);
const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, { connections: null, pipelining: 1 });

const STATUS: Record<number, string> = { 200: 'OK', 502: 'Bad Gateway' };

class Conn implements Dispatcher.DispatchHandler {
  readonly parser: Parser = new HTTPParser();
  head = '';
  chunks: Buffer[] = [];
  busy = false;
  queue: Array<[string, string, string[]]> = [];
  constructor(readonly socket: net.Socket) {
    this.parser.initialize(HTTPParser.REQUEST, {}, 0, 0);
    this.parser[HTTPParser.kOnHeadersComplete] = (_maj: number, _min: number, headers: string[], method: number, url: string) => {
      const h: string[] = [];
      for (let i = 0; i < headers.length; i += 2) {
        const l = headers[i]!.toLowerCase();
        if (l !== 'connection' && l !== 'keep-alive') h.push(headers[i]!, headers[i + 1]!);
      }
      this.queue.push([methods[method]!, url, h]);
      return 0;
    };
    this.parser[HTTPParser.kOnMessageComplete] = () => {
      if (!this.busy) this.next();
    };
    this.parser[HTTPParser.kOnBody] = () => {};
    socket.on('data', (b: Buffer) => {
      const r = this.parser.execute(b);
      if (r instanceof Error) socket.destroy();
    });
    socket.on('error', () => socket.destroy());
  }
  next(): void {
    const r = this.queue.shift();
    if (r === undefined) return;
    this.busy = true;
    pool.dispatch({ origin: undefined, path: r[1], method: r[0], headers: r[2], body: null } as unknown as Dispatcher.DispatchOptions, this);
  }
  onConnect(): void {}
  onHeaders(status: number, raw: Buffer[], _resume: () => void, text: string): boolean {
    let head = `HTTP/1.1 ${status} ${text || STATUS[status] || ''}\r\n`;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]!.toString('latin1');
      const l = n.toLowerCase();
      if (l !== 'connection' && l !== 'keep-alive') head += `${n}: ${raw[i + 1]!.toString('latin1')}\r\n`;
    }
    this.head = head + '\r\n';
    return true;
  }
  onData(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return true;
  }
  onComplete(): void {
    const s = this.socket;
    s.cork();
    s.write(this.head, 'latin1');
    for (const c of this.chunks) s.write(c);
    s.uncork();
    this.chunks = [];
    this.busy = false;
    this.next();
  }
  onError(): void {
    this.socket.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
  }
}

const server = net.createServer((s) => {
  s.setNoDelay(true);
  new Conn(s);
});
server.listen(Number(process.argv[3] ?? 0), '127.0.0.1', () => process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => process.exit(0));
