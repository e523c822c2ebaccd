/**
 * A local https server over a folder, for the tests of downloads (intake's base.url, flash and
 * inspect of a URL). Its certificate is made for the run with openssl; this test process trusts it
 * (the global agent), and a pibake child trusts it through NODE_EXTRA_CA_CERTS (`childEnv`), the
 * way an operator trusts a private CA.
 *
 * Routes: /files/NAME serves dir/NAME; /moved/NAME redirects there; /stall/NAME sends half of it
 * and then nothing; /short/NAME announces the whole length, sends half and drops the connection;
 * /chunked/NAME sends half without a length and ends cleanly (a truncation only a digest sees).
 * Anything else is a 404. `served` counts requests per path.
 */
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { createServer, globalAgent } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';

export interface HttpsFolder {
  /** https://127.0.0.1:PORT */
  base: string;
  served: Map<string, number>;
  /** Environment for a child process that must trust this server. */
  childEnv: Record<string, string>;
  certPath: string;
  close: () => void;
}

/** Serve `dir` (the key and certificate live in a folder of their own, removed by `close`). */
export async function serveFolder(dir: string): Promise<HttpsFolder> {
  const pki = await mkdtemp(join(tmpdir(), 'pibake-https-'));
  const keyPath = join(pki, 'key.pem');
  const certPath = join(pki, 'cert.pem');
  await execa('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyPath, '-out', certPath,
  ]);
  const cert = await readFile(certPath);
  globalAgent.options.ca = cert; // this test process trusts its own server only
  const served = new Map<string, number>();
  const server = createServer({ key: await readFile(keyPath), cert }, (request, response) => {
    const url = new URL(request.url ?? '/', 'https://x');
    served.set(url.pathname, (served.get(url.pathname) ?? 0) + 1);
    const [, route, name] = /^\/(files|moved|stall|short|chunked)\/([\w.-]+)$/.exec(url.pathname) ?? [];
    if (!route || !name) {
      response.writeHead(404).end();
      return;
    }
    if (route === 'moved') {
      response.writeHead(302, { location: `/files/${name}` }).end();
      return;
    }
    readFile(resolve(dir, name)).then(
      (data) => {
        const half = data.subarray(0, data.length >> 1);
        if (route === 'chunked') {
          response.writeHead(200).end(half);
          return;
        }
        response.writeHead(200, { 'content-length': data.length });
        if (route === 'stall') response.write(half);
        else if (route === 'short') response.write(half, () => response.socket?.destroy());
        else response.end(data);
      },
      () => response.writeHead(404).end(),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    base: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    served,
    childEnv: { NODE_EXTRA_CA_CERTS: certPath },
    certPath,
    close: () => {
      server.closeAllConnections();
      server.close();
      rmSync(pki, { recursive: true, force: true });
    },
  };
}
