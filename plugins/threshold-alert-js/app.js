// Threshold alert with hysteresis: the twin of plugins/threshold-alert.
//
// Parameters: `aggregate` (default `mean`), `warn_above`, `crit_above` (at least one),
// `hysteresis` (absolute, default 0). Enters critical at value >= crit_above, warning at
// value >= warn_above; leaves critical only below crit_above - hysteresis, and warning only
// below warn_above - hysteresis. An alert is emitted only when the state changes; the
// previous state comes from the host (`window.state`), so it survives plugin swaps. A
// window without the aggregate raises nothing.
//
// Messages read `cpu usage_user mean 93.2 >= 90 (critical) host=a`; a resolution reads
// `... 70 < 75 (resolved) ...`, with the threshold in force (lowered by the hysteresis).
import { Alert, PluginError, exportAlert, formatFloat, params } from '../../guest-sdk/js/sluice-sdk.js';

const STATE_NAMES = { ok: 'resolved', warning: 'warning', critical: 'critical' };

export class Threshold extends Alert {
  constructor() {
    super();
    this.warn = params.getFloat('warn_above');
    this.crit = params.getFloat('crit_above');
    if (this.warn === undefined && this.crit === undefined) {
      throw new PluginError('set `warn_above`, `crit_above` or both');
    }
    this.hysteresis = params.getFloat('hysteresis', 0);
    if (Number.isNaN(this.hysteresis) || this.hysteresis < 0) {
      throw new PluginError(`parameter \`hysteresis\` = \`${formatFloat(this.hysteresis)}\`: must be 0 or more`);
    }
    this.aggregate = params.getOr('aggregate', 'mean');
  }

  evaluate(window) {
    const value = window.aggregate(this.aggregate);
    if (value === undefined) return null;
    // While a state holds, its threshold is lowered by the hysteresis, so a value hovering
    // at the threshold doesn't flap.
    const crit = this.crit === undefined ? undefined : window.state === 'critical' ? this.crit - this.hysteresis : this.crit;
    const warn = this.warn === undefined ? undefined : window.state === 'ok' ? this.warn : this.warn - this.hysteresis;
    let next;
    let limit;
    let op;
    if (crit !== undefined && value >= crit) [next, limit, op] = ['critical', crit, '>='];
    else if (warn !== undefined && value >= warn) [next, limit, op] = ['warning', warn, '>='];
    // Resolved: below the lowest threshold in force (the warning one if set).
    else [next, limit, op] = ['ok', warn !== undefined ? warn : crit, '<'];
    if (next === window.state) return null;
    let message =
      `${window.series.measurement} ${window.field} ${this.aggregate} ` +
      `${formatFloat(value)} ${op} ${formatFloat(limit)} (${STATE_NAMES[next]})`;
    for (const t of window.series.tags) message += ` ${t.key}=${t.value}`;
    // { state, value, message }: the SDK names the window by its index, and the host gives
    // the alert that window's rule, series, field and bounds.
    return { state: next, value, message };
  }
}

export const evaluate = exportAlert(Threshold);
