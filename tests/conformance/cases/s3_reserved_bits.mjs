// Section 3: reserved bits.
// RFC 6455 section 5.2: RSV1, RSV2 and RSV3 MUST be 0 unless an extension defining them was
// negotiated; otherwise the receiving endpoint MUST fail the connection (section 7.1.7) with
// 1002 (section 7.4.1). Tether negotiates no extension. A message that arrived before the bad
// frame may or may not be echoed first: it is on its way through the backend when Tether fails
// the connection (non-strict, as in Autobahn).
import { OP, binary, close, cont, encodeFrame, ping, pong, text } from '../lib/frames.mjs';
import { textEv } from './util.mjs';

const hello = 'Hello, world!';
const fail = { close: { fail: 1002 } };

export const cases = [
  { id: '3.1', title: 'text with RSV=1 (RSV3)', steps: [{ send: text(hello, { rsv: 1 }) }], ...fail },
  {
    id: '3.2',
    title: 'text, then text with RSV=2 (RSV2), then ping',
    steps: [{ send: [text(hello), text(hello, { rsv: 2 }), ping(hello)] }],
    expect: [textEv(hello)],
    nonStrict: true,
    ...fail,
  },
  {
    id: '3.3',
    title: 'text, then text with RSV=3, then ping, frame by frame',
    steps: [{ send: [text(hello)] }, { waitEvents: 1 }, { send: [text(hello, { rsv: 3 }), ping(hello)], chop: 'frame' }],
    expect: [textEv(hello)],
    ...fail,
  },
  {
    id: '3.4',
    title: 'text, then text with RSV=4 (RSV1), then ping, octet by octet',
    steps: [{ send: [text(hello)], chop: 'octet' }, { waitEvents: 1 }, { send: [text(hello, { rsv: 4 }), ping(hello)], chop: 'octet' }],
    expect: [textEv(hello)],
    ...fail,
  },
  { id: '3.5', title: 'binary with RSV=5', steps: [{ send: binary(Buffer.from([0, 0xff, 0xfe]), { rsv: 5 }) }], ...fail },
  { id: '3.6', title: 'ping with RSV=6', steps: [{ send: ping(hello, { rsv: 6 }) }], ...fail },
  { id: '3.7', title: 'close with RSV=7', steps: [{ send: close(1000, '', { rsv: 7 }) }], ...fail },
  { id: '3.8', title: 'pong with RSV=1', steps: [{ send: pong(hello, { rsv: 1 }) }], ...fail },
  {
    id: '3.9',
    title: 'continuation with RSV=4 inside a fragmented text message',
    steps: [{ send: [text('frag', { fin: false }), cont('ment', { rsv: 4 })] }],
    ...fail,
  },
  {
    id: '3.10',
    title: 'the first fragment with RSV=4 (as permessage-deflate would, not negotiated)',
    steps: [{ send: [text('frag', { fin: false, rsv: 4 }), cont('ment')] }],
    ...fail,
  },
  {
    id: '3.11',
    title: 'RSV=2 on an empty binary frame: failed at the header, before any payload',
    steps: [{ send: encodeFrame({ opcode: OP.BINARY, payload: '', rsv: 2 }) }],
    ...fail,
  },
];
