// RFC 6455 frames for the TEST side of the conformance run: an encoder that can also build
// malformed frames (reserved bits, unknown opcodes, non-minimal or bogus lengths, masked or
// unmasked on purpose), an incremental decoder that reports every header detail, and a UTF-8
// oracle (RFC 3629) that tells where a byte sequence stops being a valid prefix.
import { randomBytes } from 'node:crypto';

export const OP = Object.freeze({
  CONT: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
});

export const OP_NAMES = { 0: 'cont', 1: 'text', 2: 'binary', 8: 'close', 9: 'ping', 10: 'pong' };

export function isControl(opcode) {
  return (opcode & 0x8) !== 0;
}

export function isKnownOpcode(opcode) {
  return opcode in OP_NAMES;
}

/** Buffer from a string (UTF-8), an array of byte values, or a Buffer. */
export function bytes(x) {
  if (Buffer.isBuffer(x)) return x;
  if (typeof x === 'string') return Buffer.from(x, 'utf8');
  if (Array.isArray(x)) return Buffer.from(x);
  if (x === undefined || x === null) return Buffer.alloc(0);
  throw new TypeError(`cannot make bytes of ${typeof x}`);
}

/** Bytes from hex with optional spaces: hex('ce ba e1') */
export function hex(s) {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/**
 * One frame (RFC 6455 section 5.2).
 *   opcode     0..15 (unknown ones on purpose too)
 *   payload    string (UTF-8) | Buffer | byte array
 *   fin        default true
 *   rsv        0..7: RSV1 is 4, RSV2 2, RSV3 1
 *   mask       true (a fresh random key), false, or a 4-byte Buffer
 *   lenForm    'auto' (minimal), 7, 16 or 64: which length encoding to use, minimal or not
 *   length     overrides the length field (a lie about the payload size)
 *   rawLen64   a Buffer of 8 bytes written as the 64-bit length as is (high bit tests)
 */
export function encodeFrame({
  opcode,
  payload,
  fin = true,
  rsv = 0,
  mask = true,
  lenForm = 'auto',
  length,
  rawLen64,
} = {}) {
  const data = bytes(payload);
  const len = length ?? data.length;
  const form = rawLen64 ? 64 : lenForm === 'auto' ? (len <= 125 ? 7 : len <= 0xffff ? 16 : 64) : lenForm;
  const head = [((fin ? 1 : 0) << 7) | ((rsv & 7) << 4) | (opcode & 0xf)];
  const maskBit = mask ? 0x80 : 0;
  let ext;
  if (form === 7) {
    if (len > 125) throw new RangeError(`length ${len} does not fit the 7-bit form`);
    head.push(maskBit | len);
    ext = Buffer.alloc(0);
  } else if (form === 16) {
    if (len > 0xffff) throw new RangeError(`length ${len} does not fit the 16-bit form`);
    head.push(maskBit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(len);
  } else if (form === 64) {
    head.push(maskBit | 127);
    ext = rawLen64 ?? Buffer.alloc(8);
    if (!rawLen64) ext.writeBigUInt64BE(BigInt(len));
  } else {
    throw new RangeError(`unknown length form ${form}`);
  }
  let key = Buffer.alloc(0);
  let body = data;
  if (mask) {
    key = Buffer.isBuffer(mask) ? mask : randomBytes(4);
    body = applyMask(data, key);
  }
  return Buffer.concat([Buffer.from(head), ext, key, body]);
}

/** A copy of DATA XORed with KEY (section 5.3), key byte i % 4 for data byte i. */
export function applyMask(data, key) {
  const out = Buffer.allocUnsafe(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i] ^ key[i & 3];
  return out;
}

/** The payload of a close frame: 2-byte code (big-endian) + reason (section 5.5.1). */
export function closePayload(code, reason = '') {
  if (code === undefined || code === null) return Buffer.alloc(0);
  const c = Buffer.alloc(2);
  c.writeUInt16BE(code);
  return Buffer.concat([c, bytes(reason)]);
}

// Shorthands; OPTS go to encodeFrame (fin, rsv, mask, lenForm ...).
export const text = (payload, opts = {}) => encodeFrame({ opcode: OP.TEXT, payload, ...opts });
export const binary = (payload, opts = {}) => encodeFrame({ opcode: OP.BINARY, payload, ...opts });
export const cont = (payload, opts = {}) => encodeFrame({ opcode: OP.CONT, payload, ...opts });
export const ping = (payload, opts = {}) => encodeFrame({ opcode: OP.PING, payload, ...opts });
export const pong = (payload, opts = {}) => encodeFrame({ opcode: OP.PONG, payload, ...opts });
export const close = (code, reason = '', opts = {}) =>
  encodeFrame({ opcode: OP.CLOSE, payload: closePayload(code, reason), ...opts });

/**
 * A data message as frames: FRAGMENTS is a list of payload pieces (the first frame carries
 * OPCODE, the rest are continuations, FIN on the last). OPTS go to every frame.
 */
export function fragmented(opcode, fragments, opts = {}) {
  return Buffer.concat(
    fragments.map((p, i) =>
      encodeFrame({ opcode: i === 0 ? opcode : OP.CONT, payload: p, fin: i === fragments.length - 1, ...opts }),
    ),
  );
}

/** PAYLOAD cut into pieces of SIZE bytes (at least one piece, possibly empty). */
export function pieces(payload, size) {
  const data = bytes(payload);
  if (data.length === 0) return [data];
  const out = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

/**
 * Incremental frame decoder. push(chunk) returns the frames completed by CHUNK, each:
 *   { fin, rsv, opcode, masked, key, lenForm (7|16|64), length, minimal, payload (unmasked),
 *     headerBytes }
 * It does not judge the frames (the tests do); it only refuses a length it cannot hold.
 */
export class FrameDecoder {
  constructor({ maxPayload = 256 * 1024 * 1024 } = {}) {
    this.buf = Buffer.alloc(0);
    this.maxPayload = maxPayload;
  }

  push(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames = [];
    for (;;) {
      const f = this._one();
      if (!f) break;
      frames.push(f);
    }
    return frames;
  }

  /** Bytes held for an incomplete frame. */
  get pending() {
    return this.buf.length;
  }

  _one() {
    const b = this.buf;
    if (b.length < 2) return null;
    const fin = (b[0] & 0x80) !== 0;
    const rsv = (b[0] >> 4) & 7;
    const opcode = b[0] & 0xf;
    const masked = (b[1] & 0x80) !== 0;
    const len7 = b[1] & 0x7f;
    let pos = 2;
    let length;
    let lenForm = 7;
    if (len7 === 126) {
      if (b.length < 4) return null;
      length = b.readUInt16BE(2);
      lenForm = 16;
      pos = 4;
    } else if (len7 === 127) {
      if (b.length < 10) return null;
      const big = b.readBigUInt64BE(2);
      if (big > BigInt(this.maxPayload)) throw new Error(`frame length ${big} over the decoder's limit`);
      length = Number(big);
      lenForm = 64;
      pos = 10;
    } else {
      length = len7;
    }
    let key = null;
    if (masked) {
      if (b.length < pos + 4) return null;
      key = Buffer.from(b.subarray(pos, pos + 4));
      pos += 4;
    }
    if (b.length < pos + length) return null;
    let payload = Buffer.from(b.subarray(pos, pos + length));
    if (masked) payload = applyMask(payload, key);
    const headerBytes = Buffer.from(b.subarray(0, pos));
    this.buf = b.subarray(pos + length);
    const minimal = lenForm === 7 || (lenForm === 16 ? length > 125 : length > 0xffff);
    return { fin, rsv, opcode, masked, key, lenForm, length, minimal, payload, headerBytes };
  }
}

/** "text(5) fin" style one-line description of a decoded frame, for failure messages. */
export function describeFrame(f) {
  const name = OP_NAMES[f.opcode] ?? `op${f.opcode}`;
  let detail = '';
  if (f.opcode === OP.CLOSE) {
    const c = parseClose(f.payload);
    detail = c.code === null ? ' (no code)' : ` ${c.code} ${JSON.stringify(c.reason.toString('utf8'))}`;
  } else if (f.payload.length <= 40) {
    detail = ` ${JSON.stringify(f.payload.toString('latin1'))}`;
  }
  return `${name}(${f.length})${detail}${f.fin ? '' : ' !fin'}${f.rsv ? ` rsv=${f.rsv}` : ''}${f.masked ? ' masked' : ''}`;
}

/** { code (null when the payload is empty), reason (Buffer) } of a close payload. */
export function parseClose(payload) {
  if (payload.length === 0) return { code: null, reason: Buffer.alloc(0) };
  if (payload.length === 1) return { code: NaN, reason: Buffer.alloc(0) };
  return { code: payload.readUInt16BE(0), reason: payload.subarray(2) };
}

/**
 * Codes an endpoint may send in a close frame (section 7.4.1 and 7.4.2, with the IANA registry's
 * 1012-1014): 1000-1003, 1007-1014, 3000-4999. 1004 is reserved, 1005/1006/1015 must never be
 * sent, 0-999 are unused, 1016-2999 are reserved for future RFCs, 5000+ do not exist.
 */
export function isValidCloseCode(code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

// ---------------------------------------------------------------------------------------------
// UTF-8 oracle (RFC 3629 section 4), written from the ABNF, byte ranges per position:
//   UTF8-2 = %xC2-DF UTF8-tail
//   UTF8-3 = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) / %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
//   UTF8-4 = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) / %xF4 %x80-8F 2( UTF8-tail )

function sequenceRanges(lead) {
  const T = [0x80, 0xbf];
  if (lead >= 0xc2 && lead <= 0xdf) return [T];
  if (lead === 0xe0) return [[0xa0, 0xbf], T];
  if ((lead >= 0xe1 && lead <= 0xec) || lead === 0xee || lead === 0xef) return [T, T];
  if (lead === 0xed) return [[0x80, 0x9f], T];
  if (lead === 0xf0) return [[0x90, 0xbf], T, T];
  if (lead >= 0xf1 && lead <= 0xf3) return [T, T, T];
  if (lead === 0xf4) return [[0x80, 0x8f], T, T];
  return null; // 80..C1 and F5..FF never start a sequence
}

/**
 * Index of the first byte at which DATA stops being a prefix of some valid UTF-8 text, or -1
 * when every prefix is (DATA may still end inside a sequence: see isValidUtf8).
 */
export function firstInvalidByte(data) {
  let i = 0;
  while (i < data.length) {
    const lead = data[i];
    if (lead < 0x80) {
      i++;
      continue;
    }
    const ranges = sequenceRanges(lead);
    if (!ranges) return i;
    for (let k = 0; k < ranges.length; k++) {
      const j = i + 1 + k;
      if (j >= data.length) return -1; // truncated, but a valid prefix so far
      if (data[j] < ranges[k][0] || data[j] > ranges[k][1]) return j;
    }
    i += 1 + ranges.length;
  }
  return -1;
}

/** True when DATA is complete, valid UTF-8. */
export function isValidUtf8(data) {
  if (firstInvalidByte(data) !== -1) return false;
  // A valid prefix that ends inside a sequence is not valid text.
  let i = data.length - 1;
  let back = 0;
  while (i >= 0 && back < 4 && (data[i] & 0xc0) === 0x80) {
    i--;
    back++;
  }
  if (i < 0) return back === 0;
  const ranges = sequenceRanges(data[i]);
  const need = data[i] < 0x80 ? 0 : ranges.length;
  return need === back;
}
