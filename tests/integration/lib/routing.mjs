// Helpers for the routing tests: a set of backends that tells which one got a session, and
// one way to open (and close) a session on any transport of the edge protocol that reports
// the outcome (success with its Set-Cookie headers, or the error response) instead of throwing.
//
// Same rules as harness.mjs: servers on 127.0.0.1 (port 0 unless a backend is restarted on
// its own port), stopped by close(); every wait is on an event, with a timeout only as a
// failure guard.
import http from 'node:http';
import { WebSocket } from 'ws';
import { DEFAULT_TIMEOUT_MS, settleAll, startNodeWsBackend, withTimeout } from './harness.mjs';
import { del, openSse, parseJson, readOpen, withQuery } from './transports.mjs';

export const TRANSPORTS = ['ws', 'sse', 'poll'];

/** The path part of a request target ("/r/x?user=1" → "/r/x"). */
export function pathOf(target) {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

/**
 * N echo backends (startNodeWsBackend) watched together: each connection is indexed by the
 * path part of its request target, so a test that gives every session its own path can ask
 * which backend got it.
 *   backends[i]       — the backend (port, connections, ...)
 *   where(path)       — Promise<index> of the backend that got `path` (guarded)
 *   count(i, prefix)  — connections of backend i whose path starts with prefix
 *   duplicates        — paths that reached a backend more than once (must stay empty)
 *   replace(i, b)     — backend i restarted as b (same port)
 *   close()           — closes every backend
 * opts.ignore(path): connections not indexed (e.g. health-check probes, which repeat a path).
 */
export class BackendSet {
  static async start(n, opts = {}) {
    const set = new BackendSet(opts);
    for (let i = 0; i < n; i++) set._watch(i, await startNodeWsBackend());
    return set;
  }

  constructor({ ignore = () => false } = {}) {
    this.ignore = ignore;
    this.backends = [];
    this.seen = new Map(); // path → index
    this.duplicates = [];
    this.waiters = new Map(); // path → [resolve]
    this.unwatch = [];
  }

  _watch(i, backend) {
    this.backends[i] = backend;
    this.unwatch[i]?.();
    for (const conn of backend.connections) this._record(i, conn);
    this.unwatch[i] = backend.onConnection((conn) => this._record(i, conn));
  }

  _record(i, conn) {
    const p = pathOf(conn.path);
    if (this.ignore(p)) return;
    if (this.seen.has(p)) {
      this.duplicates.push({ path: conn.path, first: this.seen.get(p), again: i });
      return;
    }
    this.seen.set(p, i);
    const ws = this.waiters.get(p);
    if (ws) {
      this.waiters.delete(p);
      for (const w of ws) w(i);
    }
  }

  get ports() {
    return this.backends.map((b) => b.port);
  }

  /** Index of the backend that got the session at `path` (its path part). */
  where(path, timeoutMs = DEFAULT_TIMEOUT_MS) {
    const p = pathOf(path);
    if (this.seen.has(p)) return Promise.resolve(this.seen.get(p));
    let waiter;
    const got = new Promise((resolve) => {
      waiter = resolve;
      if (!this.waiters.has(p)) this.waiters.set(p, []);
      this.waiters.get(p).push(resolve);
    });
    return withTimeout(got, timeoutMs, `a backend connection for ${p}`).catch((err) => {
      const ws = this.waiters.get(p);
      if (ws) {
        ws.splice(ws.indexOf(waiter), 1);
        if (!ws.length) this.waiters.delete(p);
      }
      throw err;
    });
  }

  /** The connection of backend i for `path`, if it got one. */
  connection(i, path) {
    const p = pathOf(path);
    return this.backends[i].connections.find((c) => pathOf(c.path) === p);
  }

  count(i, prefix) {
    return this.backends[i].connections.filter((c) => c.path.startsWith(prefix)).length;
  }

  replace(i, backend) {
    this._watch(i, backend);
  }

  async close() {
    for (const u of this.unwatch) u?.();
    await settleAll(this.backends.map((b) => b.close()));
  }
}

/** The Set-Cookie values of a response's headers (string, array or absent). */
export function setCookies(headers) {
  const v = headers?.['set-cookie'];
  return v === undefined ? [] : [].concat(v);
}

/** GET with node:http (for a source address fetch cannot choose). */
function httpGet(url, { headers = {}, localAddress, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  let req;
  const attempt = new Promise((resolve, reject) => {
    req = http.get(url, { headers, agent: false, ...(localAddress ? { localAddress } : {}) }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode, headers: res.headers, body, setCookies: setCookies(res.headers) });
      });
    });
    req.on('error', reject);
  });
  return withTimeout(attempt, timeoutMs, `GET ${url}`).catch((err) => {
    req.destroy();
    throw err;
  });
}

/** GET with fetch; Set-Cookie headers kept apart (Headers.getSetCookie). */
async function fetchGet(url, { headers = {}, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const controller = new AbortController();
  const attempt = async () => {
    const res = await fetch(url, { headers, signal: controller.signal, redirect: 'manual' });
    const body = await res.text();
    const h = {};
    res.headers.forEach((v, k) => {
      h[k] = v;
    });
    return { status: res.status, headers: h, body, setCookies: res.headers.getSetCookie() };
  };
  try {
    return await withTimeout(attempt(), timeoutMs, `GET ${url}`);
  } catch (err) {
    controller.abort();
    throw err;
  }
}

function wsOpen(url, { headers, localAddress, timeoutMs }) {
  const ws = new WebSocket(url, [], { headers, ...(localAddress ? { localAddress } : {}) });
  let upgradeHeaders = {};
  ws.once('upgrade', (res) => {
    upgradeHeaders = res.headers;
  });
  const closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  const queue = [];
  const wake = [];
  ws.on('message', (data) => {
    queue.push(data.toString());
    for (const w of wake.splice(0)) w();
  });
  const outcome = new Promise((resolve, reject) => {
    ws.once('open', () =>
      resolve({
        ok: true,
        status: 101,
        headers: upgradeHeaders,
        setCookies: setCookies(upgradeHeaders),
        ws,
        closed,
        /** Sends `text` and awaits the echo (the backends echo). */
        async echo(text, ms = DEFAULT_TIMEOUT_MS) {
          ws.send(text);
          const got = async () => {
            for (;;) {
              const i = queue.indexOf(text);
              if (i >= 0) return queue.splice(i, 1)[0];
              await new Promise((r) => wake.push(r));
            }
          };
          return withTimeout(got(), ms, `the echo of ${JSON.stringify(text)} on ${url}`);
        },
        async close() {
          if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
          await withTimeout(closed, DEFAULT_TIMEOUT_MS, `the WebSocket ${url} to close`).catch((err) => {
            ws.terminate();
            throw err;
          });
        },
      }),
    );
    ws.on('error', (err) => reject(new Error(`WebSocket ${url}: ${err.message}`)));
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        resolve({ ok: false, status: res.statusCode, headers: res.headers, body, setCookies: setCookies(res.headers) });
        req.destroy();
      });
    });
  });
  return withTimeout(outcome, timeoutMs, `the WebSocket handshake of ${url}`).catch((err) => {
    ws.terminate();
    throw err;
  });
}

/**
 * Opens a new session on `transport` ('ws' | 'sse' | 'poll') at `path` of tether on `port`,
 * with request `headers` and, optionally, the source address `localAddress`. Resolves to
 *   { ok: true, transport, status, headers, setCookies: [..], sid (sse, poll), ws (ws), close() }
 * or, when tether answered with an error instead,
 *   { ok: false, transport, status, headers, body, setCookies }.
 * close() ends the session and releases every socket it holds: the WebSocket close handshake;
 * for SSE, the stream is dropped and the session DELETEd; for poll, DELETE.
 */
export async function openSession(transport, { port, path, headers = {}, localAddress, timeoutMs = DEFAULT_TIMEOUT_MS }) {
  const base = `http://127.0.0.1:${port}`;
  if (transport === 'ws') {
    return { transport, ...(await wsOpen(`ws://127.0.0.1:${port}${path}`, { headers, localAddress, timeoutMs })) };
  }
  if (transport === 'sse') {
    const s = await openSse(port, path, { headers, localAddress, timeoutMs });
    if (s.status !== 200) {
      s.destroy();
      return { ok: false, transport, status: s.status, headers: s.headers, body: s.body ?? '', rawHead: s.rawHead, setCookies: setCookies(s.headers) };
    }
    const { sid } = await readOpen(s);
    return {
      ok: true,
      transport,
      status: 200,
      headers: s.headers,
      setCookies: setCookies(s.headers),
      sid,
      sse: s,
      async close() {
        s.destroy();
        const res = await del(`${base}${path}`, sid);
        if (res.status !== 204) throw new Error(`DELETE of SSE session ${path}: ${res.status} ${res.body}`);
      },
    };
  }
  if (transport === 'poll') {
    const url = withQuery(`${base}${path}`, { 'tether-transport': 'poll' });
    const res = localAddress ? await httpGet(url, { headers, localAddress, timeoutMs }) : await fetchGet(url, { headers, timeoutMs });
    if (res.status !== 200) return { ok: false, transport, ...res };
    const json = parseJson(res.body, `the poll open answer of ${path}`);
    return {
      ok: true,
      transport,
      status: 200,
      headers: res.headers,
      setCookies: res.setCookies,
      sid: json.session,
      async close() {
        const d = await del(`${base}${path}`, json.session);
        if (d.status !== 204) throw new Error(`DELETE of poll session ${path}: ${d.status} ${d.body}`);
      },
    };
  }
  throw new Error(`unknown transport ${transport}`);
}

/** Like openSession, but a session that did not open is an error naming the answer. */
export async function mustOpen(transport, opts) {
  const s = await openSession(transport, opts);
  if (!s.ok) {
    throw new Error(`${transport} session ${opts.path}: expected it to open, got ${s.status}: ${JSON.stringify(s.body)}`);
  }
  return s;
}

export { mapLimit as inBatches } from './harness.mjs';

/** The cookie NAME=VALUE of a Set-Cookie value (its attributes dropped). */
export function cookiePair(setCookie) {
  return setCookie.split(';')[0].trim();
}
