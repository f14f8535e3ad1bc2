// Sluice plugin SDK for JavaScript: write filter, transform and alert plugins for the WIT
// package `sluice:plugin@0.2.0` (wit/plugin.wit), build them with jco (QuickJS backend) and
// test them natively with `node --test`.
//
// One file, no dependencies, plain ES module. It runs both inside the component (QuickJS:
// no TextDecoder, no console) and under Node 20. It never imports `sluice:plugin/...`
// itself: build.sh wires the host imports into `globalThis[Symbol.for("sluice.plugin.host")]`
// before the app runs, and native tests put stubs there with `testing.stubHost()`.
//
// Quick look (see README.md):
//
//   import { Filter, exportFilter, params } from './sdk/sluice-sdk.js';
//   class MaxValue extends Filter {
//     constructor() { super(); this.max = params.getFloat('max', 100); } // once per batch
//     keep(point) { const v = point.number('value'); return v === undefined || v <= this.max; }
//   }
//   export const filter = exportFilter(MaxValue);

// ---------------------------------------------------------------------------------------
// Errors

/**
 * Fails the whole batch (index null) or names item `index` of it. The host keeps the batch
 * as a dead letter with this message. Throw it from a constructor, `keep`, `transform`,
 * `evaluate` or a batch method.
 */
export class PluginError extends Error {
  constructor(message, index = null) {
    super(String(message));
    this.name = 'PluginError';
    this.index = validIndex(index);
  }

  /** An error naming item `index` of the batch. */
  static at(index, message) {
    return new PluginError(message, index);
  }
}

function validIndex(index) {
  return Number.isInteger(index) && index >= 0 && index <= 0xffffffff ? index : null;
}

// ---------------------------------------------------------------------------------------
// Host imports, through one indirection: the component's build wires the real imports,
// native tests wire stubs (testing.stubHost).

const HOST = Symbol.for('sluice.plugin.host');

function host() {
  const h = globalThis[HOST];
  if (!h) {
    throw new PluginError(
      'sluice-sdk: no host imports; inside the host build.sh wires them, in native tests ' +
        'call testing.stubHost() first',
    );
  }
  return h;
}

/** True inside a component built by build.sh (false in native tests). */
function inComponent() {
  const h = globalThis[HOST];
  return !!(h && h.inComponent);
}

// ---------------------------------------------------------------------------------------
// UTF-8 (QuickJS in the component has neither TextDecoder nor TextEncoder).

const fromCharCode = String.fromCharCode;
const CHUNK = 4096;

function codeUnitsToString(units, n) {
  if (n <= CHUNK) return fromCharCode.apply(null, n === units.length ? units : units.slice(0, n));
  let s = '';
  for (let i = 0; i < n; i += CHUNK) {
    s += fromCharCode.apply(null, units.slice(i, Math.min(i + CHUNK, n)));
  }
  return s;
}

/**
 * The string of `bytes[start..end)`, or null when those bytes are not valid UTF-8
 * (overlong forms, surrogates, code points past U+10FFFF and cut sequences are invalid).
 */
export function decodeUtf8(bytes, start = 0, end = bytes.length) {
  // ASCII fast path: most names are.
  let i = start;
  while (i < end && bytes[i] < 0x80) i++;
  if (i === end) {
    const n = end - start;
    if (n === 0) return '';
    if (n <= CHUNK) return fromCharCode.apply(null, bytes.subarray(start, end));
  }
  const units = [];
  i = start;
  while (i < end) {
    const b0 = bytes[i];
    if (b0 < 0x80) {
      units.push(b0);
      i += 1;
      continue;
    }
    let cp;
    let need;
    let min;
    if (b0 >= 0xc2 && b0 <= 0xdf) {
      cp = b0 & 0x1f;
      need = 1;
      min = 0x80;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      cp = b0 & 0x0f;
      need = 2;
      min = 0x800;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      cp = b0 & 0x07;
      need = 3;
      min = 0x10000;
    } else {
      return null;
    }
    if (i + need >= end) return null; // cut sequence
    for (let k = 1; k <= need; k++) {
      const b = bytes[i + k];
      if ((b & 0xc0) !== 0x80) return null;
      cp = (cp << 6) | (b & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return null;
    if (cp >= 0x10000) {
      const c = cp - 0x10000;
      units.push(0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
    } else {
      units.push(cp);
    }
    i += need + 1;
  }
  return codeUnitsToString(units, units.length);
}

/** The UTF-8 bytes of `s` (a lone surrogate becomes U+FFFD, as TextEncoder does). */
export function encodeUtf8(s) {
  s = String(s);
  const n = s.length;
  let ascii = true;
  for (let i = 0; i < n; i++) {
    if (s.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  const out = [];
  for (let i = 0; i < n; i++) {
    let cp = s.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < n) {
      const lo = s.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      } else {
        cp = 0xfffd;
      }
    } else if (cp >= 0xd800 && cp <= 0xdfff) {
      cp = 0xfffd;
    }
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else {
      out.push(
        0xf0 | (cp >> 18),
        0x80 | ((cp >> 12) & 0x3f),
        0x80 | ((cp >> 6) & 0x3f),
        0x80 | (cp & 0x3f),
      );
    }
  }
  return Uint8Array.from(out);
}

// ---------------------------------------------------------------------------------------
// Field values

/** The five kinds of field, as named in the WIT variant `field-value`. */
export const FieldKind = Object.freeze({
  FLOAT: 'float',
  INTEGER: 'integer',
  UNSIGNED: 'unsigned',
  BOOLEAN: 'boolean',
  STRING: 'string',
});

const KIND_NAMES = ['float', 'integer', 'unsigned', 'boolean', 'string'];
const KIND_CODES = { float: 0, integer: 1, unsigned: 2, boolean: 3, string: 4 };

const TWO32 = 4294967296;
/** Spans shorter than this are kept as one number, start * SPAN_LEN + length. */
const SPAN_LEN = 4096;
/** Decoded strings a batch remembers, by span start & STR_CACHE_MASK. */
const STR_CACHE_MASK = 255;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const U64_MAX = 2n ** 64n - 1n;

/**
 * A typed field value: `kind` is one of FieldKind, `value` a number (float), a number or
 * BigInt (integer, unsigned: Number when it is a safe integer, BigInt otherwise), a boolean
 * or a string. Build with float(x), integer(x), unsigned(x) when a plain value's kind is
 * ambiguous (a plain JS number is a float).
 */
export class FieldValue {
  constructor(kind, value) {
    if (!(kind in KIND_CODES)) throw new TypeError(`unknown field kind \`${kind}\``);
    this.kind = kind;
    this.value = value;
  }

  /** Numbers as a Number (integers rounded to the nearest double); undefined otherwise. */
  asNumber() {
    switch (this.kind) {
      case 'float':
        return this.value;
      case 'integer':
      case 'unsigned':
        return Number(this.value);
      default:
        return undefined;
    }
  }

  /** The same value as a plain JS value (what view.field() returns). */
  valueOf() {
    return this.value;
  }

  static float(v) {
    return new FieldValue('float', Number(v));
  }

  static integer(v) {
    return new FieldValue('integer', normInt(v, I64_MIN, I64_MAX, 'integer'));
  }

  static unsigned(v) {
    return new FieldValue('unsigned', normInt(v, 0n, U64_MAX, 'unsigned'));
  }

  static boolean(v) {
    return new FieldValue('boolean', !!v);
  }

  static string(v) {
    return new FieldValue('string', String(v));
  }

  /**
   * A FieldValue from a plain value: number -> float, bigint -> integer, boolean, string.
   * A FieldValue is returned as is.
   */
  static from(v) {
    if (v instanceof FieldValue) return v;
    switch (typeof v) {
      case 'number':
        return new FieldValue('float', v);
      case 'bigint':
        return FieldValue.integer(v);
      case 'boolean':
        return new FieldValue('boolean', v);
      case 'string':
        return new FieldValue('string', v);
      default:
        if (v && typeof v === 'object' && typeof v.kind === 'string' && 'value' in v) {
          return new FieldValue(v.kind, v.value);
        }
        throw new TypeError(`a field value must be a number, bigint, boolean or string, not ${typeof v}`);
    }
  }
}

/** An integer in [lo, hi] as a Number when safe, a BigInt otherwise. */
function normInt(v, lo, hi, what) {
  let b;
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'number' && Number.isInteger(v)) b = BigInt(v);
  else if (typeof v === 'string' && /^[+-]?\d+$/.test(v.trim())) b = BigInt(v.trim());
  else throw new TypeError(`${what} field value \`${String(v)}\` is not an integer`);
  if (b < lo || b > hi) throw new RangeError(`${what} field value ${b} is out of range`);
  const n = Number(b);
  return Number.isSafeInteger(n) ? n : b;
}

/** A float field value (a plain JS number already is one). */
export const float = FieldValue.float;
/** A signed 64-bit integer field value (`7i` in line protocol) from a Number or BigInt. */
export const integer = FieldValue.integer;
/** An unsigned 64-bit integer field value (`7u`) from a Number or BigInt. */
export const unsigned = FieldValue.unsigned;

// ---------------------------------------------------------------------------------------
// Columns

function u8(bytes) {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes == null) return new Uint8Array(0);
  return Uint8Array.from(bytes);
}

/** `bytes` as an aligned copy (or itself when already aligned to `align`). */
function aligned(bytes, align, size) {
  const n = Math.floor(bytes.length / size) * size;
  if (bytes.byteOffset % align === 0) return { buffer: bytes.buffer, offset: bytes.byteOffset, n };
  const c = new Uint8Array(n);
  c.set(bytes.subarray(0, n));
  return { buffer: c.buffer, offset: 0, n };
}

function u32col(bytes) {
  const a = aligned(bytes, 4, 4);
  return new Uint32Array(a.buffer, a.offset, a.n >>> 2);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
if (!LITTLE_ENDIAN) throw new Error('sluice-sdk: needs a little-endian platform (WebAssembly is)');

// ---------------------------------------------------------------------------------------
// Batch and point views

/**
 * The columnar batch the host hands a filter or transform, read in place. `new Batch(raw)`
 * wraps the WIT record (what the export receives); `Batch.fromPoints([...])` builds one in
 * the host's exact byte layout, for tests. A per-point view decodes only what is read.
 */
export class Batch {
  constructor(raw) {
    this.raw = raw;
    this.text = u8(raw.text);
    this.pts = u32col(u8(raw.points));
    this.tagCol = u32col(u8(raw.tags));
    this.fk = u32col(u8(raw.fieldKeys));
    this.kinds = u8(raw.fieldKinds);
    const fv = u8(raw.fieldValues);
    const a = aligned(fv, 8, 8);
    this.nvals = a.n >>> 3;
    this.f64 = new Float64Array(a.buffer, a.offset, this.nvals);
    this.w32 = new Uint32Array(a.buffer, a.offset, this.nvals * 2);
    this.tsBytes = u8(raw.timestamps);
    this.ts = null; // BigInt64Array, made when a timestamp is read
    this.ts32 = null; // Uint32Array, made when a point is copied to a transform's output
    this.length = this.tsBytes.length >>> 3;
    this.rows = Math.floor(this.pts.length / 6); // points with a row
    this.keys = new Map(); // key string -> its UTF-8 bytes
    this.cStart = new Float64Array(STR_CACHE_MASK + 1).fill(-1); // spans decoded last,
    this.cLen = new Uint32Array(STR_CACHE_MASK + 1); // by start & STR_CACHE_MASK, and
    this.cStr = new Array(STR_CACHE_MASK + 1); // their strings
    // String -> its first span read (start * SPAN_LEN + length), kept while a transform
    // runs over the batch (exportTransform sets it): its output reuses those spans.
    this.spans = null;
    this.i64 = null; // BigInt64Array and BigUint64Array over the field values, made when
    this.u64 = null; // a 64-bit integer past 2**53 is read
    this.fieldIdx = new Map(); // field key -> Int32Array: its field row per point, or -1
    this.lastKey = null; // the last key looked up, and its index: the common case
    this.lastIdx = null;
  }

  /**
   * For field `key`, the row of that field for every point (-1 when the point has none),
   * made once per batch and key by comparing key bytes in place: nothing is decoded.
   */
  fieldIndex(key) {
    if (key === this.lastKey) return this.lastIdx;
    let idx = this.fieldIdx.get(key);
    if (idx === undefined) {
      idx = this.makeFieldIndex(key);
      this.fieldIdx.set(key, idx);
    }
    this.lastKey = key;
    this.lastIdx = idx;
    return idx;
  }

  makeFieldIndex(key) {
    const kb = this.keyBytes(key);
    const kl = kb.length;
    const n = this.length;
    const idx = new Int32Array(n).fill(-1);
    const pts = this.pts;
    const fk = this.fk;
    const jmax = fk.length >>> 1; // rows with a key span
    const text = this.text;
    const tl = text.length;
    const b0 = kl > 0 ? kb[0] : 0;
    const rows = Math.min(n, this.rows);
    if (kl === 0) {
      // The empty key: matches keys that read as "" (empty, past the list, bad spans).
      for (let i = 0, r = 0; i < rows; i++, r += 6) {
        const first = pts[r + 4];
        const end = first + pts[r + 5];
        for (let j = first; j < end; j++) {
          if (j >= jmax || this.str(fk[2 * j], fk[2 * j + 1]) === '') {
            idx[i] = j;
            break;
          }
        }
      }
      return idx;
    }
    // The hot loop: a key's length, then its first byte, then the rest, all in place. The
    // host gives a key repeated by consecutive points one span, so the start of the last
    // span that held the key (of the key's length) is a match without reading the text.
    let known = -1;
    for (let i = 0, r = 0; i < rows; i++, r += 6) {
      const first = pts[r + 4];
      let end = first + pts[r + 5];
      if (end > jmax) end = jmax;
      for (let j = first, o = 2 * first; j < end; j++, o += 2) {
        if (fk[o + 1] !== kl) continue;
        const st = fk[o];
        if (st === known) {
          idx[i] = j;
          break;
        }
        if (text[st] !== b0 || st + kl > tl) continue;
        let k = 1;
        while (k < kl && text[st + k] === kb[k]) k++;
        if (k === kl) {
          idx[i] = j;
          known = st;
          break;
        }
      }
    }
    return idx;
  }

  /** The batch's columns as the WIT record, every column a Uint8Array. */
  columns() {
    const raw = this.raw;
    return {
      text: this.text,
      points: u8(raw.points),
      timestamps: this.tsBytes,
      tags: u8(raw.tags),
      fieldKeys: u8(raw.fieldKeys),
      fieldKinds: this.kinds,
      fieldValues: u8(raw.fieldValues),
    };
  }

  /** The timestamps column as u32 words (low, high), for copying rows. */
  ts32col() {
    if (this.ts32 === null) {
      const a = aligned(this.tsBytes, 4, 8);
      this.ts32 = new Uint32Array(a.buffer, a.offset, a.n >>> 2);
    }
    return this.ts32;
  }

  /** The view of point `i`. */
  point(i) {
    return new PointView(this, i);
  }

  /** The views of every point, in order (an array). */
  points() {
    const out = new Array(this.length);
    for (let i = 0; i < this.length; i++) out[i] = new PointView(this, i);
    return out;
  }

  [Symbol.iterator]() {
    return this.points()[Symbol.iterator]();
  }

  /** The string of a span; a span past the text or of invalid UTF-8 reads as "". */
  str(start, len) {
    if (len === 0) return '';
    // The host gives a string repeated by consecutive points one span: the spans decoded
    // last are remembered (a small table indexed by start, no allocation on a miss).
    const h = start & STR_CACHE_MASK;
    if (this.cStart[h] === start && this.cLen[h] === len) return this.cStr[h];
    const end = start + len;
    if (end > this.text.length) return '';
    const s = decodeUtf8(this.text, start, end);
    if (s === null) return '';
    this.cStart[h] = start;
    this.cLen[h] = len;
    this.cStr[h] = s;
    // And the other way, for a transform's output: a string read from this batch keeps
    // its span instead of being encoded again.
    if (this.spans !== null && len < SPAN_LEN && !this.spans.has(s)) this.spans.set(s, start * SPAN_LEN + len);
    return s;
  }

  /** UTF-8 bytes of a key, encoded once per batch. */
  keyBytes(key) {
    let b = this.keys.get(key);
    if (b === undefined) {
      b = encodeUtf8(key);
      this.keys.set(key, b);
    }
    return b;
  }

  /** True when span (start, len) holds exactly the bytes `kb` (a key, never empty). */
  spanIs(start, len, kb) {
    const kl = kb.length;
    if (len !== kl) return kl === 0 && this.str(start, len) === '';
    if (kl === 0) return true;
    if (start + len > this.text.length) return false;
    const text = this.text;
    for (let k = 0; k < kl; k++) if (text[start + k] !== kb[k]) return false;
    return true;
  }

  timestamp(i) {
    if (this.ts === null) {
      const a = aligned(this.tsBytes, 8, 8);
      this.ts = new BigInt64Array(a.buffer, a.offset, a.n >>> 3);
    }
    return i < this.ts.length ? this.ts[i] : 0n;
  }

  kindCode(j) {
    return j < this.kinds.length ? this.kinds[j] : 0;
  }

  /** The plain value of field row j. */
  value(j) {
    const has = j < this.nvals;
    switch (this.kindCode(j)) {
      case 1: {
        if (!has) return 0;
        const v = (this.w32[2 * j + 1] | 0) * TWO32 + this.w32[2 * j];
        if (Number.isSafeInteger(v)) return v;
        if (this.i64 === null) this.i64 = new BigInt64Array(this.f64.buffer, this.f64.byteOffset, this.nvals);
        return this.i64[j];
      }
      case 2: {
        if (!has) return 0;
        const v = this.w32[2 * j + 1] * TWO32 + this.w32[2 * j];
        if (Number.isSafeInteger(v)) return v;
        if (this.u64 === null) this.u64 = new BigUint64Array(this.f64.buffer, this.f64.byteOffset, this.nvals);
        return this.u64[j];
      }
      case 3:
        return has ? (this.w32[2 * j] | this.w32[2 * j + 1]) !== 0 : false;
      case 4:
        return has ? this.str(this.w32[2 * j + 1], this.w32[2 * j]) : '';
      default:
        return has ? this.f64[j] : 0;
    }
  }

  /** Field row j as a Number if numeric, else undefined. */
  numberAt(j) {
    switch (this.kindCode(j)) {
      case 1:
        return j < this.nvals ? (this.w32[2 * j + 1] | 0) * TWO32 + this.w32[2 * j] : 0;
      case 2:
        return j < this.nvals ? this.w32[2 * j + 1] * TWO32 + this.w32[2 * j] : 0;
      case 3:
      case 4:
        return undefined;
      default:
        return j < this.nvals ? this.f64[j] : 0;
    }
  }

  fieldKey(j) {
    const o = 2 * j;
    return o + 1 < this.fk.length ? this.str(this.fk[o], this.fk[o + 1]) : '';
  }

  /**
   * A batch of `points` (Point objects, or plain { measurement, tags, fields, timestamp }
   * where tags/fields may be objects or arrays) in the layout the host sends. For tests.
   */
  static fromPoints(points) {
    return new Batch(encodeBatch(points));
  }
}

/** A view of one point of a batch. Cheap to make; reads decode only what they read. */
export class PointView {
  constructor(batch, index) {
    this.batch = batch;
    this.index = index;
  }

  /** Offset of this point's row in `points`, or -1: a point without a row reads as empty. */
  get row() {
    return this.index < this.batch.rows ? this.index * 6 : -1;
  }

  /** The measurement name. */
  get measurement() {
    const r = this.row;
    return r < 0 ? '' : this.batch.str(this.batch.pts[r], this.batch.pts[r + 1]);
  }

  /** Event time, nanoseconds since the Unix epoch, as a BigInt. */
  get timestamp() {
    return this.batch.timestamp(this.index);
  }

  tagRange() {
    const r = this.row;
    if (r < 0) return null;
    const b = this.batch;
    const first = b.pts[r + 2];
    const count = b.pts[r + 3];
    if (count === 0 || (first + count) * 4 > b.tagCol.length) return null;
    return [first, first + count];
  }

  /** The value of tag `key`, or undefined. */
  tag(key) {
    const range = this.tagRange();
    if (range === null) return undefined;
    const b = this.batch;
    const t = b.tagCol;
    const kb = b.keyBytes(key);
    for (let i = range[0]; i < range[1]; i++) {
      const o = 4 * i;
      if (b.spanIs(t[o], t[o + 1], kb)) return b.str(t[o + 2], t[o + 3]);
    }
    return undefined;
  }

  /** Tags as [key, value] pairs, sorted by key. */
  tags() {
    const range = this.tagRange();
    if (range === null) return [];
    const b = this.batch;
    const t = b.tagCol;
    const out = [];
    for (let i = range[0]; i < range[1]; i++) {
      const o = 4 * i;
      out.push([b.str(t[o], t[o + 1]), b.str(t[o + 2], t[o + 3])]);
    }
    return out;
  }

  /** Row index of field `key` in the batch's field columns, or -1. */
  fieldRow(key) {
    const j = this.batch.fieldIndex(key)[this.index];
    return j >= 0 ? j : -1;
  }

  /**
   * The value of field `key` or undefined: a float as a number, an integer or unsigned as a
   * Number when it is a safe integer (|v| <= 2**53 - 1) and a BigInt otherwise, a boolean, a
   * string.
   */
  field(key) {
    const j = this.fieldRow(key);
    return j < 0 ? undefined : this.batch.value(j);
  }

  /** The kind of field `key` (FieldKind: 'float', 'integer', ...) or undefined. */
  fieldKind(key) {
    const j = this.fieldRow(key);
    if (j < 0) return undefined;
    return KIND_NAMES[this.batch.kindCode(j)] || 'float';
  }

  /** Field `key` as a FieldValue (kind and value), or undefined. */
  fieldValue(key) {
    const j = this.fieldRow(key);
    if (j < 0) return undefined;
    return new FieldValue(KIND_NAMES[this.batch.kindCode(j)] || 'float', this.batch.value(j));
  }

  /**
   * Field `key` as a Number when it is a float, integer or unsigned (integers rounded to the
   * nearest double, like Rust's `as f64`); undefined when missing, boolean or string. The
   * fast path for numeric filters.
   */
  number(key) {
    const b = this.batch;
    const j = (key === b.lastKey ? b.lastIdx : b.fieldIndex(key))[this.index];
    if (!(j >= 0)) return undefined;
    // Float fast path.
    if (b.kinds[j] === 0 && j < b.nvals) return b.f64[j];
    return b.numberAt(j);
  }

  /** True when the point has field `key`. */
  hasField(key) {
    return this.fieldRow(key) >= 0;
  }

  /** Fields as { key, kind, value } objects, in the order of the batch. */
  fields() {
    const r = this.row;
    if (r < 0) return [];
    const b = this.batch;
    const first = b.pts[r + 4];
    const end = first + b.pts[r + 5];
    const out = [];
    for (let j = first; j < end; j++) {
      out.push({ key: b.fieldKey(j), kind: KIND_NAMES[b.kindCode(j)] || 'float', value: b.value(j) });
    }
    return out;
  }

  /** An owned, mutable copy. */
  toPoint() {
    const b = this.batch;
    const i = this.index;
    if (i >= b.rows) return new Point('', b.timestamp(i));
    const pts = b.pts;
    const r = i * 6;
    const p = new Point(b.str(pts[r], pts[r + 1]), b.timestamp(i));
    const nt = pts[r + 3];
    const t0 = pts[r + 2];
    const t = b.tagCol;
    if (nt > 0 && (t0 + nt) * 4 <= t.length) {
      const tags = p.tags;
      for (let o = 4 * t0, e = 4 * (t0 + nt); o < e; o += 4) {
        tags.push({ key: b.str(t[o], t[o + 1]), value: b.str(t[o + 2], t[o + 3]) });
      }
    }
    const first = pts[r + 4];
    const end = first + pts[r + 5];
    const fields = p.fields;
    const fk = b.fk;
    const kinds = b.kinds;
    const nvals = b.nvals;
    for (let j = first; j < end; j++) {
      const key = 2 * j + 1 < fk.length ? b.str(fk[2 * j], fk[2 * j + 1]) : '';
      const kc = j < kinds.length ? kinds[j] : 0;
      const value =
        kc === 0 && j < nvals ? new FieldValue('float', b.f64[j]) : new FieldValue(KIND_NAMES[kc] || 'float', b.value(j));
      fields.push({ key, value });
    }
    return p;
  }

  /** The point's series: measurement and tags. */
  series() {
    return {
      measurement: this.measurement,
      tags: this.tags().map(([key, value]) => ({ key, value })),
    };
  }
}

// ---------------------------------------------------------------------------------------
// Points (transform output, test input)

/**
 * An owned point: what a transform returns. `tags` is an array of { key, value } kept sorted
 * by setTag; `fields` an array of { key, value: FieldValue }. Plain values given to setField
 * are typed as FieldValue.from does: number -> float, bigint -> integer; use integer(x),
 * unsigned(x), float(x) to say otherwise.
 */
export class Point {
  constructor(measurement, timestamp = 0n) {
    this.measurement = typeof measurement === 'string' ? measurement : String(measurement);
    this.timestamp =
      typeof timestamp === 'bigint' && timestamp >= I64_MIN && timestamp <= I64_MAX ? timestamp : toBigIntTs(timestamp);
    this.tags = [];
    this.fields = [];
  }

  /** The value of tag `key`, or undefined. */
  tag(key) {
    const t = this.tags.find((t) => t.key === key);
    return t ? t.value : undefined;
  }

  /** Sets tag `key`, keeping tags sorted by key (by UTF-8 bytes, as the host sorts). */
  setTag(key, value) {
    key = String(key);
    value = String(value);
    const i = this.tags.findIndex((t) => t.key === key);
    if (i >= 0) {
      this.tags[i] = { key, value };
      return this;
    }
    let at = this.tags.length;
    for (let k = 0; k < this.tags.length; k++) {
      if (compareUtf8(this.tags[k].key, key) > 0) {
        at = k;
        break;
      }
    }
    this.tags.splice(at, 0, { key, value });
    return this;
  }

  /** Removes tag `key`, returning its value. */
  removeTag(key) {
    const i = this.tags.findIndex((t) => t.key === key);
    if (i < 0) return undefined;
    return this.tags.splice(i, 1)[0].value;
  }

  /** The plain value of field `key` (as PointView.field), or undefined. */
  field(key) {
    const f = this.fields.find((f) => f.key === key);
    return f ? f.value.value : undefined;
  }

  /** Field `key` as a FieldValue, or undefined. */
  fieldValue(key) {
    const f = this.fields.find((f) => f.key === key);
    return f ? f.value : undefined;
  }

  /** The kind of field `key`, or undefined. */
  fieldKind(key) {
    const f = this.fields.find((f) => f.key === key);
    return f ? f.value.kind : undefined;
  }

  /** Field `key` as a Number if numeric, else undefined. */
  number(key) {
    const f = this.fields.find((f) => f.key === key);
    return f ? f.value.asNumber() : undefined;
  }

  /** Sets field `key` (replacing or appending): a FieldValue or a plain value. */
  setField(key, value) {
    key = String(key);
    const v = FieldValue.from(value);
    const f = this.fields.find((f) => f.key === key);
    if (f) f.value = v;
    else this.fields.push({ key, value: v });
    return this;
  }

  /** Removes field `key`, returning its FieldValue. */
  removeField(key) {
    const i = this.fields.findIndex((f) => f.key === key);
    if (i < 0) return undefined;
    return this.fields.splice(i, 1)[0].value;
  }

  /** Chainable setTag. */
  withTag(key, value) {
    return this.setTag(key, value);
  }

  /** Chainable setField. */
  withField(key, value) {
    return this.setField(key, value);
  }

  /** The point's series: measurement and tags. */
  series() {
    return { measurement: this.measurement, tags: this.tags.map((t) => ({ key: t.key, value: t.value })) };
  }
}

function toBigIntTs(ts) {
  if (typeof ts === 'bigint') return BigInt.asIntN(64, ts);
  if (typeof ts === 'number' && Number.isFinite(ts)) return BigInt(Math.trunc(ts));
  throw new TypeError(`a timestamp must be a BigInt or a finite number, not ${String(ts)}`);
}

function compareUtf8(a, b) {
  const x = encodeUtf8(a);
  const y = encodeUtf8(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function pairs(x) {
  if (x == null) return [];
  if (Array.isArray(x)) return x.map((e) => (Array.isArray(e) ? [e[0], e[1]] : [e.key, e.value]));
  if (x instanceof Map) return [...x];
  return Object.entries(x);
}

/** Any point-like value as a Point (Point, PointView or a plain object). */
export function toPoint(p) {
  if (p instanceof Point) return p;
  if (p instanceof PointView) return p.toPoint();
  if (p && typeof p === 'object') {
    const out = new Point(p.measurement ?? '', p.timestamp ?? 0n);
    for (const [k, v] of pairs(p.tags)) out.setTag(k, v);
    for (const [k, v] of pairs(p.fields)) out.setField(k, v);
    return out;
  }
  throw new TypeError(`not a point: ${String(p)}`);
}

// ---------------------------------------------------------------------------------------
// Encoding points into a batch: a transform's output, and Batch.fromPoints for tests

const TWO32_INV = 1 / TWO32;

/**
 * The last strings written at the places of a point (its measurement, its i-th tag key...)
 * and their spans: consecutive points mostly repeat them, and a repeat costs one compare.
 */
class Slots {
  constructor() {
    this.strs = [];
    this.starts = [];
    this.lens = [];
  }

  grow(n) {
    while (this.strs.length < n) {
      this.strs.push('');
      this.starts.push(0);
      this.lens.push(0);
    }
  }
}

/**
 * Writes points into the columns of a WIT `batch`, in the byte layout the host reads:
 * numbers are written as exact little-endian bytes (timestamps and 64-bit integers from
 * BigInt or Number, never through a double), strings as UTF-8. A string repeated at the
 * same place by consecutive points (measurement, i-th tag key, i-th field key, ...) shares
 * one span, as the host's batches do. Views of the batch being transformed that pass
 * through unchanged are copied row by row, their spans pointing into that batch's text,
 * which leads the output's text: nothing of them is decoded or encoded again.
 */
class BatchWriter {
  constructor(nPoints, nTags, nFields, src, textCap) {
    this.n = 0;
    this.pts = new Uint32Array(nPoints * 6);
    this.tsBuf = new ArrayBuffer(nPoints * 8);
    this.ts32 = new Uint32Array(this.tsBuf);
    this.ts64 = null; // BigInt64Array over tsBuf, made on the first BigInt timestamp
    this.tags = new Uint32Array(nTags * 4);
    this.nTags = 0;
    this.fk = new Uint32Array(nFields * 2);
    this.kinds = new Uint8Array(nFields);
    this.valBuf = new ArrayBuffer(nFields * 8);
    this.f64 = new Float64Array(this.valBuf);
    this.w32 = new Uint32Array(this.valBuf);
    this.v64 = null; // BigInt64Array over valBuf, made on the first BigInt value
    this.nFields = 0;
    this.text = new Uint8Array(Math.max(64, textCap));
    this.tlen = 0;
    this.slen = 0; // length in bytes of the last string written
    this.src = src;
    this.spans = new Map(); // string -> its span in the output (start * SPAN_LEN + length)
    this.srcSpans = null; // string -> its span in the source batch's text
    if (src !== null) {
      this.text.set(src.text, 0);
      this.tlen = src.text.length;
      this.srcSpans = src.spans;
    }
    this.mSlot = new Slots();
    this.mSlot.grow(1);
    this.tkSlot = new Slots();
    this.tvSlot = new Slots();
    this.fkSlot = new Slots();
    this.fsSlot = new Slots();
  }

  grow(extra) {
    let cap = this.text.length * 2;
    while (cap < this.tlen + extra) cap *= 2;
    const t = new Uint8Array(cap);
    t.set(this.text.subarray(0, this.tlen), 0);
    this.text = t;
  }

  /** Appends the UTF-8 bytes of `s` (a lone surrogate as U+FFFD); returns their start. */
  writeStr(s) {
    const n = s.length;
    if (this.tlen + n * 3 > this.text.length) this.grow(n * 3);
    const text = this.text;
    const start = this.tlen;
    let t = start;
    for (let i = 0; i < n; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) {
        text[t++] = c;
        continue;
      }
      if (c < 0x800) {
        text[t++] = 0xc0 | (c >> 6);
        text[t++] = 0x80 | (c & 0x3f);
        continue;
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        if (c <= 0xdbff && i + 1 < n) {
          const lo = s.charCodeAt(i + 1);
          if (lo >= 0xdc00 && lo <= 0xdfff) {
            const cp = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
            text[t++] = 0xf0 | (cp >> 18);
            text[t++] = 0x80 | ((cp >> 12) & 0x3f);
            text[t++] = 0x80 | ((cp >> 6) & 0x3f);
            text[t++] = 0x80 | (cp & 0x3f);
            i++;
            continue;
          }
        }
        c = 0xfffd;
      }
      text[t++] = 0xe0 | (c >> 12);
      text[t++] = 0x80 | ((c >> 6) & 0x3f);
      text[t++] = 0x80 | (c & 0x3f);
    }
    this.tlen = t;
    this.slen = t - start;
    return start;
  }

  /**
   * Sets place k of `slots` to `s` and its span: one written before in this batch, else
   * its span in the source batch's text when it was read from there, else new text.
   * Callers first check slots.strs[k] !== s: a repeat at the same place costs nothing more.
   */
  slot(slots, k, s) {
    if (typeof s !== 'string') s = String(s);
    slots.strs[k] = s;
    let packed = this.spans.get(s);
    if (packed === undefined && this.srcSpans !== null) packed = this.srcSpans.get(s);
    if (packed === undefined) {
      const start = this.writeStr(s);
      const len = this.slen;
      slots.starts[k] = start;
      slots.lens[k] = len;
      if (len < SPAN_LEN) this.spans.set(s, start * SPAN_LEN + len);
      return;
    }
    const start = Math.floor(packed * (1 / SPAN_LEN));
    slots.starts[k] = start;
    slots.lens[k] = packed - start * SPAN_LEN;
  }

  /** Writes an owned point (a Point). */
  point(p) {
    const i = this.n++;
    const o = i * 6;
    const pts = this.pts;
    const m = this.mSlot;
    if (m.strs[0] !== p.measurement) this.slot(m, 0, p.measurement);
    const tags = p.tags;
    const fields = p.fields;
    const nt = tags.length;
    const nf = fields.length;
    pts[o] = m.starts[0];
    pts[o + 1] = m.lens[0];
    pts[o + 2] = this.nTags;
    pts[o + 3] = nt;
    pts[o + 4] = this.nFields;
    pts[o + 5] = nf;
    const ts = p.timestamp;
    if (typeof ts === 'bigint') {
      if (this.ts64 === null) this.ts64 = new BigInt64Array(this.tsBuf);
      this.ts64[i] = ts; // ToBigInt64: exact for every i64
    } else {
      this.timestamp(i, ts);
    }
    if (nt > 0) {
      const tk = this.tkSlot;
      const tv = this.tvSlot;
      if (tk.strs.length < nt) {
        tk.grow(nt);
        tv.grow(nt);
      }
      const tkS = tk.strs;
      const tvS = tv.strs;
      const col = this.tags;
      for (let k = 0, r = this.nTags * 4; k < nt; k++, r += 4) {
        const t = tags[k];
        let key;
        let value;
        if (Array.isArray(t)) {
          key = t[0];
          value = t[1];
        } else {
          key = t.key;
          value = t.value;
        }
        if (tkS[k] !== key) this.slot(tk, k, key);
        if (tvS[k] !== value) this.slot(tv, k, value);
        col[r] = tk.starts[k];
        col[r + 1] = tk.lens[k];
        col[r + 2] = tv.starts[k];
        col[r + 3] = tv.lens[k];
      }
      this.nTags += nt;
    }
    if (nf > 0) {
      const fk = this.fkSlot;
      if (fk.strs.length < nf) {
        fk.grow(nf);
        this.fsSlot.grow(nf);
      }
      const fkS = fk.strs;
      const keys = this.fk;
      const kinds = this.kinds;
      const f64 = this.f64;
      let j = this.nFields;
      for (let k = 0; k < nf; k++, j++) {
        const f = fields[k];
        const key = f.key;
        if (fkS[k] !== key) this.slot(fk, k, key);
        keys[2 * j] = fk.starts[k];
        keys[2 * j + 1] = fk.lens[k];
        const fv = f.value;
        if (fv instanceof FieldValue && fv.kind === 'float' && typeof fv.value === 'number') {
          kinds[j] = 0;
          f64[j] = fv.value;
        } else {
          this.value(j, fv, k, i);
        }
      }
      this.nFields = j;
    }
  }

  timestamp(i, t) {
    if (typeof t === 'bigint') {
      if (this.ts64 === null) this.ts64 = new BigInt64Array(this.tsBuf);
      this.ts64[i] = t; // ToBigInt64: exact for every i64
    } else if (Number.isSafeInteger(t)) {
      this.ts32[2 * i] = t >>> 0;
      this.ts32[2 * i + 1] = Math.floor(t * TWO32_INV);
    } else {
      this.timestamp(i, toBigIntTs(t));
    }
  }

  /**
   * Field row j: its kind and 64-bit value (`fv` a FieldValue or a plain value; `k` its
   * place in its point, the i-th point written).
   */
  value(j, fv, k, point) {
    if (!(fv instanceof FieldValue)) fv = FieldValue.from(fv);
    const v = fv.value;
    const w32 = this.w32;
    switch (fv.kind) {
      case 'float':
        this.kinds[j] = 0;
        this.f64[j] = typeof v === 'number' ? v : Number(v);
        return;
      case 'integer':
      case 'unsigned': {
        const unsigned = fv.kind === 'unsigned';
        this.kinds[j] = unsigned ? 2 : 1;
        if (Number.isSafeInteger(v) && (v >= 0 || !unsigned)) {
          // Two's complement words of a safe integer: exact without a BigInt.
          w32[2 * j] = v >>> 0;
          w32[2 * j + 1] = Math.floor(v * TWO32_INV);
          return;
        }
        if (typeof v === 'bigint' && (unsigned ? BigInt.asUintN(64, v) : BigInt.asIntN(64, v)) === v) {
          if (this.v64 === null) this.v64 = new BigInt64Array(this.valBuf);
          this.v64[j] = v; // ToBigInt64 keeps the bits of a u64 above 2**63
          return;
        }
        let b;
        try {
          b = normInt(v, unsigned ? 0n : I64_MIN, unsigned ? U64_MAX : I64_MAX, fv.kind);
        } catch (e) {
          throw new PluginError(`output point ${point}: ${e.message}`);
        }
        if (typeof b === 'number') {
          w32[2 * j] = b >>> 0;
          w32[2 * j + 1] = Math.floor(b * TWO32_INV);
        } else {
          if (this.v64 === null) this.v64 = new BigInt64Array(this.valBuf);
          this.v64[j] = b; // ToBigInt64 keeps the bits of a u64 above 2**63
        }
        return;
      }
      case 'boolean':
        this.kinds[j] = 3;
        w32[2 * j] = v ? 1 : 0;
        return;
      default: {
        this.kinds[j] = 4;
        const fs = this.fsSlot;
        if (fs.strs[k] !== v) this.slot(fs, k, v);
        w32[2 * j] = fs.lens[k];
        w32[2 * j + 1] = fs.starts[k];
      }
    }
  }

  /**
   * Writes `count` consecutive points of the source batch from point `first` on (each
   * viewFits), whose tag and field rows follow each other there: whole column ranges are
   * copied at once, and their rows in `points` moved to where they land.
   */
  viewRun(first, count) {
    const src = this.src;
    const sp = src.pts;
    const r0 = first * 6;
    const rEnd = r0 + count * 6;
    const t0 = sp[r0 + 2];
    const f0 = sp[r0 + 4];
    const t1 = sp[rEnd - 4] + sp[rEnd - 3];
    const f1 = sp[rEnd - 2] + sp[rEnd - 1];
    const dt = this.nTags - t0;
    const df = this.nFields - f0;
    const pts = this.pts;
    for (let r = r0, o = this.n * 6; r < rEnd; r += 6, o += 6) {
      pts[o] = sp[r];
      pts[o + 1] = sp[r + 1];
      pts[o + 2] = sp[r + 2] + dt;
      pts[o + 3] = sp[r + 3];
      pts[o + 4] = sp[r + 4] + df;
      pts[o + 5] = sp[r + 5];
    }
    this.ts32.set(src.ts32col().subarray(first * 2, (first + count) * 2), this.n * 2);
    this.n += count;
    if (t1 > t0) this.tags.set(src.tagCol.subarray(t0 * 4, t1 * 4), this.nTags * 4);
    this.nTags += t1 - t0;
    if (f1 > f0) {
      this.fk.set(src.fk.subarray(f0 * 2, f1 * 2), this.nFields * 2);
      this.kinds.set(src.kinds.subarray(f0, f1), this.nFields);
      this.w32.set(src.w32.subarray(f0 * 2, f1 * 2), this.nFields * 2);
    }
    this.nFields += f1 - f0;
  }

  /** The WIT `batch` record: every column bytes. */
  finish() {
    return {
      text: this.text.subarray(0, this.tlen),
      points: new Uint8Array(this.pts.buffer, 0, this.n * 24),
      timestamps: new Uint8Array(this.tsBuf, 0, this.n * 8),
      tags: new Uint8Array(this.tags.buffer, 0, this.nTags * 16),
      fieldKeys: new Uint8Array(this.fk.buffer, 0, this.nFields * 8),
      fieldKinds: this.kinds.subarray(0, this.nFields),
      fieldValues: new Uint8Array(this.valBuf, 0, this.nFields * 8),
    };
  }
}

/**
 * True when view `v` can be copied row by row: it has a row, a timestamp, and its tag and
 * field rows are all in the batch's columns (the host's batches always are). A malformed
 * view is written as it reads instead (empty strings, no tags...).
 */
function viewFits(v) {
  const b = v.batch;
  const i = v.index;
  if (i >= b.rows || i >= b.length) return false;
  const r = i * 6;
  const p = b.pts;
  const tEnd = p[r + 2] + p[r + 3];
  const fEnd = p[r + 4] + p[r + 5];
  return tEnd * 4 <= b.tagCol.length && fEnd * 2 <= b.fk.length && fEnd <= b.kinds.length && fEnd <= b.nvals;
}

/**
 * The WIT batch record of `points` in the host's layout (Uint8Array columns): Point,
 * PointView or plain { measurement, tags, fields, timestamp } objects (null and undefined
 * are skipped). What a transform's export returns, and what Batch.fromPoints wraps. `src`,
 * when given, is the batch the points come from: its text then leads the output's, and
 * strings read from it keep their spans.
 */
function encodeBatch(points, src = null) {
  const input = Array.isArray(points) ? points : Array.from(points);
  const items = [];
  let nTags = 0;
  let nFields = 0;
  let text = 0;
  let views = false;
  for (let i = 0; i < input.length; i++) {
    let p = input[i];
    if (p === null || p === undefined) continue;
    if (p instanceof PointView) {
      if (src === null) src = p.batch;
      if (p.batch === src && viewFits(p)) {
        const r = p.index * 6;
        nTags += src.pts[r + 3];
        nFields += src.pts[r + 5];
        items.push(p);
        views = true;
        continue;
      }
      p = p.toPoint();
    } else if (!(p instanceof Point)) {
      p = toPoint(p);
    }
    items.push(p);
    nTags += p.tags.length;
    nFields += p.fields.length;
    text += 16;
  }
  // The source's text leads only when something points into it.
  if (src !== null && !views && (src.spans === null || src.spans.size === 0)) src = null;
  const n = items.length;
  const w = new BatchWriter(n, nTags, nFields, src, (src === null ? 0 : src.text.length) + text);
  for (let i = 0; i < n; ) {
    const p = items[i];
    if (p instanceof Point) {
      w.point(p);
      i++;
      continue;
    }
    // A run of views of consecutive points whose rows follow each other: copied at once.
    const sp = src.pts;
    let k = i + 1;
    let r = p.index * 6;
    while (k < n) {
      const q = items[k];
      if (!(q instanceof PointView) || q.index !== p.index + (k - i)) break;
      const r2 = r + 6;
      if (sp[r2 + 2] !== sp[r + 2] + sp[r + 3] || sp[r2 + 4] !== sp[r + 4] + sp[r + 5]) break;
      r = r2;
      k++;
    }
    w.viewRun(p.index, k - i);
    i = k;
  }
  return w.finish();
}

/** A transform's output as the WIT batch record: the batch itself, or its points encoded. */
function encodeOutput(out, batch) {
  if (out instanceof Batch) return out.columns();
  if (out === null || out === undefined) return encodeBatch([]);
  if (Array.isArray(out)) return encodeBatch(out, batch);
  const list = [];
  eachResult(out, (x) => x instanceof Point || x instanceof PointView, (p) => list.push(p));
  return encodeBatch(list, batch);
}

// ---------------------------------------------------------------------------------------
// WIT boundary conversions

/** The alert states of the WIT enum `alert-state`. */
const ALERT_STATES = new Set(['ok', 'warning', 'critical']);

/** Alert `a` (the k-th returned) as the WIT record, checked against the `n` windows given. */
function wireAlert(a, k, n) {
  let w = a.window;
  if (w instanceof Window) w = w.index;
  if (!Number.isInteger(w) || w < 0 || w >= n) {
    throw new PluginError(
      `alert ${k} names window ${String(w)}: an alert names the window that caused it by its ` +
        `index in the list given (${n} windows)`,
    );
  }
  const state = String(a.state);
  if (!ALERT_STATES.has(state)) {
    throw new PluginError(`alert ${k}: state \`${state}\` is not ok, warning or critical`, w);
  }
  return {
    window: w,
    state,
    value: Number(a.value),
    message: a.message === undefined || a.message === null ? '' : String(a.message),
  };
}

/** A thrown value as a PluginError, naming `index` unless it names its own. */
function asPluginError(e, index) {
  if (e instanceof PluginError) {
    if (e.index === null && index !== null && index !== undefined) e.index = validIndex(index);
    return e;
  }
  let message;
  if (e instanceof Error) message = `${e.name}: ${e.message}`;
  else if (e && typeof e === 'object' && 'message' in e) message = String(e.message);
  else message = String(e);
  return new PluginError(message, e && typeof e === 'object' && 'index' in e && e.index !== null ? e.index : index);
}

/**
 * What the export throws: inside the component a plain { message, index } record (QuickJS
 * bindings trap on a thrown Error instance instead of returning the `result` error);
 * natively the PluginError itself.
 */
function toWire(err) {
  if (inComponent()) return { message: err.message, index: err.index };
  return err;
}

/** Items of an iterable result: null/undefined -> none, one item -> one, iterable -> each. */
function eachResult(r, isItem, f) {
  if (r === null || r === undefined || r === false) return;
  if (isItem(r) || typeof r[Symbol.iterator] !== 'function') {
    f(r);
    return;
  }
  for (const x of r) if (x !== null && x !== undefined) f(x);
}

// ---------------------------------------------------------------------------------------
// Base classes and exports

/**
 * A filter: override keep(point) (true keeps it) or filter(batch) (one boolean per point).
 * The constructor runs once per batch: read params there.
 */
export class Filter {
  keep(_point) {
    throw new PluginError(`${this.constructor.name} overrides neither keep(point) nor filter(batch)`);
  }

  /** One verdict per point, in order; override to look at the batch as a whole. */
  filter(batch) {
    const n = batch.length;
    const out = new Array(n);
    let i = 0;
    try {
      for (; i < n; i++) out[i] = !!this.keep(new PointView(batch, i));
    } catch (e) {
      throw asPluginError(e, i);
    }
    return out;
  }
}

/**
 * A transform: override transform(point) (returns the points that replace it: null or []
 * drops it, one Point/PointView, or an iterable of them) or transformBatch(batch).
 * `point` is a PointView: call point.toPoint() for a mutable copy, or return it unchanged.
 */
export class Transform {
  transform(_point) {
    throw new PluginError(`${this.constructor.name} overrides neither transform(point) nor transformBatch(batch)`);
  }

  /** The points that replace the batch; an error without index gets the point's index. */
  transformBatch(batch) {
    const out = [];
    const n = batch.length;
    const isItem = (x) => x instanceof Point || x instanceof PointView;
    const push = (p) => out.push(p);
    for (let i = 0; i < n; i++) {
      let r;
      try {
        r = this.transform(new PointView(batch, i));
      } catch (e) {
        throw asPluginError(e, i);
      }
      if (r instanceof PointView || r instanceof Point) out.push(r);
      else eachResult(r, isItem, push);
    }
    return out;
  }
}

/**
 * An alert plugin: override evaluate(window) (returns null, an alert, or an iterable of
 * alerts; build one with window.alert(state, value, message) or return a plain
 * { state, value, message }) or evaluateBatch(windows).
 */
export class Alert {
  evaluate(_window) {
    throw new PluginError(`${this.constructor.name} overrides neither evaluate(window) nor evaluateBatch(windows)`);
  }

  /**
   * The alerts of the batch, each naming the window that caused it by its index in the
   * list the host gave (`alert.window`). This default sets it to the window evaluate()
   * was called with; an override sets it itself (window.alert() does).
   */
  evaluateBatch(windows) {
    const out = [];
    const isItem = (x) => x instanceof AlertEvent || (x && typeof x === 'object' && 'state' in x);
    for (let i = 0; i < windows.length; i++) {
      const w = windows[i];
      const index = w instanceof Window ? w.index : i;
      let r;
      try {
        r = this.evaluate(w);
      } catch (e) {
        throw asPluginError(e, index);
      }
      eachResult(r, isItem, (a) => out.push(new AlertEvent(a.state, a.value, a.message, index)));
    }
    return out;
  }
}

/** Alert states (the WIT enum `alert-state`). */
export const AlertState = Object.freeze({ OK: 'ok', WARNING: 'warning', CRITICAL: 'critical' });

/**
 * An alert (the WIT record `alert`): the new state of the rule and series of one window,
 * the value that crossed the threshold and a message. `window` is the index of that window
 * in the list given to evaluate; the host adds its rule, series, field and bounds.
 * `new AlertEvent(state, value, message, window)` or `new AlertEvent({ window, state,
 * value, message })`.
 */
export class AlertEvent {
  constructor(state, value, message, window) {
    if (state !== null && typeof state === 'object') {
      ({ state, value, message, window } = state);
    }
    this.window = window instanceof Window ? window.index : window;
    this.state = state;
    this.value = value;
    this.message = message;
  }
}

/**
 * A closed window (the WIT record `window-result`): rule, series { measurement, tags:
 * [{ key, value }] }, field, windowStart and windowEnd (BigInt nanoseconds), aggregates
 * [{ name, value }], state ('ok' | 'warning' | 'critical'), and its index in the list the
 * host gave.
 */
export class Window {
  constructor(raw, index = 0) {
    this.rule = raw.rule;
    this.series = raw.series;
    this.field = raw.field;
    this.windowStart = toBigIntTs(raw.windowStart);
    this.windowEnd = toBigIntTs(raw.windowEnd);
    this.aggregates = raw.aggregates;
    this.state = raw.state;
    this.index = index;
  }

  /** The value of aggregate `name` (`mean`, `max`, `p99`...), or undefined. */
  aggregate(name) {
    const a = this.aggregates.find((a) => a.name === name);
    return a ? a.value : undefined;
  }

  /** The value of tag `key` of the series, or undefined. */
  tag(key) {
    const t = this.series.tags.find((t) => t.key === key);
    return t ? t.value : undefined;
  }

  /** An alert caused by this window: its rule and series change to `state`. */
  alert(state, value, message) {
    return new AlertEvent(state, value, message, this.index);
  }
}

function construct(Cls) {
  try {
    return new Cls();
  } catch (e) {
    throw asPluginError(e, null);
  }
}

function asBatch(b) {
  return b instanceof Batch ? b : new Batch(b);
}

/**
 * The world's `filter` export for Filter subclass `Cls`: `export const filter =
 * exportFilter(MyFilter);` in app.js. It makes one instance per batch. Natively, call it
 * with Batch.fromPoints([...]) in tests.
 */
export function exportFilter(Cls) {
  return function filter(rawBatch) {
    try {
      const batch = asBatch(rawBatch);
      const verdicts = construct(Cls).filter(batch);
      const out = Array.isArray(verdicts) ? verdicts : Array.from(verdicts);
      for (let i = 0; i < out.length; i++) if (typeof out[i] !== 'boolean') out[i] = !!out[i];
      return out;
    } catch (e) {
      throw toWire(asPluginError(e, null));
    }
  };
}

/**
 * The world's `transform` export: `export const transform = exportTransform(MyTransform);`
 * It returns the output points as a WIT `batch` (byte columns: exact timestamps and 64-bit
 * integers); natively, `testing.points(out)` reads them back as Points.
 */
export function exportTransform(Cls) {
  return function transform(rawBatch) {
    try {
      const batch = asBatch(rawBatch);
      if (batch.spans === null) batch.spans = new Map();
      return encodeOutput(construct(Cls).transformBatch(batch), batch);
    } catch (e) {
      throw toWire(asPluginError(e, null));
    }
  };
}

/** The world's `evaluate` export: `export const evaluate = exportAlert(MyAlert);` */
export function exportAlert(Cls) {
  return function evaluate(rawWindows) {
    try {
      const n = rawWindows.length;
      const windows = new Array(n);
      for (let i = 0; i < n; i++) windows[i] = new Window(rawWindows[i], i);
      const out = construct(Cls).evaluateBatch(windows);
      const wire = [];
      let k = 0;
      for (const a of out) {
        if (a !== null && a !== undefined) wire.push(wireAlert(a, k, n));
        k++;
      }
      return wire;
    } catch (e) {
      throw toWire(asPluginError(e, null));
    }
  };
}

// ---------------------------------------------------------------------------------------
// Formatting helpers

/**
 * `x` as Rust's `Display` for f64 writes it: the shortest digits that read back as `x`,
 * never an exponent (`1e21` -> `1000000000000000000000`, `1e-7` -> `0.0000001`), `-0`,
 * `inf`, `-inf`, `NaN`. Messages of JS plugins then read like those of their Rust twins.
 * Where two shortest candidates are equally near `x` (`245010723912258.125` has 17-digit
 * neighbours `...258.12` and `...258.13`), JavaScript picks the even last digit and Rust
 * the one further from zero: this picks Rust's.
 */
export function formatFloat(x) {
  x = Number(x);
  if (x !== x) return 'NaN';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const neg = x < 0;
  const a = neg ? -x : x;
  // The engine's shortest digits, as digits d1d2...dn and the exponent of 0.d1d2...dn.
  const s = String(a);
  const e = s.indexOf('e');
  const mant = e < 0 ? s : s.slice(0, e);
  const dot = mant.indexOf('.');
  let digits = dot < 0 ? mant : mant.slice(0, dot) + mant.slice(dot + 1);
  let point = (dot < 0 ? mant.length : dot) + (e < 0 ? 0 : Number(s.slice(e + 1)));
  let lead = 0;
  while (digits.charCodeAt(lead) === 48) lead++;
  digits = digits.slice(lead);
  point -= lead;
  let end = digits.length;
  while (end > 1 && digits.charCodeAt(end - 1) === 48) end--;
  digits = digits.slice(0, end);
  digits = tieAwayFromZero(a, digits, point);
  let out;
  if (point <= 0) out = '0.' + '0'.repeat(-point) + digits;
  else if (point >= digits.length) out = digits + '0'.repeat(point - digits.length);
  else out = digits.slice(0, point) + '.' + digits.slice(point);
  return neg ? '-' + out : out;
}

/**
 * `digits` (of 0.digits * 10**point, the shortest that read back as `a` > 0), or the next
 * ones up when `a` lies exactly halfway between them: Rust rounds that tie up.
 */
function tieAwayFromZero(a, digits, point) {
  const n = digits.length;
  // Add one to the last digit.
  let i = n - 1;
  while (i >= 0 && digits.charCodeAt(i) === 57) i--;
  if (i < 0) return digits; // 99..9 + 1 is 10..0: shorter, so the engine would have picked it
  const up = digits.slice(0, i) + String.fromCharCode(digits.charCodeAt(i) + 1) + '0'.repeat(n - 1 - i);
  // Cheap test first: a tie needs both candidates to read back as `a`.
  if (Number('0.' + up + 'e' + point) !== a) return digits;
  // Exact test: a == (digits + 1/2) * 10**k, k = point - n, i.e. (2 * digits + 1) * 10**k
  // == 2 * m * 2**q, where a = m * 2**q.
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, a);
  const hi = dv.getUint32(0);
  const lo = dv.getUint32(4);
  const biased = hi >>> 20;
  let m = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let q;
  if (biased === 0) q = -1074;
  else {
    m |= 1n << 52n;
    q = biased - 1075;
  }
  const k = point - n;
  let left = 2n * BigInt(digits) + 1n;
  let right = 2n * m;
  if (k >= 0) left *= 10n ** BigInt(k);
  else right *= 10n ** BigInt(-k);
  if (q >= 0) right <<= BigInt(q);
  else left <<= BigInt(-q);
  return left === right ? up : digits;
}

/**
 * A text key of a series, `measurement,k=v,...` with `\`, `,` and `=` escaped with `\`
 * (the Rust SDK's Series::key): a state key per series.
 */
export function seriesKey(series) {
  const esc = (s) => String(s).replace(/[\\,=]/g, (c) => '\\' + c);
  let key = esc(series.measurement);
  for (const t of series.tags || []) {
    const [k, v] = Array.isArray(t) ? t : [t.key, t.value];
    key += ',' + esc(k) + '=' + esc(v);
  }
  return key;
}

// ---------------------------------------------------------------------------------------
// params

// Rust's `str::trim`: Unicode White_Space, which is not quite JavaScript's `trim` (that one
// strips U+FEFF and keeps U+0085).
const RUST_WS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const RUST_TRIM = new RegExp(`^[${RUST_WS}]+|[${RUST_WS}]+$`, 'g');

/** `s` without leading and trailing whitespace, as Rust's `str::trim` strips it. */
function rustTrim(s) {
  return String(s).replace(RUST_TRIM, '');
}

// Float syntax Rust's f64::from_str accepts (so errors match the Rust SDK's).
const FLOAT_RE = /^[+-]?(?:inf|infinity|nan|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)$/i;

function paramError(name, raw, reason) {
  return new PluginError(`parameter \`${name}\` = \`${raw}\`: ${reason}`);
}

function parseFloatParam(name, raw) {
  const s = rustTrim(raw);
  if (!FLOAT_RE.test(s)) throw paramError(name, raw, s === '' ? 'cannot parse float from empty string' : 'invalid float literal');
  const body = s.replace(/^[+-]/, '').toLowerCase();
  const neg = s[0] === '-';
  if (body === 'inf' || body === 'infinity') return neg ? -Infinity : Infinity;
  if (body === 'nan') return NaN;
  return Number(s);
}

function parseIntParam(name, raw, lo, hi) {
  const s = rustTrim(raw);
  if (s === '') throw paramError(name, raw, 'cannot parse integer from empty string');
  const unsigned = lo === 0n;
  const re = unsigned ? /^\+?\d+$/ : /^[+-]?\d+$/;
  if (!re.test(s)) {
    if (s === '+' || s === '-') throw paramError(name, raw, 'invalid digit found in string');
    throw paramError(name, raw, 'invalid digit found in string');
  }
  const b = BigInt(s);
  if (b > hi) throw paramError(name, raw, 'number too large to fit in target type');
  if (b < lo) throw paramError(name, raw, 'number too small to fit in target type');
  const n = Number(b);
  return Number.isSafeInteger(n) ? n : b;
}

function parseBoolParam(name, raw) {
  const s = rustTrim(raw);
  if (s === 'true') return true;
  if (s === 'false') return false;
  throw paramError(name, raw, 'provided string was not `true` or `false`');
}

/**
 * The plugin's parameters (pipeline stage config, or --param of `sluice plugin run`).
 * Typed getters trim the value and throw a PluginError naming the parameter, the value and
 * the reason (`parameter \`max\` = \`abc\`: invalid float literal`); unset parameters give
 * the default (undefined without one).
 */
export const params = {
  /** The value of parameter `name` (a string), or undefined. */
  get(name) {
    const v = host().params.get(String(name));
    return v === null || v === undefined ? undefined : v;
  },
  /** The value of `name`, or `dflt`. */
  getOr(name, dflt) {
    const v = params.get(name);
    return v === undefined ? dflt : v;
  },
  /** The trimmed value of `name` as a string, or `dflt`. */
  getString(name, dflt) {
    const v = params.get(name);
    return v === undefined ? dflt : rustTrim(v);
  },
  /** `name` as a float (Rust syntax: `1.5`, `-2e3`, `inf`, `NaN`), or `dflt`. */
  getFloat(name, dflt) {
    const v = params.get(name);
    return v === undefined ? dflt : parseFloatParam(name, v);
  },
  /** `name` as a signed 64-bit integer (Number when safe, else BigInt), or `dflt`. */
  getInt(name, dflt) {
    const v = params.get(name);
    return v === undefined ? dflt : parseIntParam(name, v, I64_MIN, I64_MAX);
  },
  /** `name` as an unsigned 64-bit integer (Number when safe, else BigInt), or `dflt`. */
  getUint(name, dflt) {
    const v = params.get(name);
    return v === undefined ? dflt : parseIntParam(name, v, 0n, U64_MAX);
  },
  /** `name` as `true` or `false` (nothing else), or `dflt`. */
  getBool(name, dflt) {
    const v = params.get(name);
    return v === undefined ? dflt : parseBoolParam(name, v);
  },
  /** `name` as a comma-separated list of trimmed, non-empty items ([] when unset). */
  list(name) {
    const v = params.get(name);
    return v === undefined ? [] : splitList(v);
  },
  /** Every parameter as [name, value] pairs, sorted by name. */
  all() {
    return host().params.all().map((p) => [p[0], p[1]]);
  },
};

/** The trimmed, non-empty, comma-separated items of `raw`. */
export function splitList(raw) {
  return String(raw)
    .split(',')
    .map(rustTrim)
    .filter((s) => s !== '');
}

// ---------------------------------------------------------------------------------------
// log

function logFields(fields) {
  return pairs(fields).map(([k, v]) => [String(k), typeof v === 'number' ? formatFloat(v) : String(v)]);
}

function write(level, message, fields) {
  host().log.log(level, String(message), logFields(fields));
}

/**
 * Structured logs into the host's log, tagged with the plugin's name and version. Fields are
 * an object ({ table: 'hosts', rows: 3 }) or [key, value] pairs; values are stringified. The
 * host keeps at most 100 records per batch.
 */
export const log = {
  write,
  trace: (message, fields) => write('trace', message, fields),
  debug: (message, fields) => write('debug', message, fields),
  info: (message, fields) => write('info', message, fields),
  warn: (message, fields) => write('warn', message, fields),
  error: (message, fields) => write('error', message, fields),
};

// ---------------------------------------------------------------------------------------
// lookup

/** Read-only lookup tables (CSV files named in the host configuration). */
export const lookup = {
  /** The row of `table` whose key is `key`, as [column, value] pairs without the key column; undefined if none. */
  get(table, key) {
    const r = host().lookup.get(String(table), String(key));
    return r === null || r === undefined ? undefined : r.map((p) => [p[0], p[1]]);
  },
  /** The same row as an object { column: value }, or undefined. */
  row(table, key) {
    const r = lookup.get(table, key);
    return r === undefined ? undefined : Object.fromEntries(r);
  },
};

// ---------------------------------------------------------------------------------------
// state

function stateSetError(e) {
  if (e instanceof PluginError) return e;
  if (typeof e === 'string') return new PluginError(e);
  if (e && typeof e === 'object' && 'payload' in e) return new PluginError(String(e.payload));
  if (e && typeof e === 'object' && 'message' in e) return new PluginError(String(e.message));
  return new PluginError(String(e));
}

/**
 * Small key-value state the host keeps per pipeline stage, across batches and plugin
 * versions. Writes take effect only if the batch succeeds.
 */
export const state = {
  /** The bytes under `key` (Uint8Array), or undefined. */
  get(key) {
    const v = host().state.get(String(key));
    return v === null || v === undefined ? undefined : u8(v);
  },
  /** Stores bytes (Uint8Array or array of numbers); throws a PluginError when the state is full. */
  set(key, value) {
    try {
      host().state.set(String(key), u8(value));
    } catch (e) {
      throw stateSetError(e);
    }
  },
  /** Removes `key`. */
  remove(key) {
    host().state.remove(String(key));
  },
  /** The value under `key` as a UTF-8 string, or undefined. */
  getString(key) {
    const b = state.get(key);
    if (b === undefined) return undefined;
    const s = decodeUtf8(b, 0, b.length);
    return s === null ? undefined : s;
  },
  setString(key, s) {
    state.set(key, encodeUtf8(s));
  },
  /** The value under `key` parsed as JSON, or undefined (also when it is not JSON). */
  getJSON(key) {
    const s = state.getString(key);
    if (s === undefined) return undefined;
    try {
      return JSON.parse(s);
    } catch {
      return undefined;
    }
  },
  setJSON(key, value) {
    state.setString(key, JSON.stringify(value));
  },
  /**
   * The sample [timestamp (BigInt), value (Number)] stored by setSample, or undefined: the
   * layout of the Rust SDK (16 bytes: i64 then f64 bits, little-endian), so state survives a
   * rewrite in either language.
   */
  getSample(key) {
    const b = state.get(key);
    return b === undefined ? undefined : decodeSample(b);
  },
  setSample(key, timestamp, value) {
    state.set(key, encodeSample(timestamp, value));
  },
};

export function encodeSample(timestamp, value) {
  const out = new Uint8Array(16);
  const dv = new DataView(out.buffer);
  dv.setBigInt64(0, toBigIntTs(timestamp), true);
  dv.setFloat64(8, Number(value), true);
  return out;
}

export function decodeSample(bytes) {
  if (bytes.length < 16) return undefined;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return [dv.getBigInt64(0, true), dv.getFloat64(8, true)];
}

// ---------------------------------------------------------------------------------------
// testing

/**
 * Native test support: stubHost() installs stand-ins for the host imports and returns
 * them (params, lookup tables, state Map, recorded logs); window() builds a window-result
 * as the host sends it; points() reads a transform's output back. Batch.fromPoints([...])
 * builds a batch.
 */
export const testing = {
  /**
   * Installs host stubs: params { name: value }, lookup { table: { key: { column: value } } },
   * state (Map or object of key -> bytes/string), stateLimit (max keys; set() fails past it).
   * Returns { params (Map), lookup, state (Map of key -> Uint8Array), logs: [{ level,
   * message, fields }], clearLogs() }.
   */
  stubHost({ params: p = {}, lookup: l = {}, state: s = {}, stateLimit = Infinity } = {}) {
    const paramMap = new Map(pairs(p).map(([k, v]) => [String(k), String(v)]));
    const stateMap = new Map(pairs(s).map(([k, v]) => [String(k), typeof v === 'string' ? encodeUtf8(v) : u8(v)]));
    const logs = [];
    const stub = {
      inComponent: false,
      log: {
        log(level, message, fields) {
          logs.push({ level, message, fields: Object.fromEntries(fields) });
        },
      },
      params: {
        get: (name) => (paramMap.has(name) ? paramMap.get(name) : null),
        all: () => [...paramMap].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)),
      },
      lookup: {
        get(table, key) {
          const t = l[table];
          const row = t && Object.prototype.hasOwnProperty.call(t, key) ? t[key] : undefined;
          return row === undefined ? null : Object.entries(row).map(([c, v]) => [c, String(v)]);
        },
      },
      state: {
        get: (key) => (stateMap.has(key) ? Uint8Array.from(stateMap.get(key)) : null),
        set(key, value) {
          if (!stateMap.has(key) && stateMap.size >= stateLimit) throw `state is full (${stateLimit} keys)`;
          stateMap.set(key, Uint8Array.from(value));
        },
        remove: (key) => void stateMap.delete(key),
      },
    };
    globalThis[HOST] = stub;
    return {
      params: paramMap,
      lookup: l,
      state: stateMap,
      logs,
      clearLogs: () => void logs.splice(0),
    };
  },

  /**
   * The points of a WIT batch record, such as what a transform's export returns, as Points
   * (every kind and 64-bit value as the host will read it).
   */
  points(raw) {
    return (raw instanceof Batch ? raw : new Batch(raw)).points().map((v) => v.toPoint());
  },

  /** Removes the stubs. */
  reset() {
    delete globalThis[HOST];
  },

  /**
   * A window-result record as the host sends it: { rule, measurement, tags: {k: v},
   * field, windowStart, windowEnd, aggregates: { mean: 1.5 }, state }.
   */
  window({
    rule = 'rule',
    measurement = 'm',
    tags = {},
    field = 'value',
    windowStart = 0,
    windowEnd = 60_000_000_000,
    aggregates = {},
    state: st = 'ok',
  } = {}) {
    return {
      rule,
      series: {
        measurement,
        tags: pairs(tags)
          .map(([key, value]) => ({ key, value }))
          .sort((a, b) => compareUtf8(a.key, b.key)),
      },
      field,
      windowStart: Number(windowStart),
      windowEnd: Number(windowEnd),
      aggregates: pairs(aggregates).map(([name, value]) => ({ name, value })),
      state: st,
    };
  },
};
