// Integration test harness: starts Tether and real peers, and speaks raw HTTP.
//
// Rules kept here so the tests need not repeat them:
// - every server listens on 127.0.0.1 port 0 and is stopped by its pid (child processes)
//   or close() (in-process servers), awaiting the exit / close;
// - nothing waits by sleeping: every wait is on an event, with a timeout only as a failure
//   guard;
// - child processes are killed when the test process exits, however it exits, so a failed
//   test never leaves a server behind nor keeps the test runner waiting.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';

export const INTEGRATION_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Debian's python3 (the one with python3-websockets); the first python3 on PATH may lack it. */
export const PYTHON = process.env.TETHER_PYTHON || '/usr/bin/python3';

const STARTUP_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
export const DEFAULT_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// Small helpers

/**
 * Resolves or rejects like `promise`, or rejects with "timed out: WHAT" after `ms` (a failure
 * guard, never a way to wait). `what` may be a function, called when the guard fires.
 */
export function withTimeout(promise, ms, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`timed out after ${ms} ms waiting for ${typeof what === 'function' ? what() : what}`));
    }, ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/** A port that was free a moment ago and has nothing listening on it now. */
export async function deadPort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

// Children still running when this process exits are killed, so that no server outlives
// a failed or interrupted test file.
const liveChildren = new Set();
function killLiveChildren() {
  for (const child of liveChildren) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.on('exit', killLiveChildren);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killLiveChildren();
    process.kill(process.pid, sig); // then die of the same signal, as without this handler
  });
}

function track(child) {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

/**
 * Registers a child process spawned by a test (e.g. curl) so that it is killed by pid when
 * the test process exits, like the servers started here. Returns the child.
 */
export function trackChild(child) {
  track(child);
  return child;
}

function exitPromise(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/** Sends `signal` to `child` by its pid and awaits its exit (SIGKILL after a guard timeout). */
async function killAndWait(child, signal, what) {
  const exited = exitPromise(child);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill(signal);
  }
  try {
    return await withTimeout(exited, STOP_TIMEOUT_MS, `${what} (pid ${child.pid}) to exit after ${signal}`);
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Tether

/** The tether binary from $TETHER_BIN; throws a clear error at once when it is missing. */
export function tetherBin() {
  const bin = process.env.TETHER_BIN;
  if (!bin) {
    throw new Error('TETHER_BIN is not set: run these tests through ctest, or set TETHER_BIN=/path/to/tether');
  }
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    throw new Error(`TETHER_BIN=${bin} is not an executable file (has tether been built?)`);
  }
  if (!fs.statSync(bin).isFile()) {
    throw new Error(`TETHER_BIN=${bin} is not a file`);
  }
  return bin;
}

/** Number of `listen` directives in a conf text (comments ignored). */
export function countListenDirectives(confText) {
  const withoutComments = confText.replace(/#[^\n]*/g, '');
  return [...withoutComments.matchAll(/(?:^|[\s;{}])listen\s+[^;]*;/g)].length;
}

function writeConf(confText) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-test-'));
  const file = path.join(dir, 'tether.conf');
  fs.writeFileSync(file, confText);
  return { dir, file };
}

function describeOutput(lines) {
  return lines.length ? lines.map((l) => `  | ${l}`).join('\n') : '  | (nothing)';
}

/**
 * Writes `confText` to a temporary file, runs `$TETHER_BIN -c FILE`, and resolves once
 * stderr has shown one "listening on HOST:PORT" line per listen directive in the conf.
 * Resolves to { pid, ports, port, stderrLines, stdoutLines, confFile, stop() };
 * stop() sends SIGTERM, awaits the exit and asserts exit code 0 and that no stderr line
 * has "[alert]" or "[emerg]" (the assertion message carries the whole stderr).
 */
export async function startTether(confText, { args = [] } = {}) {
  const bin = tetherBin();
  const expected = countListenDirectives(confText);
  assert.ok(expected > 0, 'startTether: the conf has no listen directive');
  const { dir, file } = writeConf(confText);

  const child = spawn(bin, [...args, '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  const stderrLines = [];
  const stderrWaiters = [];
  const stdoutLines = [];
  const ports = [];
  readline.createInterface({ input: child.stdout }).on('line', (l) => stdoutLines.push(l));
  const stderr = readline.createInterface({ input: child.stderr });
  const stderrClosed = once(stderr, 'close');

  const dump = () =>
    `tether ${bin} -c ${file}\n--- conf ---\n${confText}\n--- stderr ---\n${describeOutput(stderrLines)}` +
    (stdoutLines.length ? `\n--- stdout ---\n${describeOutput(stdoutLines)}` : '');

  const ready = new Promise((resolve, reject) => {
    stderr.on('line', (line) => {
      stderrLines.push(line);
      for (const w of [...stderrWaiters]) {
        if (w.pred(line, stderrLines.length - 1)) {
          stderrWaiters.splice(stderrWaiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
      const m = /listening on (\S+):(\d+)/.exec(line);
      if (m) {
        ports.push(Number(m[2]));
        if (ports.length === expected) resolve();
      }
    });
    child.once('error', (err) => reject(new Error(`cannot run tether: ${err.message}\n${dump()}`)));
    child.once('exit', (code, signal) =>
      reject(
        new Error(
          `tether exited (code ${code}, signal ${signal}) after ${ports.length} of ${expected} ` +
            `"listening on" lines\n${dump()}`,
        ),
      ),
    );
  });

  try {
    await withTimeout(ready, STARTUP_TIMEOUT_MS, () => `tether to log ${expected} "listening on" line(s)\n${dump()}`);
  } catch (err) {
    if (child.exitCode === null && child.signalCode === null) {
      await killAndWait(child, 'SIGKILL', 'tether').catch(() => {});
    }
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  let stopped = null;
  const tether = {
    pid: child.pid,
    ports,
    port: ports[0],
    stderrLines,
    stdoutLines,
    confFile: file,
    /**
     * The first stderr line (past or future) for which pred(line, index) is true: tether's log
     * as an event (index: the line's position in stderrLines).
     */
    waitStderr(pred, what = 'a log line', timeoutMs = DEFAULT_TIMEOUT_MS) {
      const found = stderrLines.find((line, i) => pred(line, i));
      if (found) return Promise.resolve(found);
      let waiter;
      const p = new Promise((resolve) => {
        waiter = { pred, resolve };
        stderrWaiters.push(waiter);
      });
      return withTimeout(p, timeoutMs, what).finally(() => {
        const i = stderrWaiters.indexOf(waiter);
        if (i >= 0) stderrWaiters.splice(i, 1);
      });
    },
    /**
     * Like waitStderr, but only lines from index `from` of stderrLines on count: take
     * `const mark = tether.stderrLines.length` before an action, then await what it logs.
     */
    waitStderrFrom(from, pred, what = 'a log line', timeoutMs = DEFAULT_TIMEOUT_MS) {
      return tether.waitStderr((line, i) => i >= from && pred(line), what, timeoutMs);
    },
    dump,
    /** True while the process runs. */
    get running() {
      return child.exitCode === null && child.signalCode === null;
    },
    stop() {
      stopped ??= (async () => {
        try {
          const wasRunning = tether.running;
          const { code, signal } = await killAndWait(child, 'SIGTERM', 'tether');
          await stderrClosed; // every stderr line has been read
          assert.ok(wasRunning, `tether had exited before stop() (code ${code}, signal ${signal})\n${dump()}`);
          assert.equal(signal, null, `tether was killed by ${signal} instead of exiting on SIGTERM\n${dump()}`);
          assert.equal(code, 0, `tether exited with code ${code} on SIGTERM\n${dump()}`);
          const bad = stderrLines.filter((l) => l.includes('[alert]') || l.includes('[emerg]'));
          assert.deepEqual(bad, [], `tether logged [alert]/[emerg] lines\n${dump()}`);
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      })();
      return stopped;
    },
    /** Resolves to { code, signal } once the process has exited, however it was stopped. */
    exited: exitPromise(child),
    /**
     * Like stop(), for tests that stop tether another way: sends `signal` by pid (e.g.
     * 'SIGQUIT'), or nothing when `signal` is null (e.g. `tether -s quit` sent it), then awaits
     * the exit (guarded by timeoutMs) and asserts exit code 0 and no [alert]/[emerg] line.
     * Resolves to { code, signal }. stop() afterwards returns the same promise.
     */
    stopWith(signal, { timeoutMs = STOP_TIMEOUT_MS } = {}) {
      stopped ??= (async () => {
        try {
          const exited = exitPromise(child);
          if (signal && tether.running) child.kill(signal);
          let result;
          try {
            result = await withTimeout(exited, timeoutMs, () => `tether (pid ${child.pid}) to exit${signal ? ` after ${signal}` : ''}\n${dump()}`);
          } catch (err) {
            child.kill('SIGKILL');
            await exited;
            throw err;
          }
          await stderrClosed; // every stderr line has been read
          assert.equal(result.signal, null, `tether was killed by ${result.signal}\n${dump()}`);
          assert.equal(result.code, 0, `tether exited with code ${result.code}${signal ? ` on ${signal}` : ''}\n${dump()}`);
          const bad = stderrLines.filter((l) => l.includes('[alert]') || l.includes('[emerg]'));
          assert.deepEqual(bad, [], `tether logged [alert]/[emerg] lines\n${dump()}`);
          return result;
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      })();
      return stopped;
    },
  };
  return tether;
}

/**
 * Runs `$TETHER_BIN ...args` to completion (e.g. `-t -c FILE`), with a guard timeout.
 * Resolves to { code, signal, stdout, stderr }.
 */
export async function runTether(args, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const bin = tetherBin();
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const done = new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  try {
    return await withTimeout(done, timeoutMs, `tether ${args.join(' ')} to exit`);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

/** `tether -t -c FILE` on `confText` written to a temporary FILE: { code, signal, stdout, stderr, file }. */
export async function checkConfig(confText) {
  const { dir, file } = writeConf(confText);
  try {
    return { ...(await runTether(['-t', '-c', file])), file };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Backends

/**
 * An in-process `ws` WebSocketServer on 127.0.0.1:0 that echoes every message with its type
 * (unless echo: false) and records each connection:
 *   { ws, path, headers, protocol, messages: [{data, isBinary}], pings: [Buffer], pongs: [Buffer],
 *     closed: Promise<{code, reason}> }
 * opts: handleProtocols, verifyClient, maxPayload (default 64 MiB), echo (default true),
 * port (default 0: a free port; a fixed port restarts a backend where it was).
 * Returns { port, url, connections, waitConnection(pred), onConnection(fn), close() }.
 */
export async function startNodeWsBackend(opts = {}) {
  const { handleProtocols, verifyClient, maxPayload = 64 * 1024 * 1024, echo = true, port: fixedPort = 0 } = opts;
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: fixedPort,
    maxPayload,
    ...(handleProtocols ? { handleProtocols } : {}),
    ...(verifyClient ? { verifyClient } : {}),
  });
  await new Promise((resolve, reject) => {
    const failed = (err) => reject(err); // e.g. EADDRINUSE for a fixed port
    wss.once('error', failed);
    wss.once('listening', () => {
      wss.off('error', failed);
      resolve();
    });
  });
  const { port } = wss.address();
  const connections = [];
  const waiters = [];
  const listeners = new Set();

  wss.on('connection', (ws, req) => {
    const conn = {
      ws,
      path: req.url,
      headers: req.headers,
      protocol: ws.protocol,
      messages: [],
      pings: [],
      pongs: [],
    };
    conn.closed = new Promise((resolve) => {
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    ws.on('error', (err) => {
      conn.error = err;
    });
    ws.on('message', (data, isBinary) => {
      conn.messages.push({ data, isBinary });
      if (echo) ws.send(data, { binary: isBinary });
    });
    ws.on('ping', (data) => conn.pings.push(data));
    ws.on('pong', (data) => conn.pongs.push(data));
    connections.push(conn);
    for (const fn of [...listeners]) fn(conn);
    for (const w of [...waiters]) {
      if (w.pred(conn)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(conn);
      }
    }
  });

  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    connections,
    /** The first connection (past or future) for which pred(conn) is true. */
    waitConnection(pred = () => true, timeoutMs = DEFAULT_TIMEOUT_MS) {
      const found = connections.find(pred);
      if (found) return Promise.resolve(found);
      let waiter;
      const p = new Promise((resolve) => {
        waiter = { pred, resolve };
        waiters.push(waiter);
      });
      return withTimeout(p, timeoutMs, 'a backend connection').finally(() => {
        const i = waiters.indexOf(waiter);
        if (i >= 0) waiters.splice(i, 1);
      });
    },
    /** Calls fn(conn) for every connection from now on; returns the function that stops it. */
    onConnection(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async close() {
      for (const client of wss.clients) client.terminate();
      await new Promise((resolve, reject) => wss.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

/**
 * An in-process HTTP server on 127.0.0.1:0 that refuses every WebSocket upgrade with
 * `status` (a backend that is up but fails the handshake). Returns { port, close() }.
 */
export async function startRefusingBackend(status = 403) {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Length: 8\r\nConnection: close\r\n\r\nrefused\n`);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sockets = new Set();
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  return {
    port: server.address().port,
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

/**
 * Spawns py_backend.py (python3-websockets echo server) and awaits its "PORT <n>" line.
 * Returns { pid, port, url, stderr(), stop() }; stop() sends SIGTERM and awaits exit 0.
 */
export async function startPyBackend() {
  const script = path.join(INTEGRATION_DIR, 'py_backend.py');
  // stdin is a pipe that we never close: EOF (our exit, however abrupt) stops the backend too.
  const child = spawn(PYTHON, [script, '--exit-on-stdin-eof'], { stdio: ['pipe', 'pipe', 'pipe'] });
  track(child);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const lines = readline.createInterface({ input: child.stdout });
  const portLine = new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      const m = /^PORT (\d+)$/.exec(line);
      if (m) resolve(Number(m[1]));
    });
    child.once('error', (err) => reject(new Error(`cannot run ${PYTHON} ${script}: ${err.message}`)));
    child.once('exit', (code, signal) =>
      reject(new Error(`py_backend.py exited (code ${code}, signal ${signal}) before printing its port\n${stderr}`)),
    );
  });
  let port;
  try {
    port = await withTimeout(portLine, STARTUP_TIMEOUT_MS, 'py_backend.py to print its port');
  } catch (err) {
    await killAndWait(child, 'SIGKILL', 'py_backend.py').catch(() => {});
    throw err;
  }
  return {
    pid: child.pid,
    port,
    url: `ws://127.0.0.1:${port}`,
    stderr: () => stderr,
    async stop() {
      const { code, signal } = await killAndWait(child, 'SIGTERM', 'py_backend.py');
      assert.ok(code === 0 && signal === null, `py_backend.py exited with code ${code}, signal ${signal}\n${stderr}`);
    },
  };
}

/** Runs py_client.py URL to completion: { code, signal, stdout, stderr }. */
export async function runPyClient(url, { timeoutMs = 20_000 } = {}) {
  const script = path.join(INTEGRATION_DIR, 'py_client.py');
  const child = spawn(PYTHON, [script, url], { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const done = new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  try {
    return await withTimeout(done, timeoutMs, `py_client.py ${url} to exit`);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// WebSocket client side

/**
 * Opens a `ws` client and awaits 'open' (rejects on 'error' or an HTTP answer other than 101,
 * naming the status). The returned object has the socket and a message queue:
 *   { ws, next(timeoutMs) → {data, isBinary}, closed: Promise<{code, reason}>, pongs: [Buffer],
 *     pings: [Buffer], upgrade: {status, headers} (the 101: Node's lowercase header names,
 *     set-cookie an array) }
 */
export async function openWs(url, protocols = [], options = {}) {
  const ws = new WebSocket(url, protocols, options);
  const queue = [];
  const waiters = [];
  const client = { ws, pongs: [], pings: [], queue, error: null };
  ws.on('error', (err) => {
    client.error = err;
  });
  ws.on('message', (data, isBinary) => {
    const msg = { data, isBinary };
    const w = waiters.shift();
    if (w) w(msg);
    else queue.push(msg);
  });
  ws.on('ping', (d) => client.pings.push(d));
  ws.on('pong', (d) => client.pongs.push(d));
  ws.once('upgrade', (res) => {
    client.upgrade = { status: res.statusCode, headers: res.headers };
  });
  client.closed = new Promise((resolve) => {
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  client.next = (timeoutMs = DEFAULT_TIMEOUT_MS) => {
    if (queue.length) return Promise.resolve(queue.shift());
    let waiter;
    const p = new Promise((resolve) => {
      waiter = resolve;
      waiters.push(resolve);
    });
    return withTimeout(p, timeoutMs, `a message on ${url}`).finally(() => {
      const i = waiters.indexOf(waiter);
      if (i >= 0) waiters.splice(i, 1);
    });
  };
  const opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        reject(new Error(`${url}: expected 101, got ${res.statusCode}: ${JSON.stringify(body)}`));
        req.destroy();
      });
    });
  });
  await withTimeout(opened, DEFAULT_TIMEOUT_MS, `WebSocket ${url} to open`).catch((err) => {
    ws.terminate();
    throw err;
  });
  return client;
}

/**
 * Attempts a WebSocket handshake that must be answered with an HTTP response instead of 101.
 * Resolves to { status, headers, body } (ws's 'unexpected-response'); rejects if it opens.
 */
export async function wsUnexpectedResponse(url, protocols = [], options = {}) {
  const ws = new WebSocket(url, protocols, options);
  const result = new Promise((resolve, reject) => {
    ws.once('open', () => {
      reject(new Error(`${url}: the WebSocket opened, expected an HTTP error response`));
      ws.terminate();
    });
    ws.on('error', (err) => reject(new Error(`${url}: ${err.message}`)));
    ws.once('unexpected-response', (req, res) => {
      res.on('error', reject);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        resolve({ status: res.statusCode, headers: res.headers, body });
        req.destroy();
      });
    });
  });
  return withTimeout(result, DEFAULT_TIMEOUT_MS, `an HTTP response to the upgrade ${url}`);
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP over net

/**
 * A raw TCP connection for HTTP edge cases: write bytes exactly as given, read responses one
 * at a time as the server sends them, and observe whether and how the server closes.
 */
export class RawHttp {
  /** opts.localAddress: the source address (Linux routes all of 127/8 to lo: '127.0.0.2' is another client). */
  static async connect(port, host = '127.0.0.1', { localAddress } = {}) {
    const socket = net.connect({ port, host, ...(localAddress ? { localAddress } : {}) });
    await withTimeout(once(socket, 'connect'), DEFAULT_TIMEOUT_MS, `connect to ${host}:${port}`);
    return new RawHttp(socket);
  }

  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    /** null while open; 'end' (FIN) or 'reset' (ECONNRESET/EPIPE) once the server closed. */
    this.closedBy = null;
    this.error = null;
    this._wakers = [];
    socket.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this._wake();
    });
    socket.on('end', () => {
      this.closedBy ??= 'end';
      this._wake();
    });
    socket.on('error', (err) => {
      this.error = err;
      this.closedBy ??= 'reset';
      this._wake();
    });
    socket.on('close', () => {
      this.closedBy ??= 'end';
      this._wake();
    });
  }

  _wake() {
    const w = this._wakers;
    this._wakers = [];
    for (const f of w) f();
  }

  _changed() {
    return new Promise((resolve) => this._wakers.push(resolve));
  }

  write(data) {
    this.socket.write(data);
  }

  /** Writes `data` in one write and reads one response. */
  async request(data, opts = {}) {
    this.write(data);
    return this.readResponse(opts);
  }

  /**
   * Resolves to the next complete response: { version, status, reason, headers (lowercase
   * names; repeated headers as arrays), rawHead, body (string), bodyBytes (Buffer) }.
   * `method` tells whether a body follows (HEAD: none).
   */
  async readResponse({ method = 'GET', timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    const attempt = async () => {
      for (;;) {
        const parsed = parseResponse(this.buf, method, this.closedBy !== null);
        if (parsed) {
          this.buf = this.buf.subarray(parsed.consumed);
          return parsed.response;
        }
        if (this.closedBy !== null) {
          throw new Error(
            `connection closed (${this.closedBy}${this.error ? `: ${this.error.code}` : ''}) before a complete ` +
              `response; received ${JSON.stringify(this.buf.toString('latin1').slice(0, 500))}`,
          );
        }
        await this._changed();
      }
    };
    return withTimeout(
      attempt(),
      timeoutMs,
      () => `an HTTP response; received so far ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`,
    );
  }

  /** Resolves to 'end' or 'reset' once the server has closed the connection; any extra bytes fail. */
  async waitClose({ timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    const attempt = async () => {
      while (this.closedBy === null) await this._changed();
      return this.closedBy;
    };
    const how = await withTimeout(attempt(), timeoutMs, 'the server to close the connection');
    assert.equal(this.buf.length, 0, `unexpected bytes before close: ${JSON.stringify(this.buf.toString('latin1'))}`);
    return how;
  }

  get isClosed() {
    return this.closedBy !== null;
  }

  destroy() {
    this.socket.destroy();
  }
}

/**
 * Parses one response from the start of `buf`. Returns { response, consumed } or null when
 * more bytes are needed. `eof`: the peer closed, so a close-delimited body is complete.
 */
export function parseResponse(buf, method = 'GET', eof = false) {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return null;
  const rawHead = buf.subarray(0, headEnd).toString('latin1');
  const head = parseHead(rawHead);
  const { headers, status } = head;
  const response = { version: head.version, status, reason: head.reason, headers, rawHead };
  let pos = headEnd + 4;
  const single = (name) => {
    const v = headers[name];
    if (Array.isArray(v)) throw new Error(`response has ${v.length} ${name} headers: ${v.join(' | ')}`);
    return v;
  };
  let body;
  if (method === 'HEAD' || (status >= 100 && status < 200) || status === 204 || status === 304) {
    body = Buffer.alloc(0);
  } else if (/\bchunked\b/i.test(single('transfer-encoding') ?? '')) {
    const chunks = [];
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', pos);
      if (lineEnd < 0) return null;
      const size = parseInt(buf.subarray(pos, lineEnd).toString('latin1').split(';')[0], 16);
      if (Number.isNaN(size)) throw new Error('malformed chunk size in response');
      pos = lineEnd + 2;
      if (size === 0) {
        const trailerEnd = buf.indexOf('\r\n', pos);
        if (trailerEnd < 0) return null;
        if (trailerEnd !== pos) {
          const end = buf.indexOf('\r\n\r\n', pos);
          if (end < 0) return null;
          pos = end + 4;
        } else {
          pos += 2;
        }
        break;
      }
      if (buf.length < pos + size + 2) return null;
      chunks.push(buf.subarray(pos, pos + size));
      pos += size + 2;
    }
    body = Buffer.concat(chunks);
  } else if (single('content-length') !== undefined) {
    const n = Number(single('content-length'));
    if (!Number.isInteger(n) || n < 0) throw new Error(`bad content-length ${headers['content-length']}`);
    if (buf.length < pos + n) return null;
    body = buf.subarray(pos, pos + n);
    pos += n;
  } else {
    // Delimited by the close of the connection.
    if (!eof) return null;
    body = buf.subarray(pos);
    pos = buf.length;
  }
  response.bodyBytes = Buffer.from(body);
  response.body = response.bodyBytes.toString('utf8');
  return { response, consumed: pos };
}

/** Connects, writes `data` in one write, reads one response, closes. */
export async function rawRequest(port, data, opts = {}) {
  const conn = await RawHttp.connect(port);
  try {
    return await conn.request(data, opts);
  } finally {
    conn.destroy();
  }
}

/** Asserts an error response: status, text/plain, and a body of exactly one non-empty line. */
export function assertOneLineReason(res, status, what = '') {
  const ctx = `${what ? `${what}: ` : ''}${res.rawHead}\r\n\r\n${res.body}`;
  assert.equal(res.status, status, `status ${res.status}, expected ${status}\n${ctx}`);
  const type = [].concat(res.headers['content-type'] ?? '')[0];
  assert.match(type, /^text\/plain\b/i, `Content-Type ${JSON.stringify(type)}, expected text/plain\n${ctx}`);
  assert.match(res.body, /^[^\r\n]*[^\s][^\r\n]*\r?\n?$/, `body is not one non-empty line\n${ctx}`);
}

/** Runs fn(item, i) for all items, at most `limit` at once; results in order; the first error rejects. */
/**
 * Awaits every promise (stopping servers: tether.stop(), backend.close() …), all of them even if
 * one fails, then throws the first failure.
 */
export async function settleAll(promises) {
  const results = await Promise.allSettled(promises);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

export async function mapLimit(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  let failed = null;
  const worker = async () => {
    while (failed === null && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i], i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed) throw failed;
  return results;
}

/** Status line and headers of a raw response head (lowercase names; repeated headers as arrays). */
export function parseHead(rawHead) {
  const [statusLine, ...lines] = rawHead.split('\r\n');
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!m) throw new Error(`malformed status line: ${JSON.stringify(statusLine)}`);
  const headers = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    if (i <= 0) throw new Error(`malformed header line: ${JSON.stringify(line)}`);
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    if (name in headers) headers[name] = [].concat(headers[name], value);
    else headers[name] = value;
  }
  return { version: m[1], status: Number(m[2]), reason: m[3] ?? '', headers };
}
