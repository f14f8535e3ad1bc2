//! Binary operators: arithmetic, comparison (filtering, or 0/1 with `bool`) and set
//! operators, with Prometheus' vector matching (`on`, `ignoring`, `group_left`,
//! `group_right`), matched step by step.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{Evaluator, Series, Value, VectorBuilder};
use super::{EvalError, Labels, METRIC_NAME};

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(token: &str) -> Result<Self, EvalError> {
        Ok(match token {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => return Err(EvalError::unsupported(format!("binary operator `{other}`"))),
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }

    /// `l op r`, and whether a comparison holds (always, for arithmetic). A comparison's
    /// value is its left operand.
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (l, true),
        }
    }
}

/// Evaluates a binary expression.
pub(crate) fn eval(ev: &mut Evaluator<'_>, b: &BinaryExpr) -> Result<Value, EvalError> {
    let op = Op::parse(&b.op.to_string())?;
    let lhs = ev.eval(&b.lhs)?;
    let rhs = ev.eval(&b.rhs)?;
    let bool_ = b.return_bool();
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(
            l.into_iter()
                .zip(r)
                .map(|(l, r)| {
                    let (v, keep) = op.apply(l, r);
                    if op.is_comparison() {
                        f64::from(u8::from(keep))
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Value::Vector(v), Value::Scalar(s)) => vector_scalar(v, &s, op, false, bool_),
        (Value::Scalar(s), Value::Vector(v)) => vector_scalar(v, &s, op, true, bool_),
        (Value::Vector(l), Value::Vector(r)) => {
            let matching = Matching::of(b)?;
            if op.is_set() {
                set_op(ev.steps(), l, r, op, &matching)
            } else {
                vector_vector(ev.steps(), l, r, op, bool_, &matching)
            }
        }
        (l, r) => Err(EvalError::BadData(format!(
            "binary expression must contain only scalar and instant vector types, got {} {op:?} {}",
            l.kind(),
            r.kind()
        ))),
    }
}

/// A vector and a scalar (`swapped`: the scalar on the left).
fn vector_scalar(
    vector: Vec<Series>,
    scalar: &[f64],
    op: Op,
    swapped: bool,
    bool_: bool,
) -> Result<Value, EvalError> {
    let drop_name = !op.is_comparison() || bool_;
    let mut out = VectorBuilder::new(scalar.len());
    for s in vector {
        let values = s
            .values
            .iter()
            .zip(scalar)
            .map(|(v, &k)| {
                let x = (*v)?;
                let (l, r) = if swapped { (k, x) } else { (x, k) };
                let (value, keep) = op.apply(l, r);
                // A comparison keeps the vector's value, on either side.
                let value = if op.is_comparison() { x } else { value };
                if bool_ {
                    Some(f64::from(u8::from(keep)))
                } else {
                    keep.then_some(value)
                }
            })
            .collect();
        let labels = if drop_name {
            s.labels.without_name()
        } else {
            s.labels
        };
        out.add(labels, values)?;
    }
    Ok(Value::Vector(out.finish()))
}

/// How two vectors' series match.
struct Matching {
    /// `on(...)`: only these labels match; otherwise every label but `ignoring`'s and the name.
    on: Option<Vec<String>>,
    ignoring: Vec<String>,
    card: VectorMatchCardinality,
}

impl Matching {
    fn of(b: &BinaryExpr) -> Result<Self, EvalError> {
        let (on, ignoring, card) = match &b.modifier {
            None => (None, Vec::new(), VectorMatchCardinality::OneToOne),
            Some(m) => {
                let (on, ignoring) = match &m.matching {
                    Some(LabelModifier::Include(l)) => (Some(l.labels.clone()), Vec::new()),
                    Some(LabelModifier::Exclude(l)) => (None, l.labels.clone()),
                    None => (None, Vec::new()),
                };
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return Err(EvalError::unsupported("`fill` modifiers"));
                }
                (on, ignoring, m.card.clone())
            }
        };
        Ok(Self { on, ignoring, card })
    }

    /// What series are matched by.
    fn signature(&self, labels: &Labels) -> Labels {
        match &self.on {
            Some(on) => labels.keep(on),
            None => labels.drop(&self.ignoring).without_name(),
        }
    }

    /// The labels `group_left`/`group_right` copy from the "one" side.
    fn include(&self) -> &[String] {
        self.card
            .labels()
            .map(|l| l.labels.as_slice())
            .unwrap_or_default()
    }
}

/// Numbers each series' signature, so steps compare integers.
fn signatures(
    matching: &Matching,
    series: &[Series],
    ids: &mut HashMap<Labels, usize>,
) -> Vec<usize> {
    series
        .iter()
        .map(|s| {
            let next = ids.len();
            *ids.entry(matching.signature(&s.labels)).or_insert(next)
        })
        .collect()
}

/// `and`, `or`, `unless`.
fn set_op(
    steps: usize,
    lhs: Vec<Series>,
    rhs: Vec<Series>,
    op: Op,
    matching: &Matching,
) -> Result<Value, EvalError> {
    let mut ids = HashMap::new();
    let left = signatures(matching, &lhs, &mut ids);
    let right = signatures(matching, &rhs, &mut ids);
    let mut out = VectorBuilder::new(steps);
    let lslots: Vec<usize> = lhs.iter().map(|s| out.slot(s.labels.clone())).collect();
    let rslots: Vec<usize> = if op == Op::Or {
        rhs.iter().map(|s| out.slot(s.labels.clone())).collect()
    } else {
        Vec::new()
    };
    let present = |series: &[Series], sigs: &[usize], step: usize| -> HashSet<usize> {
        series
            .iter()
            .zip(sigs)
            .filter(|(s, _)| s.values[step].is_some())
            .map(|(_, sig)| *sig)
            .collect()
    };
    for step in 0..steps {
        let other = match op {
            Op::Or => present(&lhs, &left, step),
            _ => present(&rhs, &right, step),
        };
        for (i, s) in lhs.iter().enumerate() {
            let Some(v) = s.values[step] else { continue };
            let keep = match op {
                Op::And => other.contains(&left[i]),
                Op::Unless => !other.contains(&left[i]),
                _ => true,
            };
            if keep {
                out.put(lslots[i], step, v)?;
            }
        }
        if op == Op::Or {
            for (i, s) in rhs.iter().enumerate() {
                if let Some(v) = s.values[step]
                    && !other.contains(&right[i])
                {
                    out.put(rslots[i], step, v)?;
                }
            }
        }
    }
    Ok(Value::Vector(out.finish()))
}

/// Arithmetic and comparisons between two vectors.
fn vector_vector(
    steps: usize,
    lhs: Vec<Series>,
    rhs: Vec<Series>,
    op: Op,
    bool_: bool,
    matching: &Matching,
) -> Result<Value, EvalError> {
    if matching.card == VectorMatchCardinality::ManyToMany {
        return Err(EvalError::BadData(
            "many-to-many matching is only allowed for set operators".into(),
        ));
    }
    // The "one" side is on the right; `group_right` swaps the sides, and back for values.
    let swapped = matches!(matching.card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let mut ids = HashMap::new();
    let many_sigs = signatures(matching, &many, &mut ids);
    let one_sigs = signatures(matching, &one, &mut ids);
    let one_to_one = matching.card == VectorMatchCardinality::OneToOne;
    let mut out = VectorBuilder::new(steps);
    let mut slots: HashMap<(usize, usize), usize> = HashMap::new();
    let mut ones: HashMap<usize, usize> = HashMap::new();
    let mut matched: HashMap<usize, HashSet<usize>> = HashMap::new();
    for step in 0..steps {
        ones.clear();
        for (j, s) in one.iter().enumerate() {
            if s.values[step].is_none() {
                continue;
            }
            if let Some(&other) = ones.get(&one_sigs[j]) {
                let side = if swapped { "left" } else { "right" };
                return Err(EvalError::Execution(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    matching.signature(&s.labels),
                    s.labels,
                    one[other].labels
                )));
            }
            ones.insert(one_sigs[j], j);
        }
        matched.clear();
        for (i, s) in many.iter().enumerate() {
            let Some(mv) = s.values[step] else { continue };
            let Some(&j) = ones.get(&many_sigs[i]) else {
                continue;
            };
            let Some(ov) = one[j].values[step] else {
                continue;
            };
            let (l, r) = if swapped { (ov, mv) } else { (mv, ov) };
            let (value, keep) = op.apply(l, r);
            let value = if bool_ {
                f64::from(u8::from(keep))
            } else if keep {
                value
            } else {
                continue;
            };
            let slot = *slots.entry((i, j)).or_insert_with(|| {
                out.slot(result_labels(
                    &s.labels,
                    &one[j].labels,
                    op,
                    bool_,
                    matching,
                    one_to_one,
                ))
            });
            let inserted = matched.entry(many_sigs[i]).or_default();
            if one_to_one && !inserted.is_empty() {
                return Err(EvalError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
            if !inserted.insert(slot) {
                return Err(EvalError::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                        .into(),
                ));
            }
            out.put(slot, step, value)?;
        }
    }
    Ok(Value::Vector(out.finish()))
}

/// The labels of a result: the "many" side's, without the name for arithmetic (and
/// `bool`), reduced to the matching labels one-to-one, plus `group_x`'s from the "one" side.
fn result_labels(
    many: &Labels,
    one: &Labels,
    op: Op,
    bool_: bool,
    matching: &Matching,
    one_to_one: bool,
) -> Labels {
    let mut labels = many.clone();
    if !op.is_comparison() || bool_ {
        labels.remove(METRIC_NAME);
    }
    if one_to_one {
        labels = match &matching.on {
            Some(on) => labels.keep(on),
            None => labels.drop(&matching.ignoring),
        };
    }
    for name in matching.include() {
        labels.set(name, one.value(name).to_owned());
    }
    labels
}
