// Helpers for the session transports of the edge protocol (SSE, long polling, send):
// an SSE parser, a raw-socket SSE client, a TCP proxy that cuts streams, curl as an SSE
// client, fetch wrappers for poll / POST / DELETE, and backend-side helpers.
//
// Same rules as harness.mjs: servers on 127.0.0.1:0, stopped by close() or pid; every wait is
// on an event, with a timeout only as a failure guard.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { EventSource } from 'eventsource';
import { DEFAULT_TIMEOUT_MS, RawHttp, parseHead, parseResponse, rawRequest, trackChild, withTimeout } from './harness.mjs';

/** A session id: at least 128 bits of base64url (22 characters or more). */
export const SID_RE = /^[A-Za-z0-9_-]{22,}$/;

/** A well-formed session id that no server has issued (random, 32 base64url characters). */
export function unknownSid() {
  return randomBytes(24).toString('base64url');
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness: each test prints its seed; TETHER_TEST_SEED=n replays a run.

export function testSeed() {
  const env = process.env.TETHER_TEST_SEED;
  return env ? Number(env) >>> 0 : Math.floor(Math.random() * 2 ** 32) >>> 0;
}

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [lo, hi] from `rand`. */
export function randInt(rand, lo, hi) {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

/** Fisher–Yates shuffle of a copy of `items`. */
export function shuffled(items, rand) {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** `url` with `params` appended to its query (existing query kept as it is). */
export function withQuery(url, params) {
  const q = Object.entries(params)
    .map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`)
    .join('&');
  if (!q) return url;
  return url + (url.includes('?') ? '&' : '?') + q;
}

// ---------------------------------------------------------------------------------------------
// A queue of items produced by a stream, consumed in order by awaiting tests.

export class ItemQueue {
  constructor(describe) {
    this.items = [];
    this.waiters = [];
    this.done = null; // set once no more items will come (a string saying why)
    this.describe = describe;
  }

  push(item) {
    this.items.push(item);
    this._wake();
  }

  finish(why) {
    this.done ??= why;
    this._wake();
  }

  _wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /**
   * Resolves to the next item for which pred(item) is true; items before it are removed and
   * handed to `skipped` (an array) when given. Rejects once the stream is done without one.
   */
  async take(pred = () => true, { timeoutMs = DEFAULT_TIMEOUT_MS, what = 'an item', skipped = null } = {}) {
    const attempt = async () => {
      for (;;) {
        while (this.items.length) {
          const item = this.items.shift();
          if (pred(item)) return item;
          if (skipped) skipped.push(item);
        }
        if (this.done !== null) throw new Error(`${this.describe()}: ended (${this.done}) before ${what}`);
        await new Promise((resolve) => this.waiters.push(resolve));
      }
    };
    return withTimeout(attempt(), timeoutMs, () => `${what} on ${this.describe()}`);
  }
}

// ---------------------------------------------------------------------------------------------
// SSE parsing (the WHATWG event stream format), keeping what a test may want to assert on:
// every event with its fields in order, comments, and retry fields.

/**
 * Incremental SSE parser. Calls onItem with:
 *   { type: 'event', event (undefined for "message"), id (undefined when the block had none),
 *     data (data lines joined with "\n"), fields: [[name, value], ...] }
 *   { type: 'comment', text }        (": heartbeat" → text "heartbeat")
 *   { type: 'retry', value }         (as soon as the field is parsed)
 * A block with no data line dispatches no event (as EventSource does); an unfinished block at
 * the end of the stream is never dispatched.
 */
export class SseParser {
  constructor(onItem) {
    this.onItem = onItem;
    this.decoder = new StringDecoder('utf8');
    this.pending = '';
    this._resetBlock();
  }

  _resetBlock() {
    this.fields = [];
    this.dataLines = [];
    this.event = undefined;
    this.id = undefined;
  }

  feedBytes(buf) {
    this.feed(this.decoder.write(buf));
  }

  feed(text) {
    const s = this.pending ? this.pending + text : text;
    let pos = 0;
    let lf = -2;
    let cr = -2;
    for (;;) {
      if (lf !== -1 && lf < pos) lf = s.indexOf('\n', pos);
      if (cr !== -1 && cr < pos) cr = s.indexOf('\r', pos);
      let end;
      let next;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        if (cr === s.length - 1) break; // maybe the CR of a CRLF: wait for the next byte
        end = cr;
        next = s.charCodeAt(cr + 1) === 10 ? cr + 2 : cr + 1;
      } else if (lf !== -1) {
        end = lf;
        next = lf + 1;
      } else {
        break;
      }
      this._line(s.slice(pos, end));
      pos = next;
    }
    this.pending = s.slice(pos);
  }

  _line(line) {
    if (line === '') {
      if (this.dataLines.length) {
        this.onItem({
          type: 'event',
          event: this.event,
          id: this.id,
          data: this.dataLines.join('\n'),
          fields: this.fields,
        });
      }
      this._resetBlock();
      return;
    }
    if (line[0] === ':') {
      this.onItem({ type: 'comment', text: line.slice(1).replace(/^ /, ''), raw: line });
      return;
    }
    const i = line.indexOf(':');
    const name = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
    this.fields.push([name, value]);
    if (name === 'data') this.dataLines.push(value);
    else if (name === 'event') this.event = value;
    else if (name === 'id') this.id = value;
    else if (name === 'retry') this.onItem({ type: 'retry', value });
  }
}

/** Parses a whole SSE text into items (for tests on a captured body). */
export function parseSseText(text) {
  const items = [];
  new SseParser((item) => items.push(item)).feed(text);
  return items;
}

/** JSON.parse with the text in the error message. */
export function parseJson(text, what = 'JSON') {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not valid JSON (${err.message}): ${JSON.stringify(String(text).slice(0, 500))}`);
  }
}

// ---------------------------------------------------------------------------------------------
// A raw-socket SSE client

/** Streaming decoder of a chunked HTTP body. */
class Dechunker {
  constructor(onData, onEnd) {
    this.onData = onData;
    this.onEnd = onEnd;
    this.state = 'size';
    this.remaining = 0;
    this.buf = Buffer.alloc(0);
  }

  push(chunk) {
    let buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let pos = 0;
    for (;;) {
      if (this.state === 'size') {
        const i = buf.indexOf('\r\n', pos);
        if (i < 0) break;
        const size = parseInt(buf.subarray(pos, i).toString('latin1').split(';')[0], 16);
        if (Number.isNaN(size)) throw new Error('malformed chunk size in the SSE response');
        pos = i + 2;
        if (size === 0) {
          this.state = 'done';
          this.onEnd();
          break;
        }
        this.remaining = size;
        this.state = 'data';
      } else if (this.state === 'data') {
        const n = Math.min(this.remaining, buf.length - pos);
        if (n === 0) break;
        this.onData(buf.subarray(pos, pos + n));
        pos += n;
        this.remaining -= n;
        if (this.remaining === 0) this.state = 'crlf';
      } else if (this.state === 'crlf') {
        if (buf.length - pos < 2) break;
        pos += 2;
        this.state = 'size';
      } else {
        break;
      }
    }
    this.buf = Buffer.from(buf.subarray(pos));
    buf = null;
  }
}


const BODY_PREFIX_BYTES = 64 * 1024;

/**
 * An SSE response read from a raw socket. After openSse() resolves:
 *   status, headers, rawHead; for a response that is not a 200 event stream also body (the
 *   whole response was read, as by rawRequest).
 * For a 200 event stream:
 *   take(pred, opts) / nextEvent(opts) — parsed items in order (see SseParser);
 *   bodyPrefix — the first 64 KiB of the body bytes as received;
 *   ended — Promise<'end'|'reset'> once the server closed the connection;
 *   pause() / resume() — stop / restart reading the socket (TCP back-pressure);
 *   destroy() — drop the connection.
 */
export class SseResponse {
  constructor(socket, label) {
    this.socket = socket;
    this.label = label;
    this.headBuf = Buffer.alloc(0);
    this.head = null;
    this.streaming = false;
    this.whole = null; // Buffer of the whole response for non-streaming answers
    this.bodyPrefix = Buffer.alloc(0);
    this.bodyBytes = 0;
    this.closedBy = null;
    this.queue = new ItemQueue(() => `SSE stream ${label}`);
    this.parser = new SseParser((item) => this.queue.push(item));
    this.ended = new Promise((resolve) => {
      this._resolveEnded = resolve;
    });
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    socket.on('data', (d) => this._onData(d));
    socket.on('end', () => this._onClose('end'));
    socket.on('error', (err) => {
      this.error = err;
      this._onClose('reset');
    });
    socket.on('close', () => this._onClose('end'));
  }

  _onData(d) {
    try {
      if (this.streaming) {
        this._body(d);
        return;
      }
      if (this.whole) {
        this.whole = Buffer.concat([this.whole, d]);
        this._tryWhole();
        return;
      }
      this.headBuf = Buffer.concat([this.headBuf, d]);
      const i = this.headBuf.indexOf('\r\n\r\n');
      if (i < 0) return;
      this.rawHead = this.headBuf.subarray(0, i).toString('latin1');
      this.head = parseHead(this.rawHead);
      Object.assign(this, { status: this.head.status, headers: this.head.headers, version: this.head.version });
      const type = [].concat(this.head.headers['content-type'] ?? '')[0];
      if (this.head.status === 200 && /^text\/event-stream\b/i.test(type)) {
        this.streaming = true;
        const te = [].concat(this.head.headers['transfer-encoding'] ?? '')[0];
        if (/\bchunked\b/i.test(te)) {
          this.dechunker = new Dechunker(
            (b) => this._payload(b),
            () => this.queue.finish('the chunked body ended'),
          );
        }
        const rest = this.headBuf.subarray(i + 4);
        this.headBuf = null;
        this._resolveReady();
        if (rest.length) this._body(rest);
      } else {
        this.whole = this.headBuf;
        this.headBuf = null;
        this._tryWhole();
      }
    } catch (err) {
      this._rejectReady(err);
      this.queue.finish(err.message);
      this.socket.destroy();
    }
  }

  _tryWhole() {
    const parsed = parseResponse(this.whole, 'GET', this.closedBy !== null);
    if (parsed) {
      const r = parsed.response;
      Object.assign(this, { body: r.body, bodyBytesBuf: r.bodyBytes });
      this._resolveReady();
    }
  }

  _body(d) {
    if (this.dechunker) this.dechunker.push(d);
    else this._payload(d);
  }

  _payload(b) {
    if (this.bodyPrefix.length < BODY_PREFIX_BYTES) {
      this.bodyPrefix = Buffer.concat([this.bodyPrefix, b.subarray(0, BODY_PREFIX_BYTES - this.bodyPrefix.length)]);
    }
    this.bodyBytes += b.length;
    this.parser.feedBytes(b);
  }

  _onClose(how) {
    if (this.closedBy !== null) return;
    this.closedBy = how;
    if (this.whole) {
      try {
        this._tryWhole();
      } catch (err) {
        this._rejectReady(err);
      }
    }
    if (!this.streaming) {
      this._rejectReady(
        new Error(
          `${this.label}: connection closed (${how}${this.error ? `: ${this.error.code}` : ''}) before a complete ` +
            `response; received ${JSON.stringify((this.whole ?? this.headBuf ?? Buffer.alloc(0)).toString('latin1').slice(0, 300))}`,
        ),
      );
    }
    this.queue.finish(`the connection closed (${how})`);
    this._resolveEnded(how);
  }

  /** The next parsed item (events, comments and retry fields) for which pred is true. */
  take(pred, opts = {}) {
    return this.queue.take(pred, opts);
  }

  /** The next item, whatever its type. */
  next(opts = {}) {
    return this.queue.take(() => true, { what: 'the next item', ...opts });
  }

  /** The next event (comments and retry fields before it are skipped into opts.skipped). */
  nextEvent(opts = {}) {
    return this.queue.take((i) => i.type === 'event', { what: 'the next event', ...opts });
  }

  /** Items parsed but not taken yet. */
  get buffered() {
    return this.queue.items;
  }

  /** Awaits the server closing the connection (guarded). */
  waitEnd(timeoutMs = DEFAULT_TIMEOUT_MS) {
    return withTimeout(this.ended, timeoutMs, `${this.label} to be closed by the server`);
  }

  pause() {
    this.socket.pause();
  }

  resume() {
    this.socket.resume();
  }

  destroy() {
    this.socket.destroy();
  }

  /** The response as assertOneLineReason expects it (non-streaming answers). */
  get response() {
    return { status: this.status, headers: this.headers, rawHead: this.rawHead, body: this.body ?? '' };
  }
}

/**
 * Opens a raw-socket GET for an SSE stream on 127.0.0.1:port and resolves once the response
 * head arrived (a 200 event stream) or the whole response did (anything else).
 * opts: accept (default true: "Accept: text/event-stream"), lastEventId, headers {name: value},
 * localAddress (the source address to connect from, e.g. '127.0.0.2').
 */
export async function openSse(
  port,
  path,
  { accept = true, lastEventId, headers = {}, localAddress, timeoutMs = DEFAULT_TIMEOUT_MS } = {},
) {
  const socket = net.connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) });
  socket.setNoDelay(true);
  const res = new SseResponse(socket, `GET ${path}`);
  let head = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`;
  if (accept) head += 'Accept: text/event-stream\r\n';
  if (lastEventId !== undefined) head += `Last-Event-ID: ${lastEventId}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  socket.write(`${head}\r\n`);
  try {
    await withTimeout(res.ready, timeoutMs, () => `the response to GET ${path}`);
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return res;
}

/** Asserts the head of an SSE stream response (200 and the headers of the edge protocol). */
export function assertSseHead(res, what = '') {
  const ctx = `${what ? `${what}: ` : ''}${res.rawHead}`;
  assert.equal(res.status, 200, `status ${res.status}, expected 200\n${ctx}\n${res.body ?? ''}`);
  assert.match(String(res.headers['content-type']), /^text\/event-stream\b/i, ctx);
  assert.equal(res.headers['cache-control'], 'no-cache', ctx);
  assert.equal(res.headers['x-accel-buffering'], 'no', ctx);
  assert.match(String(res.headers.connection ?? ''), /^close$/i, ctx);
}

/**
 * Reads the start of a new SSE session on `s`: an optional retry field (asserted equal to
 * `retry` when given), then the tether-open event. Returns { sid, protocol, open }.
 */
export async function readOpen(s, { retry } = {}) {
  const skipped = [];
  const open = await s.nextEvent({ what: 'the tether-open event', skipped });
  assert.equal(open.event, 'tether-open', `the first event is not tether-open: ${JSON.stringify(open)}`);
  const body = parseJson(open.data, 'tether-open data');
  assert.match(String(body.session), SID_RE, `tether-open session ${JSON.stringify(body.session)}`);
  assert.equal(typeof body.protocol, 'string', `tether-open protocol ${JSON.stringify(body.protocol)}`);
  assert.equal(open.id, `${body.session}.0`, 'tether-open carries the id <sid>.0');
  if (retry !== undefined) {
    const r = skipped.filter((i) => i.type === 'retry');
    assert.deepEqual(
      r.map((i) => i.value),
      [String(retry)],
      `expected one "retry: ${retry}" before tether-open, got ${JSON.stringify(skipped)}`,
    );
  }
  return { sid: body.session, protocol: body.protocol, open, skipped };
}

/** Asserts that `ev` is the message event <sid>.<seq> with `data` (text messages). */
export function assertMessage(ev, sid, seq, data) {
  assert.equal(ev.type, 'event', `expected message ${seq}, got ${JSON.stringify(ev)}`);
  assert.equal(ev.event, undefined, `message ${seq} must have no event field: ${JSON.stringify(ev)}`);
  assert.equal(ev.id, `${sid}.${seq}`, `message id: ${JSON.stringify(ev)}`);
  if (data !== undefined) assert.equal(ev.data, data, `message ${seq} data`);
}

// ---------------------------------------------------------------------------------------------
// The npm `eventsource` client

/**
 * An `eventsource` EventSource on `url` whose events go to a queue, in order, as
 *   { type: 'open' | 'message' | 'binary' | 'tether-open' | 'tether-gap' | 'tether-close',
 *     data, lastEventId }   and   { type: 'error', code, message, readyState }.
 * closeOnTetherClose (default true): close() inside the tether-close listener, so that the
 * EventSource does not reconnect after the session ended.
 * Returns { es, take(pred, opts), close() }.
 */
export function eventSource(url, { closeOnTetherClose = true, init } = {}) {
  const es = new EventSource(url, init);
  const queue = new ItemQueue(() => `EventSource ${url}`);
  for (const type of ['message', 'binary', 'tether-open', 'tether-gap', 'tether-close']) {
    es.addEventListener(type, (e) => {
      if (type === 'tether-close' && closeOnTetherClose) es.close();
      queue.push({ type, data: e.data, lastEventId: e.lastEventId });
    });
  }
  es.addEventListener('open', () => queue.push({ type: 'open' }));
  es.addEventListener('error', (e) => queue.push({ type: 'error', code: e.code, message: e.message, readyState: es.readyState }));
  return {
    es,
    take: (pred, opts = {}) => queue.take(pred, opts),
    /** The next item of `type` (items of other types before it are skipped). */
    next: (type, opts = {}) => queue.take((i) => i.type === type, { what: `a ${type} event`, ...opts }),
    close: () => es.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// curl -N as an SSE client

/**
 * Spawns `curl -N -s -H 'Accept: text/event-stream' URL` and parses its stdout as SSE.
 * Returns { child, pid, take(pred, opts), stop() } — stop() kills curl by its pid and awaits exit.
 */
export function curlSse(url, extraArgs = []) {
  const child = trackChild(
    spawn('/usr/bin/curl', ['-N', '-s', '-H', 'Accept: text/event-stream', ...extraArgs, url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let stderr = '';
  const queue = new ItemQueue(() => `curl -N ${url}${stderr ? ` (stderr: ${stderr})` : ''}`);
  const parser = new SseParser((item) => queue.push(item));
  child.stdout.on('data', (d) => parser.feedBytes(d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.once('error', (err) => queue.finish(`cannot run curl: ${err.message}`));
  exited.then(({ code, signal }) => queue.finish(`curl exited (code ${code}, signal ${signal})`));
  return {
    child,
    pid: child.pid,
    take: (pred, opts) => queue.take(pred, opts),
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGTERM');
      return withTimeout(exited, DEFAULT_TIMEOUT_MS, `curl (pid ${child.pid}) to exit`);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy that cuts streams

/**
 * A TCP proxy on 127.0.0.1:0 in front of 127.0.0.1:targetPort. The k-th accepted connection
 * (k from 0) is cut after cuts[k] bytes from the server to the client: those bytes are
 * forwarded, then both sockets are destroyed (the client sees its stream break mid-way).
 * Later connections pass through untouched.
 * Records the head of the first request of each connection in `requests`
 * ({ requestLine, headers }) and counts cuts made in `cutsDone`.
 */
export async function startCutProxy(targetPort, cuts) {
  const server = net.createServer();
  const sockets = new Set();
  const state = {
    requests: [],
    cutsDone: 0,
    connections: 0,
    port: 0,
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
  server.on('connection', (client) => {
    const k = state.connections++;
    const limit = k < cuts.length ? cuts[k] : Infinity;
    const upstream = net.connect({ port: targetPort, host: '127.0.0.1' });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    let forwarded = 0;
    let cut = false;
    let head = Buffer.alloc(0);
    let headDone = false;
    client.on('data', (d) => {
      if (!headDone) {
        head = Buffer.concat([head, d]);
        const i = head.indexOf('\r\n\r\n');
        if (i >= 0) {
          headDone = true;
          const [requestLine, ...lines] = head.subarray(0, i).toString('latin1').split('\r\n');
          const headers = {};
          for (const line of lines) {
            const j = line.indexOf(':');
            headers[line.slice(0, j).trim().toLowerCase()] = line.slice(j + 1).trim();
          }
          state.requests.push({ connection: k, requestLine, headers });
        }
      }
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (cut) return;
      if (forwarded + d.length < limit) {
        forwarded += d.length;
        client.write(d);
        return;
      }
      client.write(d.subarray(0, limit - forwarded));
      forwarded = limit;
      cut = true;
      state.cutsDone++;
      client.destroy();
      upstream.destroy();
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => {
      if (!client.destroyed) client.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.port = server.address().port;
  return state;
}

// ---------------------------------------------------------------------------------------------
// HTTP with Node's fetch (poll, POST, DELETE)

/**
 * fetch(url) with a guard timeout, reading the whole body. Resolves to
 * { status, reason, headers (lowercase names), body (utf8), bodyBytes, rawHead } — the shape
 * assertOneLineReason expects.
 */
export async function http(url, { method = 'GET', headers = {}, body, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const controller = new AbortController();
  const attempt = async () => {
    const res = await fetch(url, { method, headers, body, signal: controller.signal, redirect: 'manual' });
    const bodyBytes = Buffer.from(await res.arrayBuffer());
    const h = {};
    res.headers.forEach((v, k) => {
      h[k] = v;
    });
    return {
      status: res.status,
      reason: res.statusText,
      headers: h,
      body: bodyBytes.toString('utf8'),
      bodyBytes,
      rawHead: `HTTP/1.1 ${res.status} ${res.statusText}\r\n${Object.entries(h)
        .map(([k, v]) => `${k}: ${v}`)
        .join('\r\n')}`,
    };
  };
  try {
    return await withTimeout(attempt(), timeoutMs, `${method} ${url}`);
  } catch (err) {
    controller.abort();
    throw err;
  }
}

/** GET url?tether-transport=poll → { sid, protocol, res }, asserting the 200 JSON answer. */
export async function pollOpen(url, { headers = {} } = {}) {
  const res = await http(withQuery(url, { 'tether-transport': 'poll' }), { headers });
  assert.equal(res.status, 200, `opening a poll session: ${res.rawHead}\n${res.body}`);
  assert.match(res.headers['content-type'] ?? '', /^application\/json\b/i, res.rawHead);
  const json = parseJson(res.body, 'the poll open answer');
  assert.match(String(json.session), SID_RE, `poll open answer ${res.body}`);
  assert.equal(typeof json.protocol, 'string', `poll open answer ${res.body}`);
  return { sid: json.session, protocol: json.protocol, res };
}

/** One poll: GET url?tether-session=sid&tether-ack=ack. For a 200, res.json is the parsed body. */
export async function poll(url, sid, ack, { headers = {}, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const res = await http(withQuery(url, { 'tether-session': sid, 'tether-ack': ack }), { headers, timeoutMs });
  if (res.status === 200) {
    assert.match(res.headers['content-type'] ?? '', /^application\/json\b/i, res.rawHead);
    res.json = parseJson(res.body, 'a poll answer');
    assert.ok(Array.isArray(res.json.messages), `a poll answer without "messages": ${res.body}`);
  }
  return res;
}

/** Asserts a 200 poll answer and returns its JSON. */
export function pollJson(res, what = 'poll') {
  assert.equal(res.status, 200, `${what}: ${res.rawHead}\n${res.body}`);
  assert.ok(res.json && Array.isArray(res.json.messages), `${what}: not a JSON poll answer\n${res.rawHead}\n${res.body}`);
  return res.json;
}

/**
 * Polls from `ack` until `count` more messages (contiguous seqs) arrived or a close came.
 * Returns { messages, close, ack }.
 */
export async function pollUntil(url, sid, ack, { count = Infinity, untilClose = false, timeoutMs } = {}) {
  const messages = [];
  let close = null;
  for (;;) {
    const json = pollJson(await poll(url, sid, ack, { timeoutMs }));
    for (const m of json.messages) {
      assert.equal(m.seq, ack + 1, `poll after ack ${ack} returned seq ${m.seq}: ${JSON.stringify(json)}`);
      ack = m.seq;
      messages.push(m);
    }
    if (json.close) close = json.close;
    if (close || (!untilClose && messages.length >= count)) return { messages, close, ack };
  }
}

/** POST url?tether-session=sid&tether-seq=seq with `body`; binary: true sends application/octet-stream. */
export async function send(url, sid, seq, body, { binary = false, contentType, headers = {}, timeoutMs } = {}) {
  const params = {};
  if (sid !== undefined) params['tether-session'] = sid;
  if (seq !== undefined) params['tether-seq'] = seq;
  const h = { ...headers };
  if (binary) h['Content-Type'] = 'application/octet-stream';
  else if (contentType) h['Content-Type'] = contentType;
  else h['Content-Type'] ??= 'text/plain; charset=utf-8';
  return http(withQuery(url, params), { method: 'POST', headers: h, body, timeoutMs });
}

/** DELETE url?tether-session=sid. */
export async function del(url, sid, { headers = {} } = {}) {
  return http(withQuery(url, { 'tether-session': sid }), { method: 'DELETE', headers });
}

/** Asserts a 204 with an empty body. */
export function assertNoContent(res, what = '') {
  assert.equal(res.status, 204, `${what ? `${what}: ` : ''}${res.rawHead}\r\n\r\n${res.body ?? ''}`);
  assert.equal(res.body ?? '', '', `${what}: a 204 with a body`);
}

/**
 * Starts one request on a raw connection and resolves once its bytes were written (so that a
 * later roundTrip() proves tether has read it). Returns { response, answered } where response
 * is a Promise of the parsed response (as RawHttp.readResponse, plus .json for a JSON 200)
 * and answered() tells whether it has arrived yet.
 */
export async function startRequest(port, path, { method = 'GET', headers = {}, body, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const conn = await RawHttp.connect(port);
  const bodyBuf = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  let head = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  if (bodyBuf) head += `Content-Length: ${bodyBuf.length}\r\n`;
  conn.write(bodyBuf ? Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), bodyBuf]) : `${head}\r\n`);
  let done = false;
  const response = conn
    .readResponse({ method, timeoutMs })
    .then((res) => {
      if (res.status === 200 && /^application\/json\b/i.test(String(res.headers['content-type']))) {
        res.json = parseJson(res.body, `the answer to ${method} ${path}`);
      }
      return res;
    })
    .finally(() => {
      done = true;
      conn.destroy();
    });
  response.catch(() => {}); // awaited by the caller; never an unhandled rejection meanwhile
  return { response, answered: () => done, conn };
}

/** startRequest for a poll: GET path?tether-session=sid&tether-ack=ack. */
export function startPoll(port, path, sid, ack, opts = {}) {
  return startRequest(port, withQuery(path, { 'tether-session': sid, 'tether-ack': ack }), opts);
}

/**
 * One round trip through tether on a new connection (a request to a path no location serves).
 * On a single event loop, when it returns, tether has read and handled every request whose
 * bytes reached it before this one was sent.
 */
export async function roundTrip(port) {
  return rawRequest(port, 'GET /tether-test-no-such-location HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
}

// ---------------------------------------------------------------------------------------------
// Backend side

/**
 * Sends count messages make(1..count) on a `ws` socket, respecting back-pressure: whenever more
 * than highWater bytes are queued, waits until the last message sent has been flushed.
 */
export async function pushMessages(ws, count, make, { highWater = 1024 * 1024 } = {}) {
  for (let i = 1; i <= count; i++) {
    if (ws.readyState !== ws.OPEN) throw new Error(`the backend socket closed after ${i - 1} of ${count} messages`);
    const msg = make(i);
    if (ws.bufferedAmount > highWater) {
      await new Promise((resolve, reject) => ws.send(msg, (err) => (err ? reject(err) : resolve())));
    } else {
      ws.send(msg);
    }
  }
}

/** Resolves once the backend connection `conn` (startNodeWsBackend) has received n messages. */
export function waitBackendMessages(conn, n, timeoutMs = DEFAULT_TIMEOUT_MS) {
  if (conn.messages.length >= n) return Promise.resolve(conn.messages);
  let on;
  const p = new Promise((resolve) => {
    on = () => {
      if (conn.messages.length >= n) resolve(conn.messages);
    };
    conn.ws.on('message', on);
  });
  return withTimeout(p, timeoutMs, () => `${n} messages at the backend (it has ${conn.messages.length})`).finally(() =>
    conn.ws.off('message', on),
  );
}

/** The backend's close as seen by startNodeWsBackend, guarded. */
export function backendClosed(conn, timeoutMs = DEFAULT_TIMEOUT_MS) {
  return withTimeout(conn.closed, timeoutMs, `the backend connection ${conn.path} to close`);
}

/**
 * Asserts that this process and `pid` may each open at least `need` file descriptors (Node
 * raises its soft limit to the hard one, and children inherit it).
 */
export function assertFdLimit(pid, need) {
  for (const p of ['self', String(pid)]) {
    const limits = fs.readFileSync(`/proc/${p}/limits`, 'utf8');
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
    if (m && m[1] !== 'unlimited') {
      assert.ok(Number(m[1]) >= need, `this test needs ${need} open files per process; /proc/${p}/limits allows ${m[1]} (raise ulimit -n)`);
    }
  }
}

/**
 * True when process `pid` runs under AddressSanitizer (libasan mapped, or ASAN_OPTIONS set for
 * the test run): its allocator keeps freed memory in quarantine, so RSS grows with the bytes
 * processed even when live memory stays bounded.
 */
export function isSanitized(pid) {
  if (process.env.ASAN_OPTIONS !== undefined) return true;
  try {
    return /lib(?:clang_rt\.)?asan/.test(fs.readFileSync(`/proc/${pid}/maps`, 'utf8'));
  } catch {
    return false;
  }
}

/** Resident set size of a process in KiB (VmRSS from /proc/<pid>/status). */
export function rssKiB(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  assert.ok(m, `no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

/**
 * Resolves when ws.bufferedAmount has not changed for `samples` consecutive checks (the
 * backend is stalled: its peer stopped reading), to 'drained' when it reaches 0 instead.
 * There is no event for "the peer stopped reading", so this watches the queue.
 */
export function backendStallOrDrain(ws, { samples = 10, intervalMs = 50 } = {}) {
  const drained = new Promise((resolve) => ws._socket.once('drain', () => resolve('drained')));
  let timer;
  const stalled = new Promise((resolve) => {
    let last = -1;
    let still = 0;
    timer = setInterval(() => {
      const now = ws.bufferedAmount;
      if (now === 0) {
        resolve('drained');
        return;
      }
      still = now === last ? still + 1 : 0;
      last = now;
      if (still >= samples) resolve(now);
    }, intervalMs);
  });
  return Promise.race([drained, stalled]).finally(() => clearInterval(timer));
}
