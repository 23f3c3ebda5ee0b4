// Section 2: pings and pongs.
// RFC 6455 section 5.5: control frames carry at most 125 bytes of payload and MUST NOT be
// fragmented; section 5.5.2: a ping is answered with a pong whose payload is the ping's;
// section 5.5.3: an unsolicited pong MAY be sent and expects no response; section 5.4: control
// frames MAY be injected in the middle of a fragmented message.
// Tether relays pings to the backend, whose pong it relays back: the client sees the pong either
// way, and must see it while the fragmented message around the ping is still open.
import { OP, binary, cont, encodeFrame, ping, pong, text } from '../lib/frames.mjs';
import { asciiOf, binaryOf, pongEv, textEv } from './util.mjs';

const hello = Buffer.from('Hello, world!');
const bin8 = Buffer.from([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]);
const p125 = binaryOf(125, 9);
const p126 = binaryOf(126, 9);
const ten = Array.from({ length: 10 }, (_, i) => Buffer.from(`payload-${i}`));

export const cases = [
  { id: '2.1', title: 'ping without payload -> pong without payload', steps: [{ send: ping('') }], expect: [pongEv('')] },
  { id: '2.2', title: 'ping with a text payload -> pong with the same payload', steps: [{ send: ping(hello) }], expect: [pongEv(hello)] },
  { id: '2.3', title: 'ping with a binary payload -> pong with the same payload', steps: [{ send: ping(bin8) }], expect: [pongEv(bin8)] },
  { id: '2.4', title: 'ping with a 125-byte payload (the maximum)', steps: [{ send: ping(p125) }], expect: [pongEv(p125)] },
  {
    id: '2.5',
    title: 'ping with a 126-byte payload -> 1002',
    steps: [{ send: encodeFrame({ opcode: OP.PING, payload: p126 }) }],
    close: { fail: 1002 },
  },
  { id: '2.6', title: 'ping with a 125-byte payload, written octet by octet', steps: [{ send: ping(p125), chop: 'octet' }], expect: [pongEv(p125)] },
  { id: '2.7', title: 'unsolicited pong without payload: no answer', steps: [{ send: pong('') }], expect: [] },
  { id: '2.8', title: 'unsolicited pong with payload: no answer', steps: [{ send: pong('unsolicited pong payload') }], expect: [] },
  {
    id: '2.9',
    title: 'unsolicited pong, then a ping -> only the ping is answered',
    steps: [{ send: [pong('unsolicited pong payload'), ping('ping payload')] }],
    expect: [pongEv('ping payload')],
  },
  { id: '2.10', title: '10 pings in one write -> 10 pongs in order', steps: [{ send: Buffer.concat(ten.map((p) => ping(p))) }], expect: ten.map(pongEv) },
  { id: '2.11', title: '10 pings written octet by octet -> 10 pongs in order', steps: [{ send: ten.map((p) => ping(p)), chop: 'octet' }], expect: ten.map(pongEv) },
  {
    id: '2.12',
    title: 'ping with a 126-byte payload in the 64-bit length form -> 1002',
    steps: [{ send: encodeFrame({ opcode: OP.PING, payload: p126, lenForm: 64 }) }],
    close: { fail: 1002 },
  },
  {
    id: '2.13',
    title: 'pong with a 126-byte payload -> 1002',
    steps: [{ send: encodeFrame({ opcode: OP.PONG, payload: p126, lenForm: 16 }) }],
    close: { fail: 1002 },
  },
  {
    id: '2.14',
    title: 'ping between the fragments of a text message: the pong comes while the message is open',
    steps: [{ send: [text('fragment1', { fin: false }), ping('inside')] }, { waitEvents: 1 }, { send: cont('fragment2') }],
    expect: [pongEv('inside'), textEv('fragment1fragment2')],
  },
  {
    id: '2.15',
    title: 'unsolicited pong between the fragments of a binary message: ignored',
    steps: [{ send: [binary(binaryOf(10), { fin: false }), pong('between'), cont(binaryOf(5, 1))] }],
    expect: [{ type: 'message', opcode: OP.BINARY, data: Buffer.concat([binaryOf(10), binaryOf(5, 1)]) }],
  },
  {
    // A control frame's length fits the 7-bit form, and section 5.2 makes the minimal form a
    // MUST: a 16-bit length on a ping is itself the sender's error, so failing it is allowed
    // (Tether decides at the second header byte, before reading the extended length).
    id: '2.16',
    title: 'a 125-byte ping in the 16-bit length form (non-minimal) -> 1002',
    steps: [{ send: encodeFrame({ opcode: OP.PING, payload: asciiOf(125), lenForm: 16 }) }],
    close: { fail: 1002 },
  },
];
