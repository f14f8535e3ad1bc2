// A transform plugin: converts a Fahrenheit field to Celsius and tags each point with the
// data center of its host, from a lookup table.
//
// Parameters:
// - `from`: the Fahrenheit field (default `temp_f`), replaced by...
// - `to`: ...the Celsius field (default `temp_c`);
// - `table`: a lookup table keyed by host whose column `dc` becomes tag `dc` (optional;
//   `sluice plugin run --lookup hosts=hosts.csv`).
//
// Test: `node --test`. Build: `./build.sh` (writes dist/NAME.wasm).
import { Transform, exportTransform, lookup, params, log } from './sdk/sluice-sdk.js';

export class Celsius extends Transform {
  // Once per batch.
  constructor() {
    super();
    this.from = params.getString('from', 'temp_f');
    this.to = params.getString('to', 'temp_c');
    this.table = params.get('table');
    this.converted = 0;
  }

  // Once per point: return the points that replace it. null (or []) drops the point; the
  // view itself passes it through unchanged; an array returns several.
  transform(point) {
    const f = point.number(this.from);
    const host = point.tag('host');
    const row = this.table !== undefined && host !== undefined ? lookup.row(this.table, host) : undefined;
    if (f === undefined && row === undefined) return point; // nothing to do: pass through
    const out = point.toPoint(); // a mutable copy: tags, fields and their kinds
    if (f !== undefined) {
      out.removeField(this.from);
      out.setField(this.to, ((f - 32) * 5) / 9); // a plain number is a float field
      this.converted++;
    }
    if (row !== undefined && row.dc !== undefined) out.setTag('dc', row.dc);
    return out;
  }

  // Optional: override the batch method to look at the batch as a whole.
  transformBatch(batch) {
    const out = super.transformBatch(batch);
    if (this.converted > 0) log.debug('converted', { points: this.converted, of: batch.length });
    return out;
  }
}

// The world's export: the host calls `transform(batch)` once per batch.
export const transform = exportTransform(Celsius);
