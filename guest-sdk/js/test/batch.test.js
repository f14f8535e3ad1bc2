// The batch layout and the per-point view (node --test guest-sdk/js/test/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Batch, Point, PointView, FieldValue, integer, unsigned, float, decodeUtf8, encodeUtf8,
} from '../sluice-sdk.js';

const u32 = (...a) => new Uint8Array(Uint32Array.from(a).buffer);
const u64 = (...a) => {
  const b = new Uint8Array(a.length * 8);
  const dv = new DataView(b.buffer);
  a.forEach((v, i) => (typeof v === 'number' ? dv.setFloat64(i * 8, v, true) : dv.setBigUint64(i * 8, BigInt.asUintN(64, v), true)));
  return b;
};
const i64 = (...a) => new Uint8Array(BigInt64Array.from(a).buffer);
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const U64_MAX = 2n ** 64n - 1n;

function samplePoints() {
  return [
    new Point('cpu', 1_700_000_000_000_000_000n)
      .withTag('region', 'eu')
      .withTag('host', 'web-1')
      .withField('usage', 12.5)
      .withField('count', integer(I64_MIN))
      .withField('max', integer(I64_MAX))
      .withField('bytes', unsigned(U64_MAX))
      .withField('up', true)
      .withField('down', false)
      .withField('note', 'ok'),
    new Point('température', I64_MIN)
      .withTag('ville', 'Zürich')
      .withTag('城市', '東京')
      .withField('°C', -0)
      .withField('msg', 'ünïcødé 🚀, with = and \\')
      .withField('empty', ''),
    new Point('', I64_MAX).withField('v', unsigned(0)),
    new Point('mem', -1n)
      .withField('inf', -Infinity)
      .withField('pinf', Infinity)
      .withField('nan', NaN)
      .withField('tiny', Number.MIN_VALUE)
      .withField('neg', integer(-7))
      .withField('big', unsigned(2n ** 63n + 5n)),
  ];
}

test('layout is what the WIT batch record describes (byte offsets, not characters)', () => {
  const b = Batch.fromPoints([
    new Point('é', 7n).withTag('h', 'a').withField('s', 'ü').withField('n', integer(-2)),
    new Point('m', 8n).withField('b', true),
  ]);
  const raw = b.raw;
  assert.deepEqual(raw.text, encodeUtf8('éhasünmb'));
  assert.deepEqual(raw.points, u32(0, 2, 0, 1, 0, 2, 8, 1, 1, 0, 2, 1));
  assert.deepEqual(raw.timestamps, i64(7n, 8n));
  assert.deepEqual(raw.tags, u32(2, 1, 3, 1));
  assert.deepEqual(raw.fieldKeys, u32(4, 1, 7, 1, 9, 1));
  assert.deepEqual(raw.fieldKinds, Uint8Array.from([4, 1, 3]));
  assert.deepEqual(raw.fieldValues, u64((5n << 32n) | 2n, -2n, 1n));
  for (const col of Object.values(raw)) assert.ok(col instanceof Uint8Array);
});

test('points round-trip through a batch, every kind and extreme', () => {
  const points = samplePoints();
  const b = Batch.fromPoints(points);
  assert.equal(b.length, points.length);
  const back = b.points().map((v) => v.toPoint());
  assert.deepEqual(back, points);
  // -0 keeps its sign; NaN stays NaN.
  assert.ok(Object.is(b.point(1).field('°C'), -0));
  assert.ok(Number.isNaN(b.point(3).field('nan')));
});

test('views read measurement, timestamp, tags and fields typed by kind', () => {
  const b = Batch.fromPoints(samplePoints());
  const cpu = b.point(0);
  assert.equal(cpu.measurement, 'cpu');
  assert.equal(cpu.timestamp, 1_700_000_000_000_000_000n);
  assert.deepEqual(cpu.tags(), [['host', 'web-1'], ['region', 'eu']]);
  assert.equal(cpu.tag('region'), 'eu');
  assert.equal(cpu.tag('ville'), undefined, "another point's tag");
  assert.equal(cpu.field('usage'), 12.5);
  assert.equal(cpu.fieldKind('usage'), 'float');
  assert.equal(cpu.field('count'), I64_MIN, 'unsafe integers are BigInt');
  assert.equal(cpu.fieldKind('count'), 'integer');
  assert.equal(cpu.field('max'), I64_MAX);
  assert.equal(cpu.field('bytes'), U64_MAX);
  assert.equal(cpu.fieldKind('bytes'), 'unsigned');
  assert.equal(cpu.field('up'), true);
  assert.equal(cpu.field('down'), false);
  assert.equal(cpu.field('note'), 'ok');
  assert.equal(cpu.field('msg'), undefined, "another point's field");
  assert.deepEqual(cpu.fields().map((f) => f.key), ['usage', 'count', 'max', 'bytes', 'up', 'down', 'note']);
  assert.deepEqual(cpu.fieldValue('max'), new FieldValue('integer', I64_MAX));
  assert.ok(cpu.hasField('up'));
  assert.ok(!cpu.hasField('nope'));
  // number(): numeric kinds as the nearest double, others undefined.
  assert.equal(cpu.number('usage'), 12.5);
  assert.equal(cpu.number('count'), -(2 ** 63));
  assert.equal(cpu.number('bytes'), 2 ** 64);
  assert.equal(cpu.number('up'), undefined);
  assert.equal(cpu.number('note'), undefined);
  assert.equal(cpu.number('missing'), undefined);

  const t = b.point(1);
  assert.equal(t.measurement, 'température');
  assert.equal(t.timestamp, I64_MIN);
  assert.equal(t.tag('ville'), 'Zürich');
  assert.equal(t.tag('城市'), '東京');
  assert.equal(t.field('msg'), 'ünïcødé 🚀, with = and \\');
  assert.equal(t.field('empty'), '');
  assert.equal(t.number('°C'), -0);

  const unnamed = b.point(2);
  assert.equal(unnamed.measurement, '');
  assert.equal(unnamed.timestamp, I64_MAX);
  assert.deepEqual(unnamed.tags(), []);
  assert.deepEqual(unnamed.fields(), [{ key: 'v', kind: 'unsigned', value: 0 }]);

  const mem = b.point(3);
  assert.equal(mem.timestamp, -1n);
  assert.equal(mem.field('inf'), -Infinity);
  assert.equal(mem.field('pinf'), Infinity);
  assert.equal(mem.field('tiny'), Number.MIN_VALUE);
  assert.equal(mem.field('neg'), -7, 'safe integers are Numbers');
  assert.equal(typeof mem.field('neg'), 'number');
  assert.equal(mem.field('big'), 2n ** 63n + 5n, 'u64 above 2**63');
  assert.equal(mem.number('neg'), -7);
  assert.ok(Number.isNaN(mem.number('nan')));
});

test('integers are Numbers up to 2**53 - 1 and BigInt past it, both signs', () => {
  const vals = [0n, 1n, -1n, 2n ** 53n - 1n, -(2n ** 53n - 1n), 2n ** 53n, -(2n ** 53n), 2n ** 32n, -(2n ** 32n), -(2n ** 31n) - 1n];
  const p = new Point('m', 0n);
  vals.forEach((v, i) => p.setField(`i${i}`, integer(v)));
  vals.filter((v) => v >= 0n).forEach((v, i) => p.setField(`u${i}`, unsigned(v)));
  const view = Batch.fromPoints([p]).point(0);
  vals.forEach((v, i) => {
    const got = view.field(`i${i}`);
    const safe = v >= -(2n ** 53n - 1n) && v <= 2n ** 53n - 1n;
    assert.equal(typeof got, safe ? 'number' : 'bigint', `${v}`);
    assert.equal(BigInt(got), v);
    assert.equal(view.number(`i${i}`), Number(v));
  });
  vals.filter((v) => v >= 0n).forEach((v, i) => assert.equal(BigInt(view.field(`u${i}`)), v));
});

test('NaN keeps its bits', () => {
  const bits = 0x7ff80000deadbeefn;
  const raw = Batch.fromPoints([new Point('m', 0n).withField('v', 0.5)]).raw;
  raw.fieldValues = u64(bits);
  const b = new Batch(raw);
  const v = b.point(0).field('v');
  assert.ok(Number.isNaN(v));
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, v, true);
  // The view hands the stored double itself (no arithmetic on it).
  assert.equal(b.f64[0], v);
});

test('decodes a batch whose spans share text and list fields in any text order', () => {
  const raw = {
    text: encodeUtf8('cpuhostvalue'),
    points: u32(0, 3, 0, 1, 0, 2, 0, 3, 1, 1, 2, 1),
    timestamps: i64(10n, 20n),
    tags: u32(3, 4, 3, 4, 3, 4, 0, 3),
    fieldKeys: u32(7, 5, 3, 4, 7, 5),
    fieldKinds: Uint8Array.from([0, 4, 1]),
    fieldValues: u64(2.5, (7n << 32n) | 5n, -3n),
  };
  const points = new Batch(raw).points().map((p) => p.toPoint());
  assert.deepEqual(points, [
    new Point('cpu', 10n).withTag('host', 'host').withField('value', 2.5).withField('host', 'value'),
    new Point('cpu', 20n).withTag('host', 'cpu').withField('value', integer(-3)),
  ]);
});

test('a malformed batch reads as empty values instead of throwing', () => {
  const raw = {
    text: encodeUtf8('aé'), // 'é' is bytes 1..3
    // Point 0: measurement past the text, tags past the tag list, fields past the field
    // lists. Point 1 has no row at all.
    points: u32(2, 5, 9, 1, 4, 2),
    timestamps: i64(1n, 2n),
    tags: new Uint8Array(0),
    fieldKeys: u32(0, 2), // cuts 'é' in half
    fieldKinds: new Uint8Array(0),
    fieldValues: new Uint8Array(0),
  };
  const b = new Batch(raw);
  assert.equal(b.length, 2);
  const p = b.point(0);
  assert.equal(p.measurement, '');
  assert.equal(p.timestamp, 1n);
  assert.deepEqual(p.tags(), []);
  assert.equal(p.tag('h'), undefined);
  assert.deepEqual(p.fields(), [
    { key: '', kind: 'float', value: 0 },
    { key: '', kind: 'float', value: 0 },
  ]);
  assert.equal(p.field('a'), undefined);
  const q = b.point(1);
  assert.equal(q.measurement, '');
  assert.equal(q.timestamp, 2n);
  assert.deepEqual(q.tags(), []);
  assert.deepEqual(q.fields(), []);
  assert.equal(q.number('v'), undefined);
});

test('unknown field kind reads as float, a bad string span as ""', () => {
  const raw = {
    text: encodeUtf8('mkx'),
    points: u32(0, 1, 0, 0, 0, 2),
    timestamps: i64(0n),
    tags: new Uint8Array(0),
    fieldKeys: u32(1, 1, 1, 1),
    fieldKinds: Uint8Array.from([9, 4]),
    fieldValues: u64(1.5, (2n << 32n) | 100n),
  };
  const p = new Batch(raw).point(0);
  assert.deepEqual(p.fields(), [
    { key: 'k', kind: 'float', value: 1.5 },
    { key: 'k', kind: 'string', value: '' },
  ]);
  assert.equal(p.field('k'), 1.5, 'the first field of a key wins');
});

test('invalid UTF-8 in a span reads as ""', () => {
  const raw = Batch.fromPoints([new Point('ab', 0n).withTag('t', 'v').withField('f', 'xy')]).raw;
  raw.text = Uint8Array.from(raw.text);
  raw.text[0] = 0xff; // the measurement
  raw.text[5] = 0xc3; // the field's string value 'xy' now starts with a cut sequence
  const p = new Batch(raw).point(0);
  assert.equal(p.measurement, '');
  assert.equal(p.tag('t'), 'v');
  assert.equal(p.field('f'), '');
});

test('columns at unaligned offsets are read from a copy', () => {
  const raw = Batch.fromPoints(samplePoints()).raw;
  const shifted = {};
  for (const [k, col] of Object.entries(raw)) {
    const buf = new Uint8Array(col.length + 3);
    buf.set(col, 3);
    shifted[k] = buf.subarray(3);
  }
  const a = Batch.fromPoints(samplePoints()).points().map((p) => p.toPoint());
  const b = new Batch(shifted).points().map((p) => p.toPoint());
  assert.deepEqual(b, a);
});

test('an empty batch has no points', () => {
  const b = Batch.fromPoints([]);
  assert.equal(b.length, 0);
  assert.deepEqual(b.points(), []);
  assert.deepEqual([...b], []);
});

test('the UTF-8 decoder agrees with TextDecoder and rejects what is not UTF-8', () => {
  const strings = ['', 'ascii', 'é', 'Zürich', '東京', '🚀', 'a🚀b€c', '\u0000\u007f\u0080\u07ff\u0800\uffff', '\u{10ffff}', 'x'.repeat(10000), 'é'.repeat(5000)];
  for (const s of strings) {
    const bytes = new TextEncoder().encode(s);
    assert.deepEqual(encodeUtf8(s), bytes);
    assert.equal(decodeUtf8(bytes, 0, bytes.length), s);
  }
  const bad = [[0xff], [0xc3], [0xc0, 0x80], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf0, 0x9f, 0x9a], [0x80]];
  for (const b of bad) {
    assert.equal(decodeUtf8(Uint8Array.from(b)), null, JSON.stringify(b));
    assert.throws(() => new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(b)));
  }
  // Lone surrogates encode as U+FFFD, as TextEncoder does.
  assert.deepEqual(encodeUtf8('a\ud800b'), new TextEncoder().encode('a\ud800b'));
});

test('Point keeps tags sorted by UTF-8 bytes, fields in order, kinds explicit', () => {
  const p = new Point('m', 5).withTag('b', '2').withTag('a', '1').withTag('é', '3').withTag('z', '4');
  assert.deepEqual(p.tags.map((t) => t.key), ['a', 'b', 'z', 'é']);
  p.setTag('b', 'x');
  assert.equal(p.tag('b'), 'x');
  assert.equal(p.removeTag('a'), '1');
  assert.equal(p.tag('a'), undefined);
  p.setField('f', 1).setField('i', 1n).setField('u', unsigned(1)).setField('g', float(2));
  assert.deepEqual(p.fields.map((f) => [f.key, f.value.kind]), [['f', 'float'], ['i', 'integer'], ['u', 'unsigned'], ['g', 'float']]);
  assert.equal(p.timestamp, 5n);
  assert.throws(() => integer(1.5), TypeError);
  assert.throws(() => integer(2n ** 63n), RangeError);
  assert.throws(() => unsigned(-1), RangeError);
  assert.throws(() => p.setField('x', {}), TypeError);
  assert.ok(Batch.fromPoints([p]).point(0) instanceof PointView);
});
