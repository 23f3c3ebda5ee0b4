// A raw WebSocket endpoint over a net.Socket for the conformance run: it writes bytes exactly as
// given (whole, in chops, or octet by octet), decodes what the other side sends, and checks every
// received frame against what RFC 6455 requires of a sender in the other side's role. Used as the
// client in front of Tether (its server side) and as the backend behind it (its client side).
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import {
  FrameDecoder,
  OP,
  OP_NAMES,
  describeFrame,
  isControl,
  isKnownOpcode,
  isValidCloseCode,
  isValidUtf8,
  parseClose,
} from './frames.mjs';

export const DEFAULT_TIMEOUT_MS = 5_000;
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'; // section 1.3

export function acceptKey(key) {
  return createHash('sha1').update(key + GUID).digest('base64');
}

export function timeout(promise, ms, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${typeof what === 'function' ? what() : what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/**
 * One side of an open WebSocket connection.
 *   role       'client' | 'server': OUR role; the peer's frames are checked for the other role
 *              (a server's frames must be unmasked, a client's masked: section 5.1)
 *   frames     every frame received, decoded, with `at` (ms since the connection opened)
 *   events     what an application would see: {type: 'message', opcode, data} | {type: 'ping'|'pong',
 *              data} | {type: 'close', code, reason, data}, each with `at`
 *   violations RFC 6455 sender rules the peer broke, one line each (the tests assert none)
 *   closedBy   null while the TCP connection is open, then 'end' (FIN) or 'reset'
 */
export class WsPeer {
  constructor(socket, role, { leftover = Buffer.alloc(0), name = role } = {}) {
    this.socket = socket;
    this.role = role;
    this.name = name;
    this.t0 = Date.now();
    this.decoder = new FrameDecoder();
    this.frames = [];
    this.events = [];
    this.violations = [];
    this.closedBy = null;
    this.closedAt = null;
    this.error = null;
    this.closeReceived = null; // the close event, once one came
    this.closeSentAt = null;
    this._message = null; // {opcode, parts} of a fragmented message being received
    this._wakers = [];
    socket.setNoDelay(true);
    socket.on('data', (d) => this._data(d));
    socket.on('end', () => this._closed('end'));
    socket.on('error', (err) => {
      this.error = err;
      this._closed('reset');
    });
    socket.on('close', () => this._closed('end'));
    if (leftover.length) this._data(leftover);
  }

  now() {
    return Date.now() - this.t0;
  }

  _closed(how) {
    if (this.closedBy === null) {
      this.closedBy = how;
      this.closedAt = this.now();
      this.closedWall = Date.now();
    }
    this._wake();
  }

  _wake() {
    const w = this._wakers;
    this._wakers = [];
    for (const f of w) f();
  }

  _changed() {
    return new Promise((resolve) => this._wakers.push(resolve));
  }

  _violation(what, f) {
    this.violations.push(`${what}${f ? `: ${describeFrame(f)}` : ''}`);
  }

  _data(chunk) {
    let frames;
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this._violation(`undecodable bytes (${err.message})`);
      return;
    }
    for (const f of frames) this._frame(f);
    this._wake();
  }

  // The sender rules of section 5 and 7 for the peer's role.
  _frame(f) {
    f.at = this.now();
    f.wall = Date.now(); // comparable across peers
    this.frames.push(f);
    const peerIsClient = this.role === 'server';
    if (this.closeReceived) this._violation('frame after a close frame (section 5.5.1)', f);
    if (peerIsClient && !f.masked) this._violation('client frame not masked (section 5.3)', f);
    if (!peerIsClient && f.masked) this._violation('server frame masked (section 5.1)', f);
    if (f.rsv !== 0) this._violation('reserved bits set without an extension (section 5.2)', f);
    if (!isKnownOpcode(f.opcode)) this._violation(`reserved opcode ${f.opcode} (section 5.2)`, f);
    if (!f.minimal) this._violation('payload length not in its minimal form (section 5.2)', f);
    if (isControl(f.opcode)) {
      if (!f.fin) this._violation('fragmented control frame (section 5.5)', f);
      if (f.length > 125) this._violation('control frame payload over 125 bytes (section 5.5)', f);
    }
    switch (f.opcode) {
      case OP.CONT:
        if (!this._message) {
          this._violation('continuation frame with no message started (section 5.4)', f);
          return;
        }
        this._message.parts.push(f.payload);
        this._message.frames++;
        if (f.fin) this._finishMessage(f);
        return;
      case OP.TEXT:
      case OP.BINARY:
        if (this._message) this._violation('new data frame inside a fragmented message (section 5.4)', f);
        this._message = { opcode: f.opcode, parts: [f.payload], frames: 1 };
        if (f.fin) this._finishMessage(f);
        return;
      case OP.PING:
      case OP.PONG:
        this.events.push({ type: OP_NAMES[f.opcode], data: f.payload, at: f.at, wall: f.wall });
        return;
      case OP.CLOSE: {
        const { code, reason } = parseClose(f.payload);
        if (Number.isNaN(code)) this._violation('close frame with a 1-byte payload (section 5.5.1)', f);
        else if (code !== null && !isValidCloseCode(code)) this._violation(`close code ${code} may not be sent (section 7.4)`, f);
        if (!isValidUtf8(reason)) this._violation('close reason not UTF-8 (section 5.5.1)', f);
        const ev = { type: 'close', code, reason: reason.toString('utf8'), data: f.payload, at: f.at, wall: f.wall };
        this.closeReceived = ev;
        this.events.push(ev);
        return;
      }
      default:
    }
  }

  _finishMessage(f) {
    const { opcode, parts, frames } = this._message;
    this._message = null;
    const data = Buffer.concat(parts);
    if (opcode === OP.TEXT && !isValidUtf8(data)) this._violation('text message not UTF-8 (section 5.6)', f);
    this.events.push({ type: 'message', opcode, data, frames, at: f.at, wall: f.wall });
  }

  /** Writes BUF: whole (chop undefined), CHOP bytes per write, or one byte per write ('octet'). */
  async send(buf, { chop } = {}) {
    if (this.socket.destroyed) return;
    const size = chop === 'octet' ? 1 : chop;
    if (!size || buf.length <= size) {
      await this._write(buf);
      return;
    }
    for (let i = 0; i < buf.length; i += size) {
      if (this.socket.destroyed) return;
      await this._write(buf.subarray(i, i + size));
    }
  }

  _write(buf) {
    return new Promise((resolve) => {
      // A write the peer already closed on fails with EPIPE/ECONNRESET: that shows up as
      // closedBy, not as a rejection here.
      this.socket.write(buf, () => resolve());
    });
  }

  /** Sends a close frame (OUR role's masking) and notes when. */
  async sendClose(frame) {
    this.closeSentAt = this.now();
    await this.send(frame);
  }

  /** Resolves once PRED() is true, re-checked after every received chunk or close. */
  async until(pred, what, ms = DEFAULT_TIMEOUT_MS) {
    const attempt = async () => {
      while (!pred()) {
        if (this.closedBy !== null && !pred()) {
          throw new Error(`connection closed (${this.closedBy}) before ${what}; received: ${this.describe()}`);
        }
        await this._changed();
      }
    };
    return timeout(attempt(), ms, () => `${what}; received: ${this.describe()}`);
  }

  /** The events other than close, in order. */
  get dataEvents() {
    return this.events.filter((e) => e.type !== 'close');
  }

  /** Resolves with the close event once a close frame has arrived. */
  async waitCloseFrame(ms = DEFAULT_TIMEOUT_MS) {
    await this.until(() => this.closeReceived !== null, 'a close frame', ms);
    return this.closeReceived;
  }

  /** Resolves to 'end' or 'reset' once the TCP connection is closed. */
  async waitTcpClose(ms = DEFAULT_TIMEOUT_MS) {
    const attempt = async () => {
      while (this.closedBy === null) await this._changed();
      return this.closedBy;
    };
    return timeout(attempt(), ms, () => `the TCP connection to close; received: ${this.describe()}`);
  }

  describe() {
    const f = this.frames.map(describeFrame).join(', ') || 'no frames';
    return `[${f}]${this.closedBy ? `, then TCP ${this.closedBy}` : ''}${this.decoder.pending ? `, ${this.decoder.pending} bytes of an incomplete frame` : ''}`;
  }

  /** Closes our side at once (FIN); destroy() for a reset-free teardown in finally blocks. */
  end() {
    this.socket.end();
  }

  destroy() {
    this.socket.destroy();
  }
}

/**
 * Opens a WebSocket to 127.0.0.1:PORT PATH with a raw handshake (section 4.1) and returns the
 * client WsPeer. Frames the server sent right behind its 101 are kept.
 */
export async function connectClient(port, path, { headers = {}, name = 'client' } = {}) {
  const socket = net.connect({ port, host: '127.0.0.1' });
  socket.on('error', () => {}); // reported through the peer once it exists, or the handshake
  await timeout(once(socket, 'connect'), DEFAULT_TIMEOUT_MS, `connect to 127.0.0.1:${port}`);
  const key = randomBytes(16).toString('base64');
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
  );
  let buf = Buffer.alloc(0);
  const head = await timeout(
    new Promise((resolve, reject) => {
      const onData = (d) => {
        buf = Buffer.concat([buf, d]);
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        socket.off('close', onClose);
        socket.pause();
        resolve({ head: buf.subarray(0, end).toString('latin1'), rest: buf.subarray(end + 4) });
      };
      const onClose = () => reject(new Error(`connection closed during the handshake: ${JSON.stringify(buf.toString('latin1'))}`));
      socket.on('data', onData);
      socket.on('close', onClose);
    }),
    DEFAULT_TIMEOUT_MS,
    `the 101 for ${path}`,
  ).catch((err) => {
    socket.destroy();
    throw err;
  });
  const lines = head.head.split('\r\n');
  if (!/^HTTP\/1\.1 101 /.test(lines[0])) {
    socket.destroy();
    throw new Error(`expected 101 for ${path}, got ${JSON.stringify(head.head)}`);
  }
  const h = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    h[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  if (h['sec-websocket-accept'] !== acceptKey(key)) {
    socket.destroy();
    throw new Error(`bad Sec-WebSocket-Accept ${h['sec-websocket-accept']} for key ${key}`);
  }
  const peer = new WsPeer(socket, 'client', { leftover: head.rest, name });
  socket.resume();
  return peer;
}
