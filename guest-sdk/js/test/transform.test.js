// A transform's output: points encoded into a WIT batch, exact, in the layout the host
// checks (node --test guest-sdk/js/test/).
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  Batch, FieldValue, PluginError, Point, PointView, Transform, exportTransform, float, integer, testing, unsigned,
} from '../sluice-sdk.js';

afterEach(() => testing.reset());

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const U64_MAX = 2n ** 64n - 1n;

/**
 * What the host makes of a transform's output (host/src/plugin/batch.rs `decode`): every
 * column a whole number of rows, the text UTF-8 as a whole, every span inside it and on
 * character boundaries, every row range inside its column, type codes 0-4. Throws naming
 * what breaks; returns plain points with exact values (BigInt for every 64-bit integer).
 */
function hostDecode(raw) {
  for (const [k, col] of Object.entries(raw)) assert.ok(col instanceof Uint8Array, `${k} is a Uint8Array`);
  const text = raw.text;
  new TextDecoder('utf-8', { fatal: true }).decode(text);
  const dv = (col) => new DataView(col.buffer, col.byteOffset, col.byteLength);
  const rows = (col, width, name) => {
    if (col.length % width !== 0) throw new Error(`column ${name} is ${col.length} bytes`);
    return col.length / width;
  };
  const n = rows(raw.points, 24, 'points');
  assert.equal(rows(raw.timestamps, 8, 'timestamps'), n);
  const nTags = rows(raw.tags, 16, 'tags');
  const nFields = rows(raw.fieldKeys, 8, 'field-keys');
  assert.equal(raw.fieldKinds.length, nFields);
  assert.equal(rows(raw.fieldValues, 8, 'field-values'), nFields);
  const boundary = (i) => i === text.length || (text[i] & 0xc0) !== 0x80;
  const span = (start, len, what) => {
    if (start + len > text.length || !boundary(start) || !boundary(start + len)) {
      throw new Error(`${what}: span ${start}+${len} is outside the ${text.length}-byte text or cuts a character`);
    }
    return new TextDecoder().decode(text.subarray(start, start + len));
  };
  const P = dv(raw.points);
  const T = dv(raw.tags);
  const K = dv(raw.fieldKeys);
  const V = dv(raw.fieldValues);
  const S = dv(raw.timestamps);
  const u32 = (d, i) => d.getUint32(i * 4, true);
  const out = [];
  for (let i = 0; i < n; i++) {
    const row = (j) => u32(P, i * 6 + j);
    const measurement = span(row(0), row(1), `point ${i} measurement`);
    if (row(2) + row(3) > nTags) throw new Error(`point ${i}: tags past the end`);
    if (row(4) + row(5) > nFields) throw new Error(`point ${i}: fields past the end`);
    const tags = [];
    for (let t = row(2); t < row(2) + row(3); t++) {
      tags.push([span(u32(T, 4 * t), u32(T, 4 * t + 1), `tag ${t} key`), span(u32(T, 4 * t + 2), u32(T, 4 * t + 3), `tag ${t} value`)]);
    }
    const fields = [];
    for (let f = row(4); f < row(4) + row(5); f++) {
      const key = span(u32(K, 2 * f), u32(K, 2 * f + 1), `field ${f} key`);
      const kind = raw.fieldKinds[f];
      const bits = V.getBigUint64(8 * f, true);
      let value;
      switch (kind) {
        case 0: value = ['float', V.getFloat64(8 * f, true)]; break;
        case 1: value = ['integer', BigInt.asIntN(64, bits)]; break;
        case 2: value = ['unsigned', bits]; break;
        case 3: value = ['boolean', bits !== 0n]; break;
        case 4: value = ['string', span(Number(bits >> 32n), Number(bits & 0xffffffffn), `field ${f} string`)]; break;
        default: throw new Error(`field ${f} has type code ${kind}`);
      }
      fields.push([key, ...value]);
    }
    out.push({ measurement, tags, fields, timestamp: S.getBigInt64(8 * i, true) });
  }
  return out;
}

/** `p` (a Point) as hostDecode shows a point: exact values. */
function expected(p) {
  return {
    measurement: p.measurement,
    tags: p.tags.map((t) => [t.key, t.value]),
    fields: p.fields.map((f) => {
      const { kind, value } = f.value;
      return [f.key, kind, kind === 'integer' || kind === 'unsigned' ? BigInt(value) : value];
    }),
    timestamp: p.timestamp,
  };
}

class Script extends Transform {
  transform(p) {
    switch (p.measurement) {
      case 'drop':
        return null;
      case 'twice':
        return [p, p.toPoint().withTag('copy', 'yes')];
      case 'fail':
        throw new PluginError('no index');
      case 'fail-at':
        throw PluginError.at(7, 'own index');
      case 'bad-int':
        return p.toPoint().withField('x', new FieldValue('integer', 1.5));
      default:
        return p.toPoint().withTag('seen', 'yes').withField('big', unsigned(U64_MAX));
    }
  }
}
const script = exportTransform(Script);
const pt = (m) => new Point(m, 1_700_000_000_123_456_789n).withField('x', integer(1));

test('exportTransform returns the points as a batch, in order, nanoseconds and 64-bit values exact', () => {
  testing.stubHost();
  const out = script(Batch.fromPoints([pt('a'), pt('drop'), pt('twice'), pt('b')]));
  const points = hostDecode(out);
  assert.deepEqual(points.map((p) => p.measurement), ['a', 'twice', 'twice', 'b']);
  assert.deepEqual(points[0], {
    measurement: 'a',
    tags: [['seen', 'yes']],
    fields: [['x', 'integer', 1n], ['big', 'unsigned', U64_MAX]],
    timestamp: 1_700_000_000_123_456_789n,
  });
  assert.deepEqual(points[1].tags, []);
  assert.deepEqual(points[2].tags, [['copy', 'yes']]);
  assert.deepEqual(testing.points(out)[3], pt('b').withTag('seen', 'yes').withField('big', unsigned(U64_MAX)));
  assert.deepEqual(hostDecode(script(Batch.fromPoints([]))), []);
});

test('a transform error without index gets the point index; its own index stays', () => {
  testing.stubHost();
  assert.throws(() => script(Batch.fromPoints([pt('a'), pt('b'), pt('fail'), pt('c')])), { message: 'no index', index: 2 });
  assert.throws(() => script(Batch.fromPoints([pt('a'), pt('fail-at')])), { message: 'own index', index: 7 });
  assert.throws(() => script(Batch.fromPoints([pt('a'), pt('bad-int')])), {
    message: 'output point 1: integer field value `1.5` is not an integer',
    index: null,
  });
});

test('every kind and extreme value crosses exactly, whatever holds it: BigInt or Number', () => {
  const p = new Point('m', I64_MIN)
    .withField('imin', integer(I64_MIN))
    .withField('imax', integer(I64_MAX))
    .withField('isafe', integer(-(2 ** 53 - 1)))
    .withField('ipast', integer(2n ** 53n + 1n))
    .withField('ineg1', integer(-1))
    .withField('umax', unsigned(U64_MAX))
    .withField('u63', unsigned(2n ** 63n))
    .withField('u0', unsigned(0))
    .withField('u32', unsigned(2 ** 32))
    .withField('f', -0)
    .withField('tiny', float(5e-324))
    .withField('inf', -Infinity)
    .withField('t', true)
    .withField('no', false)
    .withField('s', 'ünïcødé 🚀')
    .withField('empty', '');
  const q = new Point('n', I64_MAX).withField('v', 1);
  q.timestamp = -(2 ** 53) + 1; // a Number set directly
  q.fields.push({ key: 'raw', value: 2n ** 60n }); // a plain value pushed directly: an integer
  const got = hostDecode(Batch.fromPoints([p, q]).raw);
  assert.deepEqual(got[0], expected(p));
  assert.ok(Object.is(got[0].fields[9][2], -0));
  assert.equal(got[1].timestamp, -(2n ** 53n) + 1n);
  assert.deepEqual(got[1].fields[1], ['raw', 'integer', 2n ** 60n]);
  for (const ts of [0n, -1n, 1n, I64_MIN, I64_MAX, 1_700_000_000_000_000_001n, -1_700_000_000_000_000_001n]) {
    assert.equal(hostDecode(Batch.fromPoints([new Point('m', ts).withField('v', 1)]).raw)[0].timestamp, ts);
  }
  for (const ts of [0, -1, 2 ** 53 - 1, -(2 ** 53 - 1), 1.7e18, -1.7e18, 2 ** 62]) {
    const r = new Point('m').withField('v', 1);
    r.timestamp = ts;
    assert.equal(hostDecode(Batch.fromPoints([r]).raw)[0].timestamp, BigInt(ts), String(ts));
  }
  for (const v of [0, 1, -1, 2 ** 31, -(2 ** 31), 2 ** 32 - 1, -(2 ** 32), 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 53, 2 ** 62, -(2 ** 63)]) {
    const r = new Point('m').withField('i', new FieldValue('integer', v));
    assert.deepEqual(hostDecode(Batch.fromPoints([r]).raw)[0].fields[0], ['i', 'integer', BigInt(v)], String(v));
  }
  const outOfRange = [
    new FieldValue('integer', 2n ** 63n),
    new FieldValue('integer', 2 ** 63),
    new FieldValue('unsigned', -1),
    new FieldValue('unsigned', 2n ** 64n),
  ];
  for (const fv of outOfRange) {
    assert.throws(() => Batch.fromPoints([new Point('m').withField('v', 1), new Point('m').withField('v', fv)]), {
      name: 'PluginError',
      message: new RegExp(`^output point 1: ${fv.kind} field value .* is out of range$`),
    });
  }
});

test('a string repeated in a batch is written once, its span shared', () => {
  const points = [0, 1, 2].map((i) => new Point('température', BigInt(i)).withTag('城市', 'Zürich').withTag('host', `h${i % 2}`).withField('value', i).withField('note', 'ok'));
  const raw = Batch.fromPoints(points).raw;
  assert.equal(new TextDecoder().decode(raw.text), 'températurehosth0城市Zürichvaluenoteokh1');
  assert.deepEqual(hostDecode(raw), points.map(expected));
  const alt = Batch.fromPoints(['a', 'b', 'a', 'value'].map((m) => new Point(m).withField('value', 'a'))).raw;
  assert.equal(new TextDecoder().decode(alt.text), 'avalueb');
});

test("points made from a batch's views keep the spans of their strings in its text", () => {
  testing.stubHost();
  const input = Batch.fromPoints([
    new Point('cpu', 1n).withTag('host', 'wéb-1').withField('v', 1).withField('s', 'ñ0✓'),
    new Point('mem', 2n).withTag('host', 'web-2').withField('v', 2),
  ]);
  class Copy extends Transform {
    transform(p) {
      return p.toPoint().withTag('new', 'ü');
    }
  }
  const out = exportTransform(Copy)(input.raw);
  // The input text leads; only the new strings follow it.
  assert.equal(new TextDecoder().decode(out.text), new TextDecoder().decode(input.raw.text) + 'newü');
  assert.deepEqual(testing.points(out), testing.points(input.raw).map((p) => p.withTag('new', 'ü')));
});

test('views passed through are copied row by row, their spans into the input text', () => {
  testing.stubHost();
  const input = [
    new Point('cpu', 1_700_000_000_000_000_001n).withTag('host', 'wéb-1').withField('u', unsigned(U64_MAX)).withField('s', '東京'),
    new Point('température', -5n).withTag('ünit', '°C').withField('v', 21.5).withField('n', integer(I64_MIN)),
    new Point('mem', 7n).withField('free', integer(3)),
  ];
  const batch = Batch.fromPoints(input);
  // A NaN with a payload: a copied row keeps its bits.
  const nanBits = 0x7ff80000deadbeefn;
  const raw = { ...batch.raw, fieldValues: Uint8Array.from(batch.raw.fieldValues) };
  new DataView(raw.fieldValues.buffer).setBigUint64(2 * 8, nanBits, true);
  class Mixed extends Transform {
    transform(p) {
      if (p.measurement === 'mem') return [p.toPoint().withTag('new', 'ñ'), p];
      return p;
    }
  }
  const out = exportTransform(Mixed)(raw);
  const text = new TextDecoder().decode(out.text);
  assert.ok(text.startsWith(new TextDecoder().decode(raw.text)), 'the input text leads');
  const got = hostDecode(out);
  assert.equal(got.length, 4);
  assert.deepEqual(got[0], expected(input[0]));
  assert.equal(got[1].fields[0][0], 'v');
  assert.equal(new DataView(out.fieldValues.buffer, out.fieldValues.byteOffset).getBigUint64(2 * 8, true), nanBits);
  assert.deepEqual(got[2], { ...expected(input[2]), tags: [['new', 'ñ']] });
  assert.deepEqual(got[3], expected(input[2]));
  // Returning the batch itself returns its columns.
  class Same extends Transform {
    transformBatch(b) {
      return b;
    }
  }
  const same = exportTransform(Same)(batch.raw);
  assert.deepEqual(hostDecode(same), input.map(expected));
});

test('views of another batch, and malformed views, are written as they read', () => {
  const other = Batch.fromPoints([new Point('other', 9n).withTag('k', 'v').withField('x', 'y')]);
  const first = Batch.fromPoints([new Point('first', 1n).withField('a', 1)]);
  const broken = new Batch({
    text: new TextEncoder().encode('ab'),
    points: new Uint8Array(Uint32Array.from([0, 1, 5, 1, 0, 1]).buffer), // its tag row is past the tags
    timestamps: new Uint8Array(BigInt64Array.from([3n]).buffer),
    tags: new Uint8Array(0),
    fieldKeys: new Uint8Array(Uint32Array.from([1, 1]).buffer),
    fieldKinds: Uint8Array.from([0]),
    fieldValues: new Uint8Array(Float64Array.from([2.5]).buffer),
  });
  const raw = Batch.fromPoints([first.point(0), other.point(0), broken.point(0)]).raw;
  assert.deepEqual(hostDecode(raw), [
    { measurement: 'first', tags: [], fields: [['a', 'float', 1]], timestamp: 1n },
    { measurement: 'other', tags: [['k', 'v']], fields: [['x', 'string', 'y']], timestamp: 9n },
    { measurement: 'a', tags: [], fields: [['b', 'float', 2.5]], timestamp: 3n },
  ]);
});

test('plain objects and lone surrogates', () => {
  const raw = Batch.fromPoints([
    { measurement: 'm\ud800', tags: { b: '2', a: '1' }, fields: { v: 1.5, n: 7n, s: 'x\udfff' }, timestamp: 12n },
  ]).raw;
  assert.deepEqual(hostDecode(raw), [
    { measurement: 'm\ufffd', tags: [['a', '1'], ['b', '2']], fields: [['v', 'float', 1.5], ['n', 'integer', 7n], ['s', 'string', 'x\ufffd']], timestamp: 12n },
  ]);
});

/** A random string: ASCII, Latin, CJK, emoji. */
function randomString(rnd, max) {
  const alphabet = ['a', 'b', 'z', '_', '-', ' ', '=', ',', 'é', 'ü', 'ñ', '東', '京', '温', '度', '🚀', '✓', 'Ж'];
  let s = '';
  const n = Math.floor(rnd() * (max + 1));
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(rnd() * alphabet.length)];
  return s;
}

test('random points survive encoding and the host checks, views and Points mixed', () => {
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const big = (bits) => {
    let v = 0n;
    for (let i = 0; i < bits; i += 16) v = (v << 16n) | BigInt(Math.floor(rnd() * 65536));
    return BigInt.asUintN(bits, v);
  };
  const points = [];
  for (let i = 0; i < 2000; i++) {
    const p = new Point(rnd() < 0.5 && i > 0 ? points[i - 1].measurement : randomString(rnd, 6) || 'm', BigInt.asIntN(64, big(64)));
    const nt = Math.floor(rnd() * 4);
    for (let t = 0; t < nt; t++) p.setTag(randomString(rnd, 4), randomString(rnd, 5));
    const nf = 1 + Math.floor(rnd() * 5);
    for (let f = 0; f < nf; f++) {
      const key = `${randomString(rnd, 3)}${f}`;
      switch (Math.floor(rnd() * 5)) {
        case 0: p.setField(key, (rnd() - 0.5) * 10 ** Math.floor(rnd() * 40 - 20)); break;
        case 1: p.setField(key, integer(BigInt.asIntN(64, big(64)) >> BigInt(Math.floor(rnd() * 64)))); break;
        case 2: p.setField(key, unsigned(big(64) >> BigInt(Math.floor(rnd() * 64)))); break;
        case 3: p.setField(key, rnd() < 0.5); break;
        default: p.setField(key, randomString(rnd, 8));
      }
    }
    points.push(p);
  }
  const batch = Batch.fromPoints(points);
  assert.deepEqual(hostDecode(batch.raw), points.map(expected));
  assert.deepEqual(testing.points(batch.raw), points);
  testing.stubHost();
  class Half extends Transform {
    transform(v) {
      assert.ok(v instanceof PointView);
      return v.index % 2 === 0 ? v : v.toPoint().withField('seen', true);
    }
  }
  const out = hostDecode(exportTransform(Half)(batch));
  assert.deepEqual(out, points.map((p, i) => expected(i % 2 === 0 ? p : toPointCopy(p).withField('seen', true))));
  // Runs of views broken by drops, repeats and reordering.
  class Runs extends Transform {
    transformBatch(b) {
      const out = [];
      for (const v of b) {
        if (v.index % 5 === 0) continue;
        out.push(v);
        if (v.index % 7 === 0) out.push(v, b.point(v.index - 1));
        if (v.index % 11 === 0) out.push(null);
      }
      return out;
    }
  }
  const want = [];
  points.forEach((p, i) => {
    if (i % 5 === 0) return;
    want.push(p);
    if (i % 7 === 0) want.push(p, points[i - 1]);
  });
  assert.deepEqual(hostDecode(exportTransform(Runs)(batch)), want.map(expected));
});

test('views of a batch whose rows do not follow each other are copied one by one', () => {
  const u32 = (...a) => new Uint8Array(Uint32Array.from(a).buffer);
  // Point 0's tags and fields come after point 1's.
  const raw = {
    text: new TextEncoder().encode('cpuhostabvw'),
    points: u32(0, 3, 1, 1, 1, 1, 0, 3, 0, 1, 0, 1),
    timestamps: new Uint8Array(BigInt64Array.from([10n, 20n]).buffer),
    tags: u32(3, 4, 7, 1, 3, 4, 8, 1),
    fieldKeys: u32(9, 1, 10, 1),
    fieldKinds: Uint8Array.from([0, 1]),
    fieldValues: new Uint8Array(BigInt64Array.from([0x4004000000000000n, -5n]).buffer),
  };
  const b = new Batch(raw);
  const want = [
    { measurement: 'cpu', tags: [['host', 'b']], fields: [['w', 'integer', -5n]], timestamp: 10n },
    { measurement: 'cpu', tags: [['host', 'a']], fields: [['v', 'float', 2.5]], timestamp: 20n },
  ];
  assert.deepEqual(hostDecode(Batch.fromPoints([b.point(0), b.point(1)]).raw), want);
  assert.deepEqual(hostDecode(Batch.fromPoints([b.point(1), b.point(0), b.point(1)]).raw), [want[1], want[0], want[1]]);
});

function toPointCopy(p) {
  const q = new Point(p.measurement, p.timestamp);
  q.tags = p.tags.map((t) => ({ ...t }));
  q.fields = p.fields.map((f) => ({ key: f.key, value: f.value }));
  return q;
}
