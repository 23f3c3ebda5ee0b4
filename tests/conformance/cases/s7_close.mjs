// Section 7: the close handshake.
// RFC 6455 section 5.5.1: a close frame's payload is empty or a 2-byte code and a UTF-8 reason;
// an endpoint that receives a close answers with one (usually echoing the code) and then sends
// and processes no more data; the server closes the TCP connection first (section 7.1.1).
// Section 7.4.1/7.4.2: codes 0-999 are unused, 1004 is reserved, 1005/1006/1015 MUST NOT be sent
// in a close frame, 1016-2999 are reserved for future RFCs and 3000-4999 are for libraries and
// applications; IANA has since registered 1012-1014 (service restart, try again later, bad
// gateway). Receiving a code that may not be sent is a protocol error (1002, as Autobahn 7.9
// expects); a 1-byte payload is one too; a reason that is not UTF-8 is 1007 (section 8.1).
// Tether relays the close to the backend and answers the client with the backend's reply.
import { closePayload, cont, encodeFrame, OP, close, hex, ping, text } from '../lib/frames.mjs';
import { asciiOf, textEv } from './util.mjs';

const hello = 'Hello World!';

export const cases = [
  { id: '7.1.1', title: 'echo a message, then close normally', steps: [{ send: text(hello) }], expect: [textEv(hello)] },
  {
    id: '7.1.2',
    title: 'two close frames: the second is ignored',
    steps: [{ send: [close(1000), close(1001)] }],
    close: { expect: 1000 },
  },
  { id: '7.1.3', title: 'close, then a ping: no pong', steps: [{ send: [close(1000), ping(hello)] }], close: { expect: 1000 } },
  { id: '7.1.4', title: 'close, then a text message: not echoed', steps: [{ send: [close(1000), text(hello)] }], close: { expect: 1000 } },
  {
    id: '7.1.5',
    title: 'text fragment, close, last fragment: the message is dropped',
    steps: [{ send: [text('fragment1', { fin: false }), close(1000), cont('fragment2')] }],
    close: { expect: 1000 },
  },
  (() => {
    const big = asciiOf(256 * 1024, 7);
    return {
      id: '7.1.6',
      title: '256 KiB message, close, ping: the message is echoed before the close, no pong',
      steps: [{ send: [text(big), close(1000), ping(hello)] }],
      expect: [textEv(big)],
      close: { expect: 1000 },
    };
  })(),
  {
    id: '7.1.7',
    title: 'close, then bytes that are not a valid frame: ignored, still a clean 1000',
    steps: [{ send: [close(1000), Buffer.from([0xff, 0xff, 0xff, 0xff])] }],
    close: { expect: 1000 },
  },
  {
    id: '7.1.8',
    title: 'close written octet by octet',
    steps: [{ send: close(1000, 'octets'), chop: 'octet' }],
    close: { expect: 1000 },
  },
  { id: '7.3.1', title: 'close without payload -> close without payload', steps: [], close: { send: encodeFrame({ opcode: OP.CLOSE, payload: '' }), expect: null } },
  { id: '7.3.2', title: 'close with a 1-byte payload -> 1002', steps: [{ send: encodeFrame({ opcode: OP.CLOSE, payload: hex('03') }) }], close: { fail: 1002 } },
  { id: '7.3.3', title: 'close 1000 without a reason', steps: [], close: { send: close(1000), expect: 1000 } },
  { id: '7.3.4', title: 'close 1000 with a reason', steps: [], close: { send: close(1000, 'Ok'), expect: 1000 } },
  { id: '7.3.5', title: 'close 1000 with a 123-byte reason (the maximum)', steps: [], close: { send: close(1000, asciiOf(123)), expect: 1000 } },
  {
    id: '7.3.6',
    title: 'close 1000 with a 124-byte reason (payload 126 bytes) -> 1002',
    steps: [{ send: encodeFrame({ opcode: OP.CLOSE, payload: closePayload(1000, asciiOf(124)) }) }],
    close: { fail: 1002 },
  },
  { id: '7.5.1', title: 'close reason not UTF-8 -> 1007', steps: [{ send: encodeFrame({ opcode: OP.CLOSE, payload: closePayload(1000, hex('ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 65 64 69 74 65 64')) }) }], close: { fail: 1007 } },
  { id: '7.5.2', title: 'close reason a truncated code point -> 1007', steps: [{ send: close(1000, hex('61 62 e2 82')) }], close: { fail: 1007 } },
  { id: '7.5.3', title: 'close reason with multi-byte UTF-8 is fine', steps: [], close: { send: close(1000, 'κόσμε €𝄞'), expect: 1000 } },
];

// 7.7.x valid codes: echoed.
[1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999].forEach((code, i) => {
  cases.push({ id: `7.7.${i + 1}`, title: `close ${code} is echoed`, steps: [], close: { send: close(code, `code ${code}`), expect: code } });
});
// 7.9.x codes that may not be sent -> 1002.
[0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999].forEach((code, i) => {
  cases.push({ id: `7.9.${i + 1}`, title: `close ${code} -> 1002`, steps: [{ send: close(code) }], close: { fail: 1002 } });
});
// 7.13.x codes past the registry's range -> 1002.
[5000, 65535].forEach((code, i) => {
  cases.push({ id: `7.13.${i + 1}`, title: `close ${code} -> 1002`, steps: [{ send: close(code, 'out of range') }], close: { fail: 1002 } });
});
