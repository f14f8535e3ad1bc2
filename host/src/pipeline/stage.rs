//! A filter or transform stage: runs each batch through the serving version of its plugin;
//! a failed batch becomes a dead letter and yields no points.

use std::sync::Arc;

use tracing::info_span;

use super::dead_letter::{DeadLetter, DeadLetterError, DeadLetterLog};
use crate::columns::Columns;
use crate::lineproto::format_point;
use crate::plugin::{CallEnv, PluginId, PluginSlot, StageState, World};
use crate::point::Point;
use crate::tenant::TenantId;

/// A stage can't be built.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The plugin implements another world than the stage runs.
    #[error(
        "stage `{stage}`: plugin `{plugin}` implements world `{world}`; this stage needs {wanted}"
    )]
    WrongWorld {
        /// Stage name.
        stage: String,
        /// Plugin name.
        plugin: String,
        /// Its world.
        world: World,
        /// What the stage needs.
        wanted: &'static str,
    },
}

/// Fails unless `slot`'s plugin implements one of `worlds` (a swap never changes it).
pub(super) fn require_world(
    stage: &str,
    slot: &PluginSlot,
    worlds: &[World],
    wanted: &'static str,
) -> Result<(), StageError> {
    let world = slot.current().world();
    if worlds.contains(&world) {
        return Ok(());
    }
    Err(StageError::WrongWorld {
        stage: stage.to_owned(),
        plugin: slot.name().to_owned(),
        world,
        wanted,
    })
}

/// What a stage did with one batch.
#[derive(Debug)]
pub struct StageOutput {
    /// The plugin version that handled the batch.
    pub plugin: PluginId,
    /// The points out, or none when the batch was dead-lettered.
    pub points: Option<Vec<Point>>,
    /// The columns of the points out, when the stage kept them (a filter does; a
    /// transform's points are encoded again by the next stage that needs them).
    pub columns: Option<Columns>,
}

/// One plugin stage of a pipeline.
pub struct Stage {
    tenant: TenantId,
    name: String,
    slot: Arc<PluginSlot>,
    env: CallEnv,
    dead_letters: Arc<DeadLetterLog>,
}

impl Stage {
    /// `tenant`'s stage `name` running `slot` with `env`, dead-lettering into
    /// `dead_letters`. The plugin's health (and quarantine) is the tenant's own.
    ///
    /// # Errors
    /// When the plugin is an alert plugin.
    pub fn new(
        tenant: &TenantId,
        name: &str,
        slot: Arc<PluginSlot>,
        env: CallEnv,
        dead_letters: Arc<DeadLetterLog>,
    ) -> Result<Self, StageError> {
        let name = format!("{tenant}/{name}");
        require_world(
            &name,
            &slot,
            &[World::Filter, World::Transform],
            "a filter or transform",
        )?;
        Ok(Self {
            tenant: tenant.clone(),
            name,
            slot,
            env,
            dead_letters,
        })
    }

    /// The stage's name (`tenant/stage`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `batch` through the plugin, with the stage's own state.
    ///
    /// # Errors
    /// Only when a failed batch could not be kept as a dead letter: then it must not be
    /// acknowledged.
    pub fn process(&self, batch: Vec<Point>) -> Result<StageOutput, DeadLetterError> {
        self.process_with(batch, None, &self.env.state)
    }

    /// An empty state with the stage's limits: what a partition starts with.
    pub fn new_state(&self) -> StageState {
        StageState::new(self.env.state.limits())
    }

    /// Runs the plugin once on no points, with the stage's parameters and an empty state:
    /// a plugin that refuses its parameters says so here. Not counted in its health.
    ///
    /// # Errors
    /// The plugin's error.
    pub fn probe(&self) -> Result<(), String> {
        let env = CallEnv {
            state: Arc::new(self.new_state()),
            ..self.env.clone()
        };
        let plugin = self.slot.current();
        let result = match plugin.world() {
            World::Filter => plugin.filter(&[], &env).map(drop),
            World::Transform | World::Alert => plugin.transform(&[], &env).map(drop),
        };
        result.map_err(|e| e.to_string())
    }

    /// Runs `batch` through the plugin with `state` (the pipeline keeps one per partition,
    /// checkpointed with its offsets). `columns` are the batch's own when the caller has
    /// them (a record read from the log, a filter's output): the plugin reads them instead
    /// of an encoding of the points.
    ///
    /// # Errors
    /// As [`Stage::process`].
    pub fn process_with(
        &self,
        batch: Vec<Point>,
        columns: Option<Columns>,
        state: &Arc<StageState>,
    ) -> Result<StageOutput, DeadLetterError> {
        let _span = info_span!("stage", stage = %self.name, plugin = %self.slot.name()).entered();
        let env = CallEnv {
            state: state.clone(),
            ..self.env.clone()
        };
        let n = batch.len();
        let mut columns = columns.unwrap_or_else(|| Columns::from_points(&batch));
        // Filters answer with verdicts, so the kept points move out of the batch without a
        // copy once the call has succeeded.
        let outcome = match self.slot.current().world() {
            World::Filter => self.slot.run(
                &self.tenant,
                n,
                |out: &Answer| out.len(),
                |p| p.filter_columns(&mut columns, &env).map(Answer::Verdicts),
            ),
            // World::Alert is refused by `new`, and a swap never changes the world.
            World::Transform | World::Alert => self.slot.run(
                &self.tenant,
                n,
                |out: &Answer| out.len(),
                |p| p.transform_columns(&mut columns, &env).map(Answer::Points),
            ),
        };
        match outcome.result {
            Ok(answer) => {
                let (points, columns) = answer.apply(batch, columns);
                Ok(StageOutput {
                    plugin: outcome.plugin,
                    points: Some(points),
                    columns,
                })
            }
            Err(error) => {
                let letter = DeadLetter::new(
                    &self.tenant,
                    &self.name,
                    &error,
                    batch.iter().map(format_point).collect(),
                );
                self.dead_letters.put(&letter)?;
                Ok(StageOutput {
                    plugin: outcome.plugin,
                    points: None,
                    columns: None,
                })
            }
        }
    }
}

enum Answer {
    Verdicts(Vec<bool>),
    Points(Vec<Point>),
}

impl Answer {
    /// Points out (kept points for a filter).
    fn len(&self) -> usize {
        match self {
            Answer::Verdicts(v) => v.iter().filter(|keep| **keep).count(),
            Answer::Points(p) => p.len(),
        }
    }

    /// The points out and, for a filter, their columns.
    fn apply(self, batch: Vec<Point>, mut columns: Columns) -> (Vec<Point>, Option<Columns>) {
        match self {
            Answer::Verdicts(verdicts) => {
                columns.retain(&verdicts);
                let kept = batch
                    .into_iter()
                    .zip(verdicts)
                    .filter_map(|(point, keep)| keep.then_some(point))
                    .collect();
                (kept, Some(columns))
            }
            Answer::Points(points) => (points, None),
        }
    }
}
