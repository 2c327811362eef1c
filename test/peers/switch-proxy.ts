import { createServer, request, type Server } from 'node:http';

/**
 * An HTTP proxy to one backend at a time, which the test switches (a load balancer moving traffic off a
 * dead node). A backend that dies mid-request gives 502, as a load balancer would.
 */
export interface SwitchProxy {
  server: Server;
  /** The backend port each request went to, in order. */
  served: number[];
  target: number;
  close(): Promise<void>;
}

export async function startSwitchProxy(port: number, target: number): Promise<SwitchProxy> {
  const proxy = { target } as SwitchProxy;
  const served: number[] = [];
  const server = createServer((req, res) => {
    const to = proxy.target;
    served.push(to);
    const upstream = request({ host: '127.0.0.1', port: to, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return Object.assign(proxy, {
    server,
    served,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
}
