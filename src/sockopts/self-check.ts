/**
 * Startup self-check: on a loopback socket pair, apply every distinct configured keepalive setting and read
 * it back. If any option cannot be set, the sidecar refuses to start (it would otherwise promise dead-peer
 * detection it cannot deliver).
 */
import { once } from 'node:events';
import net from 'node:net';
import type { KeepaliveConfig } from '../config/index.js';
import { SockoptUnsupportedError } from '../errors.js';
import { applySockopts } from './apply.js';

/** Resolves when every setting can be applied; rejects with SockoptUnsupportedError listing each failure. */
export async function selfCheckSockopts(settings: ReadonlyArray<{ readonly name: string; readonly keepalive: KeepaliveConfig }>): Promise<void> {
  if (settings.length === 0) return;
  const server = net.createServer((s) => s.on('error', () => {}).resume());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const problems: string[] = [];
  try {
    for (const { name, keepalive } of settings) {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      await once(socket, 'connect');
      const result = applySockopts(socket, keepalive);
      for (const f of result.failures) problems.push(`${name}: ${f.option}: ${f.message}`);
      if (result.effective === undefined) problems.push(`${name}: could not read socket options back`);
      socket.destroy();
    }
  } finally {
    server.close();
  }
  if (problems.length > 0) throw new SockoptUnsupportedError(problems);
}
