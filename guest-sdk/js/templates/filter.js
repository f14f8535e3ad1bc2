// A filter plugin: drops points whose numeric field `value` is above parameter `max`.
//
// Parameters (pipeline stage config, or `--param` of `sluice plugin run`):
// - `max`: the largest value kept (default 100);
// - `field`: the field to look at (default `value`).
// Points without that field, or where it is not a number, are kept.
//
// Test: `node --test`. Build: `./build.sh` (writes dist/NAME.wasm).
import { Filter, exportFilter, params } from './sdk/sluice-sdk.js';

export class MaxValue extends Filter {
  // Runs once per batch: read and check parameters here. A bad one throws a PluginError
  // naming it (`parameter \`max\` = \`abc\`: invalid float literal`), failing the batch.
  constructor() {
    super();
    this.max = params.getFloat('max', 100);
    this.field = params.getString('field', 'value');
  }

  // Runs once per point: true keeps it. `point` is a view into the batch: reading it decodes
  // only what is read. number() is the field as a Number for float, integer and unsigned
  // fields, undefined otherwise.
  keep(point) {
    const v = point.number(this.field);
    return v === undefined || v <= this.max;
  }
}

// The world's export: the host calls `filter(batch)` once per batch.
export const filter = exportFilter(MaxValue);
