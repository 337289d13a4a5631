// Helper for scripts/image-test.sh (plain Node, no build step): upstream servers on the host and the checks
// that drive the containerised sidecar through its routes. Traffic stays on 127.0.0.1.
//   node scripts/image-peers.mjs ports N            -> N free ports (listen(0), read back, closed)
//   node scripts/image-peers.mjs upstreams          -> tcp echo + http upstream; prints {"tcp":P,"http":P}
//   node scripts/image-peers.mjs check JSON         -> tcp, http and blackhole checks; exit 0 when all pass
import net from 'node:net';
import http from 'node:http';
import { execFileSync } from 'node:child_process';

const [, , cmd, arg] = process.argv;

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

if (cmd === 'ports') {
  const out = [];
  const servers = [];
  for (let i = 0; i < Number(arg); i++) {
    const s = net.createServer();
    out.push(await listen(s));
    servers.push(s);
  }
  for (const s of servers) s.close();
  console.log(out.join(' '));
} else if (cmd === 'upstreams') {
  const tcp = net.createServer((sock) => {
    sock.on('error', () => {});
    sock.pipe(sock);
  });
  const web = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'text/plain');
      res.end(`ok ${req.method} ${req.url}\n`);
    });
  });
  web.keepAliveTimeout = 120_000;
  const ports = { tcp: await listen(tcp), http: await listen(web) };
  console.log(JSON.stringify(ports));
  process.on('SIGTERM', () => process.exit(0));
} else if (cmd === 'check') {
  const c = JSON.parse(arg);
  const fail = (msg) => {
    console.error(`FAIL: ${msg}`);
    process.exit(1);
  };
  const withTimeout = (p, ms, what) =>
    Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`${what}: no answer in ${ms} ms`)), ms).unref())]);

  // Keep-alive agent with one socket: the GET after the blackhole goes out on the same app connection, and
  // the sidecar's pooled upstream connection behind it is the dead one.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = (path) =>
    withTimeout(
      new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port: c.httpListen, path, agent }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
        });
        req.on('error', reject);
      }),
      15_000,
      `GET ${path}`,
    );

  // tcp route: echo through the sidecar.
  const sock = net.connect(c.tcpListen, '127.0.0.1');
  await withTimeout(new Promise((r, j) => sock.once('connect', r).once('error', j)), 5000, 'tcp connect');
  sock.write('ping\n');
  const echoed = await withTimeout(new Promise((r) => sock.once('data', (d) => r(String(d)))), 5000, 'tcp echo');
  if (echoed !== 'ping\n') fail(`tcp echo returned ${JSON.stringify(echoed)}`);
  console.log('ok: tcp route echoes through the container');

  // http route: a GET fills the sidecar's pool with one live upstream connection.
  const first = await get('/first');
  if (first.status !== 200 || !first.body.startsWith('ok GET /first')) fail(`http GET: ${first.status} ${first.body}`);
  console.log('ok: http route answers 200 through the container');

  // The sidecar's pooled upstream connection for the http route: its ephemeral source port (ss sees the
  // sidecar side as local port -> peer port httpUpstream).
  const pooled = execFileSync('ss', ['-Htn', 'state', 'established', `( dport = :${c.httpUpstream} )`], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => Number(l.trim().split(/\s+/).at(-2).split(':').at(-1)));
  if (pooled.length === 0) fail('no pooled upstream connection found for the http route');
  // Blackhole (every packet dropped, no RST): the tcp upstream port, and the pooled http connection only, so
  // the retry's fresh connection gets through.
  execFileSync('nft', ['-f', '-'], {
    input: `table inet ${c.table} {
  chain out {
    type filter hook output priority -10; policy accept;
    ip daddr 127.0.0.1 tcp dport { ${c.tcpUpstream}, ${pooled.join(', ')} } drop
    ip saddr 127.0.0.1 tcp sport { ${c.tcpUpstream}, ${pooled.join(', ')} } drop
  }
}
`,
  });
  console.log(`blackholed tcp upstream port ${c.tcpUpstream} and pooled http connection(s) ${pooled.join(',')} (nft table ${c.table})`);

  // http: the GET goes out on the dead pooled connection; early retry sends it again on a fresh one.
  const second = await get('/second');
  if (second.status !== 200 || !second.body.startsWith('ok GET /second')) {
    fail(`GET on a dead pooled connection: ${second.status} ${JSON.stringify(second.headers)} ${second.body}`);
  }
  console.log('ok: GET trapped on a dead pooled connection rescued with 200');

  // tcp: data sent into the dead upstream connection is never acknowledged; TCP_USER_TIMEOUT ends it and the
  // sidecar resets the app connection.
  const started = Date.now();
  const closed = new Promise((r) => {
    sock.on('error', (e) => r(e.code ?? String(e)));
    sock.on('close', () => r('close'));
  });
  sock.write('into the void\n');
  const how = await withTimeout(closed, c.userTimeoutMs + 5000, 'tcp reset after blackhole');
  const tookMs = Date.now() - started;
  console.log(`ok: tcp app connection ended (${how}) ${tookMs} ms after the blackhole (userTimeoutMs ${c.userTimeoutMs})`);
  execFileSync('nft', ['delete', 'table', 'inet', c.table]);
  agent.destroy();
  process.exit(0);
} else {
  console.error('usage: image-peers.mjs ports N | upstreams | check JSON');
  process.exit(2);
}
