// Section 9: limits and volume (sizes kept modest so the run stays short).
// RFC 6455 section 10.4: an implementation SHOULD impose a limit on frame and message size and
// refuse what is larger; section 7.4.1: 1009 is "a message that is too big for it to process".
// LIMIT is the tether_max_message of the location; a message of exactly LIMIT bytes passes, one
// byte more fails with 1009, as soon as a frame header announces it (fail-fast: Tether need not
// buffer what it will refuse).
import { OP, binary, encodeFrame, fragmented, pieces, text } from '../lib/frames.mjs';
import { LIMIT, asciiOf, binEv, binaryOf, textEv } from './util.mjs';

const big = binaryOf(LIMIT, 4);
const bigText = asciiOf(LIMIT, 4);
const mega = binaryOf(1 << 20, 6);
// Multi-byte text of LIMIT bytes whose fragments (4099 bytes, not a multiple of 4) cut code points.
const emoji = Buffer.from('\u{1F600}'.repeat(LIMIT / 4));
const small = Array.from({ length: 1000 }, (_, i) => Buffer.from(`message ${i}`));

export const cases = [
  { id: '9.1.1', title: 'text of 1 MiB in one frame', steps: [{ send: text(asciiOf(1 << 20, 1)) }], expect: [textEv(asciiOf(1 << 20, 1))] },
  { id: '9.1.2', title: `binary of exactly tether_max_message (${LIMIT} bytes) in one frame`, steps: [{ send: binary(big) }], expect: [binEv(big)] },
  { id: '9.1.3', title: 'text of tether_max_message in 64 KiB fragments', steps: [{ send: fragmented(OP.TEXT, pieces(bigText, 65536)) }], expect: [textEv(bigText)] },
  { id: '9.1.4', title: 'binary of tether_max_message in 4 KiB fragments (512 frames)', steps: [{ send: fragmented(OP.BINARY, pieces(big, 4096)) }], expect: [binEv(big)] },
  { id: '9.1.5', title: 'binary of 256 KiB in 64-byte fragments (4096 frames)', steps: [{ send: fragmented(OP.BINARY, pieces(binaryOf(256 * 1024, 5), 64)) }], expect: [binEv(binaryOf(256 * 1024, 5))] },
  { id: '9.1.6', title: 'text of tether_max_message in 4-byte code points, fragments cutting them', steps: [{ send: fragmented(OP.TEXT, pieces(emoji, 4099)) }], expect: [textEv(emoji)] },
  { id: '9.1.7', title: 'binary of 1 MiB written in chops of 1000 bytes', steps: [{ send: binary(mega), chop: 1000 }], expect: [binEv(mega)] },
  { id: '9.1.8', title: '1000 small text messages in one write, echoed in order', steps: [{ send: Buffer.concat(small.map((m) => text(m))) }], expect: small.map(textEv) },
  {
    id: '9.2.1',
    title: 'one byte over tether_max_message in one frame -> 1009 after its header alone',
    steps: [{ send: encodeFrame({ opcode: OP.BINARY, payload: Buffer.alloc(0), length: LIMIT + 1 }) }, { expectClose: 1009 }],
    close: { fail: 1009 },
  },
  {
    id: '9.2.2',
    title: 'fragments adding up to one byte over tether_max_message -> 1009 at the last header',
    steps: [
      // LIMIT - 64 KiB in 31 fragments, then a final one that announces 64 KiB + 1.
      { send: pieces(bigText, 65536).slice(0, -1).map((p, i) => encodeFrame({ opcode: i ? OP.CONT : OP.TEXT, payload: p, fin: false })) },
      { send: encodeFrame({ opcode: OP.CONT, payload: Buffer.alloc(0), length: 65537 }) },
      { expectClose: 1009 },
    ],
    close: { fail: 1009 },
  },
  {
    id: '9.2.3',
    title: 'a 64-bit length of 2^63-1 -> 1009 at once',
    steps: [{ send: encodeFrame({ opcode: OP.BINARY, payload: '', rawLen64: Buffer.from([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) }) }, { expectClose: 1009 }],
    close: { fail: 1009 },
  },
  {
    id: '9.2.4',
    title: 'text of tether_max_message, then one over: the first echoed, then 1009',
    steps: [{ send: text(bigText) }, { waitEvents: 1 }, { send: text(Buffer.alloc(0), { length: LIMIT + 1 }) }, { expectClose: 1009 }],
    expect: [textEv(bigText)],
    close: { fail: 1009 },
  },
];
