// Shorthands for the case tables.
import { OP, bytes } from '../lib/frames.mjs';

/** tether_max_message of the location the server-side cases run against. */
export const LIMIT = 2 * 1024 * 1024;

export const textEv = (data) => ({ type: 'message', opcode: OP.TEXT, data: bytes(data) });
export const binEv = (data) => ({ type: 'message', opcode: OP.BINARY, data: bytes(data) });
export const pongEv = (data) => ({ type: 'pong', data: bytes(data) });
export const pingEv = (data) => ({ type: 'ping', data: bytes(data) });

/** N bytes of printable ASCII, the same for the same N (valid UTF-8 of exactly N bytes). */
export function asciiOf(n, seed = 0) {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = 0x21 + ((i * 7 + seed) % 94);
  return b;
}

/** N bytes covering every byte value, the same for the same N. */
export function binaryOf(n, seed = 0) {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed + (i >> 8)) & 0xff;
  return b;
}
