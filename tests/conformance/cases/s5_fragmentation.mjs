// Section 5: fragmentation.
// RFC 6455 section 5.4: a fragmented message is a first frame with FIN clear and opcode text or
// binary, continuation frames, and a final continuation with FIN set; control frames MAY be
// injected between fragments and MUST themselves not be fragmented; fragments are delivered in
// the order sent (an intermediary MAY change the fragmentation, never the order). Section 5.2:
// a continuation with no message to continue, or a new text/binary frame while a message is
// open, is a protocol error (1002, section 7.4.1).
import { OP, binary, close, cont, encodeFrame, fragmented, ping, pong, text } from '../lib/frames.mjs';
import { asciiOf, binaryOf, binEv, pongEv, textEv } from './util.mjs';

const fail = { close: { fail: 1002 } };
const two = () => [text('fragment1', { fin: false }), cont('fragment2')];
const whole = textEv('fragment1fragment2');

export const cases = [
  { id: '5.1', title: 'ping in 2 fragments -> 1002', steps: [{ send: [ping('fragment1', { fin: false }), cont('fragment2')] }], ...fail },
  { id: '5.2', title: 'pong in 2 fragments -> 1002', steps: [{ send: [pong('fragment1', { fin: false }), cont('fragment2')] }], ...fail },
  { id: '5.3', title: 'close with FIN clear -> 1002', steps: [{ send: [close(1000, '', { fin: false }), cont('')] }], ...fail },
  { id: '5.4', title: 'text in 2 fragments', steps: [{ send: two() }], expect: [whole] },
  { id: '5.5', title: 'text in 2 fragments, octet by octet', steps: [{ send: two(), chop: 'octet' }], expect: [whole] },
  { id: '5.6', title: 'text in 2 fragments, frame by frame, the second after a round trip', steps: [{ send: text('fragment1', { fin: false }) }, { send: ping('rt') }, { waitEvents: 1 }, { send: cont('fragment2') }], expect: [pongEv('rt'), whole] },
  {
    id: '5.7',
    title: 'text in 2 fragments with a ping between',
    steps: [{ send: [text('fragment1', { fin: false }), ping('ping payload'), cont('fragment2')] }],
    expect: [pongEv('ping payload'), whole],
  },
  {
    id: '5.8',
    title: 'text in 2 fragments with a ping between, octet by octet',
    steps: [{ send: [text('fragment1', { fin: false }), ping('ping payload'), cont('fragment2')], chop: 'octet' }],
    expect: [pongEv('ping payload'), whole],
  },
  { id: '5.9', title: 'continuation (FIN) with nothing to continue, then text -> 1002', steps: [{ send: [cont('fragment1'), text('fragment2')] }], ...fail },
  { id: '5.10', title: 'continuation (no FIN) with nothing to continue -> 1002', steps: [{ send: [cont('fragment1', { fin: false }), text('fragment2')] }], ...fail },
  {
    id: '5.11',
    title: 'continuation with nothing to continue, octet by octet: failed at its first byte',
    steps: [{ send: cont('fragment1').subarray(0, 1) }, { expectClose: 1002 }],
    ...fail,
  },
  {
    id: '5.12',
    title: 'a whole fragmented message, then a continuation with nothing to continue',
    steps: [{ send: [...two(), cont('fragment3', { fin: false }), text('after')] }],
    expect: [whole],
    nonStrict: true,
    ...fail,
  },
  { id: '5.13', title: 'text fragment, then a new text frame (FIN) -> 1002', steps: [{ send: [text('fragment1', { fin: false }), text('fragment2')] }], ...fail },
  { id: '5.14', title: 'binary fragment, then a new text fragment -> 1002', steps: [{ send: [binary('fragment1', { fin: false }), text('fragment2', { fin: false }), cont('end')] }], ...fail },
  {
    id: '5.15',
    title: 'text in 5 fragments, pings after the 2nd and 4th, each pong awaited before going on',
    steps: [
      { send: [text('f1', { fin: false }), cont('f2', { fin: false }), ping('p1')] },
      { waitEvents: 1 },
      { send: [cont('f3', { fin: false }), cont('f4', { fin: false }), ping('p2')] },
      { waitEvents: 2 },
      { send: cont('f5') },
    ],
    expect: [pongEv('p1'), pongEv('p2'), textEv('f1f2f3f4f5')],
  },
  {
    id: '5.16',
    title: 'the same, octet by octet',
    steps: [
      { send: [text('f1', { fin: false }), cont('f2', { fin: false }), ping('p1')], chop: 'octet' },
      { waitEvents: 1 },
      { send: [cont('f3', { fin: false }), cont('f4', { fin: false }), ping('p2')], chop: 'octet' },
      { waitEvents: 2 },
      { send: cont('f5'), chop: 'octet' },
    ],
    expect: [pongEv('p1'), pongEv('p2'), textEv('f1f2f3f4f5')],
  },
  { id: '5.17', title: 'text in 3 empty fragments', steps: [{ send: fragmented(OP.TEXT, ['', '', '']) }], expect: [textEv('')] },
  { id: '5.18', title: 'text fragments: empty, "middle", empty', steps: [{ send: fragmented(OP.TEXT, ['', 'middle', '']) }], expect: [textEv('middle')] },
  (() => {
    // 200 numbered fragments: any reordering or loss shows in the echo.
    const parts = Array.from({ length: 200 }, (_, i) => Buffer.from(`<${String(i).padStart(3, '0')}>`));
    return { id: '5.19', title: 'binary in 200 numbered fragments: delivered whole and in order', steps: [{ send: fragmented(OP.BINARY, parts) }], expect: [binEv(Buffer.concat(parts))] };
  })(),
  (() => {
    const a = ['a1', 'a2', 'a3'];
    const b = [binaryOf(10, 1), binaryOf(20, 2)];
    return {
      id: '5.20',
      title: 'two fragmented messages back to back, pings between fragments',
      steps: [
        {
          send: [
            text(a[0], { fin: false }), ping('x1'), cont(a[1], { fin: false }), cont(a[2]),
            binary(b[0], { fin: false }), ping('x2'), cont(b[1]),
          ],
        },
      ],
      expect: [pongEv('x1'), textEv('a1a2a3'), pongEv('x2'), binEv(Buffer.concat(b))],
    };
  })(),
  {
    id: '5.21',
    title: 'a ping with FIN clear inside a fragmented message -> 1002',
    steps: [{ send: [text('frag', { fin: false }), ping('p', { fin: false }), cont('ment')] }],
    ...fail,
  },
  {
    id: '5.22',
    title: 'large fragments: 3 x 70000 bytes of text with 64-bit lengths',
    steps: [{ send: fragmented(OP.TEXT, [asciiOf(70000, 1), asciiOf(70000, 2), asciiOf(70000, 3)]) }],
    expect: [textEv(Buffer.concat([asciiOf(70000, 1), asciiOf(70000, 2), asciiOf(70000, 3)]))],
  },
  {
    id: '5.23',
    title: 'binary fragment, ping, then a new binary frame (FIN) -> pong maybe, then 1002',
    steps: [{ send: [binary('frag', { fin: false }), ping('p'), encodeFrame({ opcode: OP.BINARY, payload: 'again' })] }],
    expect: [pongEv('p')],
    nonStrict: true,
    ...fail,
  },
];
