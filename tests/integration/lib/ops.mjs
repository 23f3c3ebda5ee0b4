// Helpers for the operations tests: HTTP requests on connections that tether has closed by the
// time they resolve (so that its connection gauges are exact), the stats endpoint, files
// followed through fs.watch (log files, as events), and tether started with its error log in a
// file instead of stderr.
//
// Same rules as harness.mjs: every wait is on an event (socket, process or fs.watch), with a
// timeout only as a failure guard; processes are stopped by their pid.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { DEFAULT_TIMEOUT_MS, RawHttp, tetherBin, trackChild, withTimeout } from './harness.mjs';
import { parseExposition, sampleValue } from './prometheus.mjs';
import { parseJson } from './transports.mjs';

/**
 * One request on a new connection with "Connection: close"; resolves once the whole response
 * arrived AND tether closed the connection (so it no longer counts it as open). For a JSON 200
 * answer, res.json is the parsed body. opts: headers, body (string or Buffer), localAddress
 * (source address, e.g. '127.0.0.2'), host (default 127.0.0.1).
 */
export async function closedRequest(port, method, target, { headers = {}, body, localAddress, host = '127.0.0.1', timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const socket = net.connect({ port, host, ...(localAddress ? { localAddress } : {}) });
  const conn = new RawHttp(socket);
  try {
    await withTimeout(once(socket, 'connect'), timeoutMs, `connect to ${host}:${port}`);
    const bodyBuf = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
    let head = `${method} ${target} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n`;
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    if (bodyBuf) head += `Content-Length: ${bodyBuf.length}\r\n`;
    conn.write(bodyBuf ? Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), bodyBuf]) : `${head}\r\n`);
    const res = await conn.readResponse({ method, timeoutMs });
    await conn.waitClose({ timeoutMs });
    if (res.status === 200 && /^application\/json\b/i.test(String(res.headers['content-type'] ?? ''))) {
      res.json = parseJson(res.body, `the answer to ${method} ${target}`);
    }
    return res;
  } finally {
    conn.destroy();
  }
}

/** GET the JSON stats at `statsPath`: asserts 200 application/json and returns the object. */
export async function getStats(port, statsPath = '/tether/stats', opts = {}) {
  const res = await closedRequest(port, 'GET', statsPath, opts);
  assert.equal(res.status, 200, `GET ${statsPath}: ${res.rawHead}\n${res.body}`);
  assert.match(String(res.headers['content-type']), /^application\/json\b/i, res.rawHead);
  assert.ok(res.json && typeof res.json === 'object', `GET ${statsPath}: not a JSON object: ${res.body}`);
  return res.json;
}

/** GET the Prometheus text at `statsPath?format=prometheus`: asserts 200 and its type; returns the text. */
export async function getPrometheus(port, statsPath = '/tether/stats', opts = {}) {
  const res = await closedRequest(port, 'GET', `${statsPath}?format=prometheus`, opts);
  assert.equal(res.status, 200, `GET ${statsPath}?format=prometheus: ${res.rawHead}\n${res.body}`);
  assert.match(
    String(res.headers['content-type']),
    /^text\/plain;\s*version=0\.0\.4(?:;\s*charset=utf-8)?$/i,
    `the Prometheus text format's Content-Type\n${res.rawHead}`,
  );
  return res.body;
}

/**
 * Follows the file at `file` (a path, whatever file is there now) through fs.watch on its
 * directory: waitLine(pred) resolves on the first complete line, past or future, of the file
 * currently at the path for which pred(line) is true. The file may not exist yet, and may be
 * replaced (rotation): every check reads the path afresh.
 */
export function followFile(file) {
  const dir = path.dirname(file);
  const base = path.basename(file);
  const waiters = new Set();
  const read = () => {
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if (err.code === 'ENOENT') return [];
      throw err;
    }
    const lines = text.split('\n');
    lines.pop(); // an unfinished last line is not a line yet
    return lines;
  };
  const check = () => {
    if (!waiters.size) return;
    const lines = read();
    for (const w of [...waiters]) {
      const found = lines.find(w.pred);
      if (found !== undefined) {
        waiters.delete(w);
        w.resolve(found);
      }
    }
  };
  const watcher = fs.watch(dir, (event, name) => {
    if (name === null || name === base) check();
  });
  return {
    file,
    lines: read,
    waitLine(pred, what = `a line in ${file}`, timeoutMs = DEFAULT_TIMEOUT_MS) {
      let waiter;
      const p = new Promise((resolve) => {
        waiter = { pred, resolve };
        waiters.add(waiter);
      });
      check(); // after registering: nothing written meanwhile is missed
      return withTimeout(p, timeoutMs, () => `${what}; the file has:\n${read().map((l) => `  | ${l}`).join('\n') || '  | (nothing)'}`).finally(() =>
        waiters.delete(waiter),
      );
    },
    close() {
      watcher.close();
    },
  };
}

/**
 * Runs `$TETHER_BIN -c confFile` whose error_log goes to `errorLog` (a file): resolves once that
 * file shows `listens` "listening on" lines and the "started" line (signal handlers installed).
 * Returns { pid, child, log (followFile of errorLog), ports, exited: Promise<{code, signal}>,
 * stderr() }.
 */
export async function startTetherLoggingTo(confFile, errorLog, listens = 1) {
  const log = followFile(errorLog);
  const child = trackChild(spawn(tetherBin(), ['-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  child.stdout.resume();
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const died = exited.then(({ code, signal }) => {
    throw new Error(`tether exited at start (code ${code}, signal ${signal}); stderr: ${stderr}`);
  });
  died.catch(() => {});
  try {
    await Promise.race([log.waitLine((l) => / tether \S+ started$/.test(l), `tether's "started" line in ${errorLog}`), died]);
  } catch (err) {
    child.kill('SIGKILL');
    log.close();
    throw err;
  }
  const ports = log
    .lines()
    .map((l) => /listening on \S+:(\d+)$/.exec(l))
    .filter(Boolean)
    .map((m) => Number(m[1]));
  assert.equal(ports.length, listens, `"listening on" lines in ${errorLog}: ${log.lines().join('\n')}`);
  return {
    pid: child.pid,
    child,
    log,
    ports,
    port: ports[0],
    exited,
    stderr: () => stderr,
    /** Sends `signal` by pid and awaits the exit (guarded); returns { code, signal }. */
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, signal);
      try {
        return await withTimeout(exited, DEFAULT_TIMEOUT_MS, `tether (pid ${child.pid}) to exit after ${signal}`);
      } finally {
        log.close();
      }
    },
  };
}

/** Resolves once `socket` (net.Socket) fails to connect or connects; → 'refused' | 'connected' | error code. */
export async function tryConnect(port, host = '127.0.0.1', timeoutMs = DEFAULT_TIMEOUT_MS) {
  const socket = net.connect({ port, host });
  const outcome = new Promise((resolve) => {
    socket.once('connect', () => resolve('connected'));
    socket.once('error', (err) => resolve(err.code === 'ECONNREFUSED' ? 'refused' : err.code));
  });
  try {
    return await withTimeout(outcome, timeoutMs, `a connect to ${host}:${port} to succeed or fail`);
  } finally {
    socket.destroy();
  }
}

/** The limits a hit is counted under: stats JSON limits.hits_total keys, Prometheus limit="…" labels. */
export const LIMIT_NAMES = [
  'connections', 'connections_per_client', 'sessions_per_client', 'header_size', 'body_size', 'message_size',
  'header_timeout', 'body_timeout', 'send_timeout', 'idle_timeout',
];

/**
 * A keep-alive connection to the stats endpoint, opened once (from `localAddress`, default
 * 127.0.0.254, so that it never competes with the test's clients under a per-client limit) and
 * kept for the life of the test (mind keepalive_timeout): it is always exactly one client connection and one client
 * address in tether's figures, and asking for stats opens no new connection whose close tether
 * might not have seen yet.
 *   json()            the JSON stats
 *   prometheus()      the Prometheus text, parsed (parseExposition)
 *   limits()          the JSON's `limits`, after asserting that the Prometheus text agrees
 *                     with it (hits by limit, client connections and addresses, max_connections)
 *   waitLimits(pred)  polls limits() until pred(limits) holds (the figures change when tether
 *                     has handled a close, which the client cannot see: polling the endpoint is
 *                     the event); rejects with the last figures after timeoutMs
 *   waitJson(pred)    the same on the whole JSON
 */
export async function statsConnection(port, { localAddress = '127.0.0.254', statsPath = '/tether/stats' } = {}) {
  const conn = await RawHttp.connect(port, '127.0.0.1', { localAddress });
  const get = async (target) => {
    const res = await conn.request(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    assert.equal(res.status, 200, `GET ${target}: ${res.rawHead}\n${res.body}`);
    assert.ok(!conn.isClosed, `GET ${target}: tether closed the keep-alive stats connection`);
    return res;
  };
  const json = async () => parseJson((await get(statsPath)).body, `GET ${statsPath}`);
  const prometheus = async () => parseExposition((await get(`${statsPath}?format=prometheus`)).body, { prefix: 'tether_' });
  const limits = async () => {
    // The figures may move between the two requests (a close tether handles meanwhile): read
    // JSON, Prometheus, JSON, and compare when both JSON answers are the same.
    for (let attempt = 0; ; attempt++) {
      const a = (await json()).limits;
      const p = await prometheus();
      const b = (await json()).limits;
      if (!isDeepStrictEqual(a, b) && attempt < 20) continue;
      assert.deepEqual(b, a, 'the limits figures kept changing while being compared');
      for (const l of LIMIT_NAMES) {
        assert.equal(sampleValue(p, 'tether_limit_hits_total', { limit: l }), a.hits_total[l], `tether_limit_hits_total{limit="${l}"} vs JSON`);
      }
      assert.deepEqual(Object.keys(a.hits_total).sort(), [...LIMIT_NAMES].sort(), 'limits.hits_total keys');
      assert.equal(sampleValue(p, 'tether_client_connections'), a.client_connections, 'tether_client_connections vs JSON');
      assert.equal(sampleValue(p, 'tether_max_connections'), a.max_connections, 'tether_max_connections vs JSON');
      assert.equal(sampleValue(p, 'tether_client_addresses'), a.client_addresses, 'tether_client_addresses vs JSON');
      return a;
    }
  };
  const poll = async (read, pred, what, timeoutMs) => {
    let last;
    let stop = false;
    const attempt = async () => {
      while (!stop) {
        last = await read();
        if (pred(last)) return last;
        await new Promise((resolve) => setTimeout(resolve, 20)); // between polls of the endpoint
      }
      return last;
    };
    try {
      return await withTimeout(attempt(), timeoutMs, () => `${what}; last figures: ${JSON.stringify(last)}`);
    } finally {
      stop = true;
    }
  };
  // One request at once: from then on the connection is kept for keepalive_timeout, not
  // closed at client_header_timeout as a connection that never sent a request would be.
  await json();
  return {
    conn,
    json,
    prometheus,
    limits,
    waitLimits: (pred, what = 'the limits figures', timeoutMs = DEFAULT_TIMEOUT_MS) => poll(limits, pred, what, timeoutMs),
    waitJson: (pred, what = 'the stats', timeoutMs = DEFAULT_TIMEOUT_MS) => poll(json, pred, what, timeoutMs),
    close: () => conn.destroy(),
  };
}

export { mapLimit } from './harness.mjs';
