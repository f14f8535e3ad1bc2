//! PromQL functions, with Prometheus 2.42's arithmetic: range functions slide a window
//! over each series' samples; instant functions map values or labels step by step.

use chrono::{Datelike, Timelike};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

use super::aggregation::quantile;
use super::eval::{Evaluator, Series, Value, VectorBuilder, Windows};
use super::{EvalError, Labels, METRIC_NAME, Millis};

/// Evaluates a function call.
pub(crate) fn eval(ev: &mut Evaluator<'_>, call: &Call) -> Result<Value, EvalError> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(AsRef::as_ref).collect();
    let arg = |i: usize| {
        args.get(i)
            .copied()
            .ok_or_else(|| EvalError::BadData(format!("{name}: missing argument {}", i + 1)))
    };
    if let Some((counter, per_second)) = match name {
        "rate" => Some((true, true)),
        "increase" => Some((true, false)),
        "delta" => Some((false, false)),
        _ => None,
    } {
        return ev.reduce_windows(arg(0)?, name, false, |w, samples| {
            rates(w, samples, counter, per_second)
        });
    }
    if let Some(f) = range_function(name) {
        return ev.reduce_windows(arg(0)?, name, name == "last_over_time", |w, samples| {
            over_windows(w, samples, |win, _, end| f(win, end, w.range))
        });
    }
    match name {
        "quantile_over_time" => {
            let q = ev.scalar(arg(0)?, name)?;
            ev.reduce_windows(arg(1)?, name, false, |w, samples| {
                over_windows(w, samples, |win, step, _| {
                    let mut values: Vec<f64> = win.iter().map(|s| s.1).collect();
                    (!values.is_empty()).then(|| quantile(q[step], &mut values))
                })
            })
        }
        "predict_linear" => {
            let t = ev.scalar(arg(1)?, name)?;
            ev.reduce_windows(arg(0)?, name, false, |w, samples| {
                over_windows(w, samples, |win, step, end| {
                    if win.len() < 2 {
                        return None;
                    }
                    let (slope, intercept) = linear_regression(win, end);
                    Some(intercept + slope * t[step])
                })
            })
        }
        "holt_winters" | "double_exponential_smoothing" => {
            let sf = ev.scalar(arg(1)?, name)?;
            let tf = ev.scalar(arg(2)?, name)?;
            for (factor, values) in [("smoothing", &sf), ("trend", &tf)] {
                if let Some(bad) = values.iter().find(|v| !(**v > 0.0 && **v < 1.0)) {
                    return Err(EvalError::Execution(format!(
                        "invalid {factor} factor. Expected: 0 < sf < 1, got: {bad}"
                    )));
                }
            }
            ev.reduce_windows(arg(0)?, name, false, |w, samples| {
                over_windows(w, samples, |win, step, _| {
                    holt_winters(win, sf[step], tf[step])
                })
            })
        }
        "absent_over_time" => {
            let w = ev.range_vector(arg(0)?, name)?;
            let mut present = vec![false; ev.steps()];
            for s in &w.series {
                w.slide(&s.samples, |step, win| present[step] |= !win.is_empty());
            }
            absent(&present, arg(0)?)
        }
        "absent" => {
            let v = ev.vector(arg(0)?, name)?;
            let present: Vec<bool> = (0..ev.steps())
                .map(|step| v.iter().any(|s| s.values[step].is_some()))
                .collect();
            absent(&present, arg(0)?)
        }
        "time" => Ok(Value::Scalar(
            (0..ev.steps())
                .map(|i| ev.grid.at(i) as f64 / 1000.0)
                .collect(),
        )),
        "pi" => Ok(Value::Scalar(vec![std::f64::consts::PI; ev.steps()])),
        "vector" => {
            let s = ev.scalar(arg(0)?, name)?;
            Ok(Value::Vector(vec![Series {
                labels: Labels::default(),
                values: s.into_iter().map(Some).collect(),
            }]))
        }
        "scalar" => {
            let v = ev.vector(arg(0)?, name)?;
            Ok(Value::Scalar(
                (0..ev.steps())
                    .map(|step| {
                        let mut present = v.iter().filter_map(|s| s.values[step]);
                        match (present.next(), present.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.vector(arg(0)?, name)?;
            // Only an instant query's order shows; a range query's series have no order.
            let key = |s: &Series| s.values.first().copied().flatten().unwrap_or(f64::NAN);
            v.sort_by(|a, b| {
                let (a, b) = (key(a), key(b));
                match (a.is_nan(), b.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if name == "sort" => a.total_cmp(&b),
                    _ => b.total_cmp(&a),
                }
            });
            Ok(Value::Vector(v))
        }
        "round" => {
            let v = ev.vector(arg(0)?, name)?;
            let to = match args.get(1) {
                Some(a) => ev.scalar(a, name)?,
                None => vec![1.0; ev.steps()],
            };
            map_values(ev.steps(), v, |x, step| {
                let inverse = 1.0 / to[step];
                Some((x * inverse + 0.5).floor() / inverse)
            })
        }
        "clamp" => {
            let v = ev.vector(arg(0)?, name)?;
            let min = ev.scalar(arg(1)?, name)?;
            let max = ev.scalar(arg(2)?, name)?;
            map_values(ev.steps(), v, |x, step| {
                (max[step] >= min[step]).then(|| x.min(max[step]).max(min[step]))
            })
        }
        "clamp_min" | "clamp_max" => {
            let v = ev.vector(arg(0)?, name)?;
            let bound = ev.scalar(arg(1)?, name)?;
            map_values(ev.steps(), v, |x, step| {
                Some(if name == "clamp_min" {
                    x.max(bound[step])
                } else {
                    x.min(bound[step])
                })
            })
        }
        "histogram_quantile" => {
            let q = ev.scalar(arg(0)?, name)?;
            let v = ev.vector(arg(1)?, name)?;
            histogram_quantile(ev.steps(), &q, v)
        }
        "label_replace" => {
            let v = ev.vector(arg(0)?, name)?;
            let [dst, replacement, src, regex] = [1, 2, 3, 4].map(|i| string_arg(arg(i), name, i));
            let (dst, replacement, src, regex) = (dst?, replacement?, src?, regex?);
            check_label_name(&dst, name)?;
            let regex = regex::Regex::new(&format!("^(?:{regex})$")).map_err(|e| {
                EvalError::BadData(format!(
                    "invalid regular expression in label_replace(): {e}"
                ))
            })?;
            relabel(ev.steps(), v, |labels| {
                let Some(caps) = regex.captures(labels.value(&src)) else {
                    return labels;
                };
                let mut value = String::new();
                caps.expand(&replacement, &mut value);
                let mut labels = labels;
                labels.set(&dst, value);
                labels
            })
        }
        "label_join" => {
            let v = ev.vector(arg(0)?, name)?;
            let dst = string_arg(arg(1), name, 1)?;
            let sep = string_arg(arg(2), name, 2)?;
            check_label_name(&dst, name)?;
            let sources = (3..args.len())
                .map(|i| string_arg(arg(i), name, i))
                .collect::<Result<Vec<_>, _>>()?;
            relabel(ev.steps(), v, |mut labels| {
                let joined: Vec<&str> = sources.iter().map(|s| labels.value(s)).collect();
                let joined = joined.join(&sep);
                labels.set(&dst, joined);
                labels
            })
        }
        "timestamp" => {
            // Of a selector, the time of each sample read; of anything else, the step's
            // (what Prometheus gives, too).
            let mut inner = arg(0)?;
            while let Expr::Paren(p) = inner {
                inner = &p.expr;
            }
            if let Expr::VectorSelector(vs) = inner {
                let v = ev.vector_selector(vs, true)?;
                return map_values(ev.steps(), v, |t, _| Some(t));
            }
            let v = ev.vector(inner, name)?;
            let grid = ev.grid;
            map_values(ev.steps(), v, |_, step| Some(grid.at(step) as f64 / 1000.0))
        }
        _ => {
            if let Some(f) = math_function(name) {
                let v = ev.vector(arg(0)?, name)?;
                return map_values(ev.steps(), v, |x, _| Some(f(x)));
            }
            if let Some(part) = date_function(name) {
                let v = match args.first() {
                    Some(a) => ev.vector(a, name)?,
                    None => vec![Series {
                        labels: Labels::default(),
                        values: (0..ev.steps())
                            .map(|i| Some(ev.grid.at(i) as f64 / 1000.0))
                            .collect(),
                    }],
                };
                return map_values(ev.steps(), v, |x, _| date_part(x, part));
            }
            Err(EvalError::unsupported(format!("function {name}()")))
        }
    }
}

/// A function of a window's samples, its end and the range's length.
type RangeFn = fn(&[(Millis, f64)], Millis, Millis) -> Option<f64>;

fn range_function(name: &str) -> Option<RangeFn> {
    Some(match name {
        "irate" => |w, _, _| instant_value(w, true),
        "idelta" => |w, _, _| instant_value(w, false),
        "deriv" => |w, _, _| (w.len() >= 2).then(|| linear_regression(w, w[0].0).0),
        "changes" => |w, _, _| {
            let changed = w
                .windows(2)
                .filter(|p| p[0].1 != p[1].1 && !(p[0].1.is_nan() && p[1].1.is_nan()))
                .count();
            (!w.is_empty()).then_some(changed as f64)
        },
        "resets" => |w, _, _| {
            let resets = w.windows(2).filter(|p| p[1].1 < p[0].1).count();
            (!w.is_empty()).then_some(resets as f64)
        },
        // The sum over the count while the sum is finite, as Prometheus does since 2.50:
        // the running mean of 2.42 (below, where the sum overflows or meets an infinity
        // or NaN) takes two divisions a sample, each waiting on the last, and was a sixth
        // of the time of a query of hourly means over 1,000 series (`perf`).
        "avg_over_time" => |w, _, _| {
            let sum: f64 = w.iter().map(|s| s.1).sum();
            if sum.is_finite() {
                return (!w.is_empty()).then(|| sum / w.len() as f64);
            }
            let mut it = w.iter().map(|s| s.1);
            let mut mean = it.next()?;
            for (i, v) in it.enumerate() {
                let count = (i + 2) as f64;
                if mean.is_infinite()
                    && ((v.is_infinite() && (mean > 0.0) == (v > 0.0)) || v.is_finite())
                {
                    continue;
                }
                mean += v / count - mean / count;
            }
            Some(mean)
        },
        "min_over_time" => |w, _, _| {
            let mut it = w.iter().map(|s| s.1);
            let first = it.next()?;
            Some(it.fold(first, |m, v| if v < m || m.is_nan() { v } else { m }))
        },
        "max_over_time" => |w, _, _| {
            let mut it = w.iter().map(|s| s.1);
            let first = it.next()?;
            Some(it.fold(first, |m, v| if v > m || m.is_nan() { v } else { m }))
        },
        "sum_over_time" => |w, _, _| (!w.is_empty()).then(|| w.iter().map(|s| s.1).sum()),
        "count_over_time" => |w, _, _| (!w.is_empty()).then_some(w.len() as f64),
        "last_over_time" => |w, _, _| w.last().map(|s| s.1),
        "present_over_time" => |w, _, _| (!w.is_empty()).then_some(1.0),
        "stddev_over_time" => |w, _, _| variance(w).map(f64::sqrt),
        "stdvar_over_time" => |w, _, _| variance(w),
        _ => return None,
    })
}

fn math_function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sqrt" => f64::sqrt,
        "sgn" => |x: f64| {
            if x == 0.0 || x.is_nan() {
                x
            } else {
                x.signum()
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        _ => return None,
    })
}

/// Parts of a date the date functions read.
#[derive(Debug, Clone, Copy)]
enum DatePart {
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    DaysInMonth,
    Hour,
    Minute,
    Month,
    Year,
}

fn date_function(name: &str) -> Option<DatePart> {
    Some(match name {
        "day_of_month" => DatePart::DayOfMonth,
        "day_of_week" => DatePart::DayOfWeek,
        "day_of_year" => DatePart::DayOfYear,
        "days_in_month" => DatePart::DaysInMonth,
        "hour" => DatePart::Hour,
        "minute" => DatePart::Minute,
        "month" => DatePart::Month,
        "year" => DatePart::Year,
        _ => return None,
    })
}

/// `part` of the UTC date `secs` seconds after the epoch; none past chrono's range.
fn date_part(secs: f64, part: DatePart) -> Option<f64> {
    if !secs.is_finite() {
        return Some(f64::NAN);
    }
    let t = chrono::DateTime::from_timestamp(secs as i64, 0)?;
    Some(f64::from(match part {
        DatePart::DayOfMonth => t.day(),
        DatePart::DayOfWeek => t.weekday().num_days_from_sunday(),
        DatePart::DayOfYear => t.ordinal(),
        DatePart::DaysInMonth => {
            let first = t.date_naive().with_day(1)?;
            let next = first.checked_add_months(chrono::Months::new(1))?;
            u32::try_from((next - first).num_days()).ok()?
        }
        DatePart::Hour => t.hour(),
        DatePart::Minute => t.minute(),
        DatePart::Month => t.month(),
        DatePart::Year => return Some(f64::from(t.year())),
    }))
}

/// The string literal argument `i`.
fn string_arg(expr: Result<&Expr, EvalError>, name: &str, i: usize) -> Result<String, EvalError> {
    match expr? {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => Err(EvalError::BadData(format!(
            "{name}: argument {} must be a string",
            i + 1
        ))),
    }
}

fn check_label_name(label: &str, name: &str) -> Result<(), EvalError> {
    let mut chars = label.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(EvalError::BadData(format!(
            "invalid destination label name in {name}(): {label}"
        )))
    }
}

/// `f(window, step, end)` of each window of one series' `samples`.
fn over_windows(
    w: &Windows,
    samples: &[(Millis, f64)],
    f: impl Fn(&[(Millis, f64)], usize, Millis) -> Option<f64>,
) -> Vec<Option<f64>> {
    let mut values = vec![None; w.ends.len()];
    w.slide(samples, |step, win| {
        values[step] = f(win, step, w.ends[step])
    });
    values
}

/// `f` of each value (with its step); drops the metric name.
fn map_values(
    steps: usize,
    v: Vec<Series>,
    f: impl Fn(f64, usize) -> Option<f64>,
) -> Result<Value, EvalError> {
    let mut out = VectorBuilder::new(steps);
    for s in v {
        let values = s
            .values
            .iter()
            .enumerate()
            .map(|(step, x)| f((*x)?, step))
            .collect();
        out.add(s.labels.without_name(), values)?;
    }
    Ok(Value::Vector(out.finish()))
}

/// New labels for each series, values kept.
fn relabel(steps: usize, v: Vec<Series>, f: impl Fn(Labels) -> Labels) -> Result<Value, EvalError> {
    let mut out = VectorBuilder::new(steps);
    for s in v {
        out.add(f(s.labels), s.values)?;
    }
    Ok(Value::Vector(out.finish()))
}

/// 1 where nothing is present, labelled with the selector's equality matchers.
fn absent(present: &[bool], arg: &Expr) -> Result<Value, EvalError> {
    let vs = match arg {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    let mut labels = Labels::default();
    if let Some(vs) = vs {
        let mut ambiguous = Vec::new();
        for m in &vs.matchers.matchers {
            if m.name == METRIC_NAME {
                continue;
            }
            if m.op == MatchOp::Equal && labels.get(&m.name).is_none() {
                labels.set(&m.name, m.value.clone());
            } else {
                ambiguous.push(m.name.clone());
            }
        }
        labels = labels.drop(&ambiguous);
    }
    let values: Vec<Option<f64>> = present.iter().map(|p| (!p).then_some(1.0)).collect();
    let mut out = VectorBuilder::new(present.len());
    out.add(labels, values)?;
    Ok(Value::Vector(out.finish()))
}

/// `rate`, `increase` and `delta` of one series at each step. A counter's resets are
/// found once per series, not once per window: scanning every window was a fifth of a
/// dashboard query's time.
fn rates(
    w: &Windows,
    samples: &[(Millis, f64)],
    counter: bool,
    per_second: bool,
) -> Vec<Option<f64>> {
    // A first sample below zero counts as a reset from 0 (which adds nothing). Counted
    // first, in a loop without branches (0.43 against 1.76 ns a sample collecting,
    // throwaway micro-benchmark), since most series have none.
    let drops = |w: &&[(Millis, f64)]| w[1].1 < w[0].1;
    let resets: Vec<usize> = if counter && samples.windows(2).filter(drops).count() > 0 {
        samples
            .windows(2)
            .enumerate()
            .filter(|(_, w)| drops(w))
            .map(|(j, _)| j + 1)
            .collect()
    } else {
        Vec::new()
    };
    let mut values = vec![None; w.ends.len()];
    let mut from = 0;
    let mut extrapolation = Extrapolation::new(w.range, counter, per_second);
    w.slide_indices(samples, |step, window| {
        // The resets within the window: between two of its samples.
        while from < resets.len() && resets[from] <= window.start {
            from += 1;
        }
        let until = window.end;
        let within = resets[from..]
            .iter()
            .take_while(|&&j| j < until)
            .map(|&j| samples[j - 1].1);
        values[step] = extrapolation.rate(&samples[window], within, w.ends[step]);
    });
    values
}

/// `rate`, `increase` or `delta` of windows of one range, Prometheus' `extrapolatedRate`:
/// the change over a window, plus for counters the value before each reset, extrapolated
/// towards the window's edges.
///
/// What depends on a window's times only (where its first and last samples sit, how many
/// it has) is kept from the window before: samples at a steady interval give every window
/// the same, and its four divisions were most of a dashboard's `rate` (a third of the
/// query under perf). The arithmetic is Prometheus', in its order, so answers stay the
/// same to the bit.
struct Extrapolation {
    range: Millis,
    /// The range in seconds, what a rate divides by.
    range_seconds: f64,
    counter: bool,
    per_second: bool,
    /// The last window's times (to its start, to its end, between first and last), its
    /// count of samples, and what they gave.
    last: Option<([Millis; 3], usize, Span)>,
}

/// The times' part of extrapolating a window, in seconds.
#[derive(Clone, Copy)]
struct Span {
    to_start: f64,
    to_end: f64,
    sampled: f64,
    average: f64,
    /// How much the change is scaled when nothing moves the start: the extrapolated
    /// interval over the sampled one.
    factor: f64,
}

impl Span {
    fn of([to_start, to_end, sampled]: [Millis; 3], n: usize) -> Self {
        let sampled = sampled as f64 / 1000.0;
        let mut span = Span {
            to_start: to_start as f64 / 1000.0,
            to_end: to_end as f64 / 1000.0,
            sampled,
            average: sampled / (n - 1) as f64,
            factor: 0.0,
        };
        span.factor = span.factor_from(span.to_start);
        span
    }

    /// Whether a counter at `first` that grew by `change` (both above zero) would have
    /// been zero before the window's start, so that its zero moves nothing: decided
    /// without dividing when the answer is clear. A counter far from zero reaches it long
    /// before the window, and waiting on the division was a third of `rate` under perf.
    /// Products of normal numbers carry less than 1e-15 of rounding, so the margin of 1e-9
    /// never says so of a window Prometheus' arithmetic would move.
    fn zero_before_start(&self, first: f64, change: f64) -> bool {
        let start = self.to_start * change;
        self.to_start == 0.0 || (start.is_normal() && self.sampled * first > start * (1.0 + 1e-9))
    }

    /// The extrapolated interval over the sampled one, extrapolating at most `to_start`
    /// back.
    fn factor_from(&self, to_start: f64) -> f64 {
        let threshold = self.average * 1.1;
        let mut interval = self.sampled;
        interval += if to_start < threshold {
            to_start
        } else {
            self.average / 2.0
        };
        interval += if self.to_end < threshold {
            self.to_end
        } else {
            self.average / 2.0
        };
        interval / self.sampled
    }
}

impl Extrapolation {
    fn new(range: Millis, counter: bool, per_second: bool) -> Self {
        Self {
            range,
            range_seconds: range as f64 / 1000.0,
            counter,
            per_second,
            last: None,
        }
    }

    /// The window `w` ending at `end`, with `resets` the values before its counter resets;
    /// none for fewer than two samples.
    fn rate(
        &mut self,
        w: &[(Millis, f64)],
        resets: impl Iterator<Item = f64>,
        end: Millis,
    ) -> Option<f64> {
        let (first, last) = (*w.first()?, *w.last()?);
        if w.len() < 2 {
            return None;
        }
        let mut result = last.1 - first.1;
        for before in resets {
            result += before;
        }
        let start = end.saturating_sub(self.range);
        let times = [first.0 - start, end - last.0, last.0 - first.0];
        // Compared a time at a time: comparing the arrays read `times` back from the stack
        // in one 16-byte load just after three 8-byte stores, which can't be forwarded, and
        // that stall was half of this function under perf.
        let span = match self.last {
            Some(([a, b, c], n, span))
                if a == times[0] && b == times[1] && c == times[2] && n == w.len() =>
            {
                span
            }
            _ => {
                let span = Span::of(times, w.len());
                self.last = Some((times, w.len(), span));
                span
            }
        };
        let mut factor = span.factor;
        // A counter can't have been below zero: extrapolate no further back than that.
        if self.counter
            && result > 0.0
            && first.1 >= 0.0
            && !span.zero_before_start(first.1, result)
        {
            let to_zero = span.sampled * (first.1 / result);
            if to_zero < span.to_start {
                factor = span.factor_from(to_zero);
            }
        }
        result *= factor;
        if self.per_second {
            result /= self.range_seconds;
        }
        Some(result)
    }
}

/// `irate` and `idelta`: from the last two samples.
fn instant_value(w: &[(Millis, f64)], rate: bool) -> Option<f64> {
    let [.., previous, last] = w else {
        return None;
    };
    let change = if rate && last.1 < previous.1 {
        last.1
    } else {
        last.1 - previous.1
    };
    let interval = last.0 - previous.0;
    if interval == 0 {
        return None;
    }
    Some(if rate {
        change / (interval as f64 / 1000.0)
    } else {
        change
    })
}

/// Least-squares slope and intercept (at `intercept_at`) of the samples, in seconds.
fn linear_regression(w: &[(Millis, f64)], intercept_at: Millis) -> (f64, f64) {
    let first = w[0].1;
    if w.iter().all(|s| s.1 == first) {
        return if first.is_infinite() {
            (f64::NAN, f64::NAN)
        } else {
            (0.0, first)
        };
    }
    let (mut n, mut sum_x, mut sum_y, mut sum_xy, mut sum_x2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(t, v) in w {
        let x = (t - intercept_at) as f64 / 1000.0;
        n += 1.0;
        sum_x += x;
        sum_y += v;
        sum_xy += x * v;
        sum_x2 += x * x;
    }
    let cov = sum_xy - sum_x * sum_y / n;
    let var = sum_x2 - sum_x * sum_x / n;
    let slope = cov / var;
    (slope, sum_y / n - slope * sum_x / n)
}

/// Population variance (Welford).
fn variance(w: &[(Millis, f64)]) -> Option<f64> {
    if w.is_empty() {
        return None;
    }
    let (mut count, mut mean, mut aux) = (0.0, 0.0, 0.0);
    for &(_, v) in w {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        aux += delta * (v - mean);
    }
    Some(aux / count)
}

/// Double exponential smoothing of the window.
fn holt_winters(w: &[(Millis, f64)], sf: f64, tf: f64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (mut s0, mut s1, mut b) = (0.0, w[0].1, w[1].1 - w[0].1);
    for (i, &(_, v)) in w.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * v + (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = next;
    }
    Some(s1)
}

/// `histogram_quantile` over classic buckets: series grouped by their labels but `le`.
fn histogram_quantile(steps: usize, q: &[f64], v: Vec<Series>) -> Result<Value, EvalError> {
    let le = ["le".to_owned()];
    let mut out = VectorBuilder::new(steps);
    let mut groups: Vec<(usize, Vec<(f64, usize)>)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for (i, s) in v.iter().enumerate() {
        // A series without a numeric `le` is no bucket.
        let Some(bound) = s.labels.get("le").and_then(parse_bound) else {
            continue;
        };
        let labels = s.labels.drop(&le).without_name();
        let g = *index.entry(labels.clone()).or_insert_with(|| {
            groups.push((out.slot(labels), Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push((bound, i));
    }
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for (slot, members) in &groups {
        for (step, &q) in q.iter().enumerate() {
            buckets.clear();
            buckets.extend(
                members
                    .iter()
                    .filter_map(|&(bound, i)| Some((bound, v[i].values[step]?))),
            );
            if !buckets.is_empty() {
                out.put(*slot, step, bucket_quantile(q, &mut buckets))?;
            }
        }
    }
    Ok(Value::Vector(out.finish()))
}

/// An `le` value as Go's `ParseFloat` reads it (`+Inf` among them).
fn parse_bound(raw: &str) -> Option<f64> {
    match raw {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => raw.parse().ok(),
    }
}

/// The `q` quantile of cumulative buckets (upper bound, count): Prometheus'
/// `bucketQuantile`.
fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets of one bound (several series) add up.
    buckets.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 += later.1;
        }
        same
    });
    // Counts never fall as bounds rise.
    let mut max = f64::NEG_INFINITY;
    for b in buckets.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = buckets.len() - 1;
    let b = buckets[..n].partition_point(|b| b.1 < rank);
    if b == n {
        return buckets[n - 1].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_extrapolates_to_the_window_edges_and_adds_back_resets() {
        // Samples every 15 s over a 60 s window ending at 60 s: 0..45 s, a reset at 30 s.
        let w = [(0, 0.0), (15_000, 10.0), (30_000, 2.0), (45_000, 12.0)];
        let resets = || [10.0].into_iter();
        // Increase 12 + 10 (the reset) over 45 s sampled; the start is on the edge, the end
        // 15 s away (< 1.1 × 15 s), so 60 s in all.
        let increase = Extrapolation::new(60_000, true, false)
            .rate(&w, resets(), 60_000)
            .expect("2 samples");
        assert!((increase - 22.0 * 60.0 / 45.0).abs() < 1e-9, "{increase}");
        let rate = Extrapolation::new(60_000, true, true)
            .rate(&w, resets(), 60_000)
            .expect("2 samples");
        assert!((rate - increase / 60.0).abs() < 1e-12);
        let none = std::iter::empty();
        assert_eq!(
            Extrapolation::new(60_000, true, true).rate(&w[..1], none, 60_000),
            None
        );
        // Through the windows: the reset at 30 s is inside the window ending at 60 s, but
        // not inside one that starts at the reset's sample.
        let frame = Windows {
            series: Vec::new(),
            range: 60_000,
            ends: vec![60_000, 90_000],
        };
        let values = rates(&frame, &w, true, false);
        let at_60 = values[0].expect("a value at 60 s");
        assert!((at_60 - increase).abs() < 1e-9, "{at_60}");
        // [30 s, 90 s] holds 2 and 12: no reset inside; 10 over 15 s sampled, the start on
        // the edge, the end 45 s away (past 1.1 × 15 s: half a gap), so over 22.5 s.
        let at_90 = values[1].expect("a value at 90 s");
        assert!((at_90 - 10.0 * 22.5 / 15.0).abs() < 1e-9, "{at_90}");
    }

    proptest::proptest! {
        /// Where the division is skipped, Prometheus' arithmetic would not have moved the
        /// start either: its zero is not before the start. Near the edge included.
        #[test]
        fn a_counters_zero_is_placed_as_dividing_would(
            sampled_ms in 1i64..4_000_000,
            to_start_ms in 0i64..400_000,
            first in proptest::prop_oneof![0.0..1e3, 0.0..1e18, 0.0..1e-300],
            change in proptest::prop_oneof![1e-320..1e-300, 1e-9..1e3, 1.0..1e18],
            edge in proptest::bool::ANY,
        ) {
            let span = Span::of([to_start_ms, 0, sampled_ms], 10);
            // Half the cases right at the edge: the change that puts zero at the start.
            let change = if edge && first > 0.0 && span.to_start > 0.0 {
                span.sampled * first / span.to_start
            } else {
                change
            };
            proptest::prop_assume!(change > 0.0);
            let to_zero = span.sampled * (first / change);
            if span.zero_before_start(first, change) {
                proptest::prop_assert!(to_zero >= span.to_start || to_zero.is_nan(), "{to_zero} < {}", span.to_start);
            } else if (span.to_start * change).is_normal() {
                // And it does skip the division when zero is clearly before the start.
                proptest::prop_assert!(to_zero <= span.to_start * (1.0 + 1e-6));
            }
        }
    }

    #[test]
    fn bucket_quantile_interpolates_within_the_bucket_of_the_rank() {
        let mut b = vec![(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (f64::INFINITY, 40.0)];
        // Rank 20 of 40 is halfway through the (0.1, 0.5] bucket.
        assert!((bucket_quantile(0.5, &mut b) - 0.3).abs() < 1e-12);
        let mut no_inf = vec![(0.1, 10.0), (0.5, 30.0)];
        assert!(bucket_quantile(0.5, &mut no_inf).is_nan());
        assert_eq!(bucket_quantile(2.0, &mut b), f64::INFINITY);
    }

    #[test]
    fn date_parts_are_utc() {
        // 2024-02-29T13:45:00Z, a Thursday in a leap year.
        let t = 1_709_214_300.0;
        assert_eq!(date_part(t, DatePart::DaysInMonth), Some(29.0));
        assert_eq!(date_part(t, DatePart::DayOfWeek), Some(4.0));
        assert_eq!(date_part(t, DatePart::Hour), Some(13.0));
        assert_eq!(date_part(t, DatePart::Minute), Some(45.0));
        assert_eq!(date_part(t, DatePart::Year), Some(2024.0));
        assert_eq!(date_part(t, DatePart::DayOfYear), Some(60.0));
    }
}
