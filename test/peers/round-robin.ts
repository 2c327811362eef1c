import { createServer, request, type Server } from 'node:http';

/**
 * A strict round-robin HTTP proxy: request n goes to backend n mod k, so consecutive requests of one
 * login always land on different instances. Records which backend served each request.
 */
export async function startRoundRobin(port: number, backends: number[]): Promise<{ server: Server; served: number[]; close(): Promise<void> }> {
  let next = 0;
  const served: number[] = [];
  const server = createServer((req, res) => {
    const target = backends[next++ % backends.length];
    served.push(target);
    const upstream = request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => {
      res.writeHead(502).end();
    });
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    server,
    served,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
