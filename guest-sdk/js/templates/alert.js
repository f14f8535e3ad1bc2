// An alert plugin: fires when an aggregate of a window crosses a limit, and resolves when it
// falls back below it.
//
// Parameters:
// - `above`: the limit (required);
// - `aggregate`: which aggregate of the window to compare (default `max`).
//
// The host hands each closed window with the state it last recorded for the rule and series
// (`window.state`: 'ok', 'warning' or 'critical'); return an alert only when that state
// changes. Keep no state of your own: the host does.
//
// Test: `node --test`. Build: `./build.sh` (writes dist/NAME.wasm).
import { Alert, PluginError, exportAlert, formatFloat, params } from './sdk/sluice-sdk.js';

export class Above extends Alert {
  // Once per batch.
  constructor() {
    super();
    this.above = params.getFloat('above');
    if (this.above === undefined) throw new PluginError('set parameter `above`');
    this.aggregate = params.getString('aggregate', 'max');
  }

  // Once per window: null (no change), an alert, or an array of alerts.
  evaluate(window) {
    const value = window.aggregate(this.aggregate);
    if (value === undefined) return null; // the rule doesn't compute it
    const next = value > this.above ? 'critical' : 'ok';
    if (next === window.state) return null;
    const tags = window.series.tags.map((t) => `${t.key}=${t.value}`).join(' ');
    const verb = next === 'ok' ? 'back to' : 'is';
    return window.alert(
      next,
      value,
      `${window.series.measurement} ${window.field} ${this.aggregate} ${verb} ${formatFloat(value)} ` +
        `(limit ${formatFloat(this.above)}) ${tags}`.trimEnd(),
    );
  }
}

// The world's export: the host calls `evaluate(windows)` once per batch of windows.
export const evaluate = exportAlert(Above);
