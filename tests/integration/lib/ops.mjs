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
import { DEFAULT_TIMEOUT_MS, RawHttp, tetherBin, trackChild, withTimeout } from './harness.mjs';
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

export { mapLimit } from './harness.mjs';
