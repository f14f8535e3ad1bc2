//! Per-tenant quotas: what a tenant may ingest per second (points, bytes), how many series
//! it may keep, how much CPU time its plugins may use per second, and how many bytes it may
//! keep stored. Each is the tenant's own: one tenant at its quota slows or refuses nobody
//! else.
//!
//! Rates are kept as a balance that refills at the rate, up to one second's worth, and may
//! go into debt by one request: a request goes through while the balance is positive and
//! pays for itself whatever its size, so requests of any size get through at the average
//! rate, and a client over it is told how long until its debt is paid (`Retry-After`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::tenant::TenantId;

/// A tenant's limits; an absent one is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Points ingested per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points_per_sec: Option<u64>,
    /// Request body bytes ingested per second (as sent, before decompression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<u64>,
    /// Series (measurement, tags and field) kept: a write that would create more is
    /// refused; writes to existing series go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_series: Option<u64>,
    /// CPU time the tenant's plugins may use per second, in milliseconds: past it, its
    /// lanes pause (its backlog grows, and its writes get 503 once it is too long).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_cpu_ms_per_sec: Option<u64>,
    /// Bytes the tenant's points may take in the store: past it, writes are refused until
    /// retention frees space or the limit is raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stored_bytes: Option<u64>,
}

impl Limits {
    /// These limits, each absent one taken from `defaults`.
    #[must_use]
    pub fn or(self, defaults: Limits) -> Limits {
        Limits {
            points_per_sec: self.points_per_sec.or(defaults.points_per_sec),
            bytes_per_sec: self.bytes_per_sec.or(defaults.bytes_per_sec),
            max_series: self.max_series.or(defaults.max_series),
            plugin_cpu_ms_per_sec: self
                .plugin_cpu_ms_per_sec
                .or(defaults.plugin_cpu_ms_per_sec),
            max_stored_bytes: self.max_stored_bytes.or(defaults.max_stored_bytes),
        }
    }
}

/// A write over one of its tenant's quotas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverQuota {
    /// Over an ingest rate.
    #[error(
        "tenant `{tenant}` is over its quota {quota} = {limit} {unit} a second; retry after {} s",
        retry_after.as_secs()
    )]
    Rate {
        /// The tenant.
        tenant: TenantId,
        /// The quota's name.
        quota: &'static str,
        /// Its limit.
        limit: u64,
        /// What it counts.
        unit: &'static str,
        /// When the tenant is under it again (whole seconds, at least one).
        retry_after: Duration,
    },
    /// The write would create series past the tenant's limit.
    #[error(
        "tenant `{tenant}` has {count} series and its quota max_series = {limit}: this write would create {new} more; writes to existing series go on (retrying can't help until the quota is raised or series expire)"
    )]
    Series {
        /// The tenant.
        tenant: TenantId,
        /// Series it has.
        count: u64,
        /// New series the write has.
        new: u64,
        /// Its limit.
        limit: u64,
    },
    /// The tenant's stored bytes are at its limit.
    #[error(
        "tenant `{tenant}` stores {stored} bytes and its quota max_stored_bytes = {limit}: writes are refused until retention frees space or the quota is raised"
    )]
    Storage {
        /// The tenant.
        tenant: TenantId,
        /// Bytes it stores, as last measured.
        stored: u64,
        /// Its limit.
        limit: u64,
    },
}

impl OverQuota {
    /// When a retry can succeed: for rates only.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OverQuota::Rate { retry_after, .. } => Some(*retry_after),
            OverQuota::Series { .. } | OverQuota::Storage { .. } => None,
        }
    }
}

/// A rate's balance: see the module's doc.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    balance: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_sec: u64, now: Instant) -> Self {
        Self {
            balance: per_sec as f64,
            at: now,
        }
    }

    /// Refills for the time since the last call, up to one second's worth.
    fn refill(&mut self, per_sec: u64, now: Instant) {
        let rate = per_sec as f64;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.balance = (self.balance + elapsed * rate).min(rate);
        self.at = now;
    }

    /// Takes `n` while the balance is positive; else how long until it is.
    fn take(&mut self, per_sec: u64, n: u64, now: Instant) -> Result<(), Duration> {
        self.refill(per_sec, now);
        if self.balance > 0.0 {
            self.balance -= n as f64;
            return Ok(());
        }
        Err(self.until_positive(per_sec))
    }

    /// How long until the balance is positive again (zero when it is).
    fn until_positive(&self, per_sec: u64) -> Duration {
        if self.balance > 0.0 || per_sec == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((-self.balance / per_sec as f64).min(3600.0))
    }
}

/// How many of a tenant's lanes may run its plugins at once: as many cores as its CPU
/// quota spends in a second, else half the machine's. A quota spent in bursts on every lane
/// at once would take every core for the burst, and whoever else waits meanwhile.
fn plugin_concurrency(limits: &Limits) -> usize {
    match limits.plugin_cpu_ms_per_sec {
        Some(ms) => usize::try_from(ms.div_ceil(1000))
            .unwrap_or(usize::MAX)
            .max(1),
        None => (crate::cores::cores().get() / 2).max(1),
    }
}

/// Plugin runs of one tenant under way.
#[derive(Debug, Default)]
struct Running {
    count: Mutex<usize>,
    done: std::sync::Condvar,
}

/// Leave to run a tenant's plugins; the run ends when it drops.
pub struct PluginPermit(std::sync::Arc<Running>);

impl Drop for PluginPermit {
    fn drop(&mut self) {
        let mut count = self.0.count.lock().unwrap_or_else(PoisonError::into_inner);
        *count = count.saturating_sub(1);
        drop(count);
        self.0.done.notify_one();
    }
}

/// One tenant's limits and where it stands against them.
#[derive(Debug)]
struct Standing {
    limits: Limits,
    points: Option<Bucket>,
    bytes: Option<Bucket>,
    cpu_ms: Option<Bucket>,
    /// Series it has, once counted.
    series: Option<u64>,
    /// Bytes it stores, as last measured.
    stored: Option<u64>,
    /// Its plugin runs under way.
    running: std::sync::Arc<Running>,
}

impl Standing {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            points: None,
            bytes: None,
            cpu_ms: None,
            series: None,
            stored: None,
            running: std::sync::Arc::default(),
        }
    }
}

/// Every tenant's quotas.
#[derive(Debug, Default)]
pub struct Quotas {
    tenants: Mutex<HashMap<TenantId, Standing>>,
}

/// Takes `n` from the bucket in `slot` for a rate of `limit` a second (none: unlimited).
fn take(
    slot: &mut Option<Bucket>,
    limit: Option<u64>,
    n: u64,
    now: Instant,
) -> Result<(), Duration> {
    let Some(per_sec) = limit else {
        return Ok(());
    };
    slot.get_or_insert_with(|| Bucket::full(per_sec, now))
        .take(per_sec, n, now)
}

/// `wait` in whole seconds, at least one: what `Retry-After` carries.
fn whole_seconds(wait: Duration) -> Duration {
    Duration::from_secs(wait.as_secs_f64().ceil().max(1.0) as u64)
}

impl Quotas {
    fn lock(&self) -> MutexGuard<'_, HashMap<TenantId, Standing>> {
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets `tenant`'s limits (where it stands is kept).
    pub fn set(&self, tenant: &TenantId, limits: Limits) {
        self.lock()
            .entry(tenant.clone())
            .and_modify(|s| s.limits = limits)
            .or_insert_with(|| Standing::new(limits));
    }

    /// Forgets `tenant` (deleted).
    pub fn remove(&self, tenant: &TenantId) {
        self.lock().remove(tenant);
    }

    /// Admits a request body of `bytes`, or says which quota it is over.
    ///
    /// # Errors
    /// [`OverQuota::Rate`] (bytes) or [`OverQuota::Storage`].
    pub fn admit_body(&self, tenant: &TenantId, bytes: usize) -> Result<(), OverQuota> {
        let mut tenants = self.lock();
        let Some(s) = tenants.get_mut(tenant) else {
            return Ok(());
        };
        if let (Some(limit), Some(stored)) = (s.limits.max_stored_bytes, s.stored)
            && stored >= limit
        {
            return Err(OverQuota::Storage {
                tenant: tenant.clone(),
                stored,
                limit,
            });
        }
        let limit = s.limits.bytes_per_sec;
        take(&mut s.bytes, limit, bytes as u64, Instant::now()).map_err(|wait| OverQuota::Rate {
            tenant: tenant.clone(),
            quota: "bytes_per_sec",
            limit: limit.unwrap_or_default(),
            unit: "bytes",
            retry_after: whole_seconds(wait),
        })
    }

    /// Admits `points` points with `new_series` series not stored before. `count` tells
    /// how many series the tenant has, the first time that is needed.
    ///
    /// # Errors
    /// [`OverQuota::Series`] or [`OverQuota::Rate`] (points); nothing is taken then.
    pub fn admit_points(
        &self,
        tenant: &TenantId,
        points: usize,
        new_series: usize,
        count: impl FnOnce() -> Option<u64>,
    ) -> Result<(), OverQuota> {
        let (max_series, counted) = {
            let tenants = self.lock();
            let Some(s) = tenants.get(tenant) else {
                return Ok(());
            };
            (s.limits.max_series, s.series)
        };
        // Counted outside the lock: the store may take a while.
        let counted = match (max_series, counted) {
            (Some(_), None) if new_series > 0 => count(),
            _ => counted,
        };
        let mut tenants = self.lock();
        let Some(s) = tenants.get_mut(tenant) else {
            return Ok(());
        };
        if s.series.is_none() {
            s.series = counted;
        }
        let new = new_series as u64;
        if let (Some(limit), Some(count)) = (s.limits.max_series, s.series)
            && new > 0
            && count.saturating_add(new) > limit
        {
            return Err(OverQuota::Series {
                tenant: tenant.clone(),
                count,
                new,
                limit,
            });
        }
        let limit = s.limits.points_per_sec;
        take(&mut s.points, limit, points as u64, Instant::now()).map_err(|wait| {
            OverQuota::Rate {
                tenant: tenant.clone(),
                quota: "points_per_sec",
                limit: limit.unwrap_or_default(),
                unit: "points",
                retry_after: whole_seconds(wait),
            }
        })?;
        if let Some(count) = &mut s.series {
            *count = count.saturating_add(new);
        }
        Ok(())
    }

    /// The tenants with a quota on stored bytes: whose usage is to be measured.
    pub fn tenants_with_storage_quota(&self) -> Vec<TenantId> {
        self.lock()
            .iter()
            .filter(|(_, s)| s.limits.max_stored_bytes.is_some())
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Notes how many bytes `tenant` stores (measured by the store now and then).
    pub fn stored(&self, tenant: &TenantId, bytes: u64) {
        if let Some(s) = self.lock().get_mut(tenant) {
            s.stored = Some(bytes);
        }
    }

    /// Charges `tenant`'s plugins `used` CPU time.
    pub fn charge_cpu(&self, tenant: &TenantId, used: Duration) {
        let mut tenants = self.lock();
        let Some(s) = tenants.get_mut(tenant) else {
            return;
        };
        let Some(per_sec) = s.limits.plugin_cpu_ms_per_sec else {
            return;
        };
        let now = Instant::now();
        let bucket = s.cpu_ms.get_or_insert_with(|| Bucket::full(per_sec, now));
        bucket.refill(per_sec, now);
        bucket.balance -= used.as_secs_f64() * 1000.0;
    }

    /// How long `tenant`'s plugins must pause to be back within their CPU quota (zero
    /// when they are).
    pub fn cpu_pause(&self, tenant: &TenantId) -> Duration {
        let mut tenants = self.lock();
        let Some(s) = tenants.get_mut(tenant) else {
            return Duration::ZERO;
        };
        let (Some(per_sec), Some(bucket)) = (s.limits.plugin_cpu_ms_per_sec, &mut s.cpu_ms) else {
            return Duration::ZERO;
        };
        bucket.refill(per_sec, Instant::now());
        bucket.until_positive(per_sec)
    }
}

impl Quotas {
    /// Waits until `tenant` may run its plugins on one more lane ([`plugin_concurrency`]),
    /// or `stop` is set (then none).
    pub fn plugin_permit(
        &self,
        tenant: &TenantId,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Option<PluginPermit> {
        let (running, most) = {
            let mut tenants = self.lock();
            let s = tenants
                .entry(tenant.clone())
                .or_insert_with(|| Standing::new(Limits::default()));
            (s.running.clone(), plugin_concurrency(&s.limits))
        };
        let mut count = running.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *count >= most {
            if stop.load(std::sync::atomic::Ordering::Acquire) {
                return None;
            }
            count = running
                .done
                .wait_timeout(count, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *count += 1;
        drop(count);
        Some(PluginPermit(running))
    }
}

/// CPU time this thread has used: what a plugin call costs its tenant (the call runs on
/// the calling thread; waiting, for I/O or a lock, costs nothing).
pub fn thread_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::new("a")
    }

    #[test]
    fn rates_let_requests_through_at_the_average_rate_and_say_when_to_retry() {
        let quotas = Quotas::default();
        let a = tenant();
        quotas.set(
            &a,
            Limits {
                points_per_sec: Some(1000),
                ..Limits::default()
            },
        );
        // A second's worth at once, then one request into debt (of any size), then none.
        quotas.admit_points(&a, 900, 0, || None).expect("within");
        quotas
            .admit_points(&a, 2100, 0, || None)
            .expect("pays for itself");
        let over = quotas.admit_points(&a, 1, 0, || None).expect_err("in debt");
        assert_eq!(over.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(
            over.to_string(),
            "tenant `a` is over its quota points_per_sec = 1000 points a second; retry after 2 s"
        );
        // Another tenant, and another quota, are untouched.
        let b = TenantId::new("b");
        quotas.admit_points(&b, 1_000_000, 0, || None).expect("b");
        quotas.admit_body(&a, 1 << 30).expect("no byte quota");
    }

    #[test]
    fn a_refill_tops_up_to_one_second_and_no_more() {
        let now = Instant::now();
        let mut bucket = Bucket::full(100, now);
        bucket.take(100, 150, now).expect("positive");
        assert_eq!(bucket.until_positive(100), Duration::from_millis(500));
        bucket.refill(100, now + Duration::from_secs(60));
        assert!((bucket.balance - 100.0).abs() < 1e-9, "{}", bucket.balance);
    }

    #[test]
    fn series_past_the_limit_are_refused_and_existing_ones_go_on() {
        let quotas = Quotas::default();
        let a = tenant();
        quotas.set(
            &a,
            Limits {
                max_series: Some(10),
                ..Limits::default()
            },
        );
        // Counted once, from the store, when first needed.
        quotas
            .admit_points(&a, 5, 0, || panic!("not needed"))
            .expect("no new series");
        quotas.admit_points(&a, 5, 3, || Some(6)).expect("9 of 10");
        let over = quotas
            .admit_points(&a, 2, 2, || panic!("counted already"))
            .expect_err("11 of 10");
        assert_eq!(
            over,
            OverQuota::Series {
                tenant: a.clone(),
                count: 9,
                new: 2,
                limit: 10
            }
        );
        assert_eq!(over.retry_after(), None);
        quotas
            .admit_points(&a, 100, 0, || None)
            .expect("existing series go on");
        quotas.admit_points(&a, 1, 1, || None).expect("the tenth");
    }

    #[test]
    fn stored_bytes_at_the_limit_refuse_writes_until_they_fall() {
        let quotas = Quotas::default();
        let a = tenant();
        quotas.set(
            &a,
            Limits {
                max_stored_bytes: Some(1000),
                ..Limits::default()
            },
        );
        quotas.admit_body(&a, 10).expect("not measured yet");
        quotas.stored(&a, 1000);
        let over = quotas.admit_body(&a, 10).expect_err("at the limit");
        assert!(
            over.to_string().contains("max_stored_bytes = 1000"),
            "{over}"
        );
        quotas.stored(&a, 999);
        quotas.admit_body(&a, 10).expect("under again");
    }

    #[test]
    fn plugin_cpu_past_the_quota_pauses_its_tenant_only() {
        let quotas = Quotas::default();
        let (a, b) = (tenant(), TenantId::new("b"));
        for t in [&a, &b] {
            quotas.set(
                t,
                Limits {
                    plugin_cpu_ms_per_sec: Some(100),
                    ..Limits::default()
                },
            );
        }
        quotas.charge_cpu(&a, Duration::from_millis(300));
        let pause = quotas.cpu_pause(&a);
        assert!(
            pause > Duration::from_millis(1900) && pause <= Duration::from_secs(2),
            "{pause:?}"
        );
        assert_eq!(quotas.cpu_pause(&b), Duration::ZERO);
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_time() > before, "this thread's CPU time grows");
    }

    #[test]
    fn a_tenants_plugins_run_on_as_many_lanes_at_once_as_its_cpu_quota_has_cores() {
        let quotas = std::sync::Arc::new(Quotas::default());
        let (a, b) = (tenant(), TenantId::new("b"));
        quotas.set(
            &a,
            Limits {
                plugin_cpu_ms_per_sec: Some(250),
                ..Limits::default()
            },
        );
        let stop = std::sync::atomic::AtomicBool::new(false);
        let first = quotas.plugin_permit(&a, &stop).expect("first");
        // Another tenant is not held up by a's run.
        let theirs = quotas.plugin_permit(&b, &stop).expect("b's own");
        let waited = std::thread::scope(|scope| {
            let second = scope.spawn(|| {
                let started = std::time::Instant::now();
                let permit = quotas.plugin_permit(&a, &stop);
                (permit.is_some(), started.elapsed())
            });
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
            second.join().expect("second")
        });
        assert!(waited.0);
        assert!(waited.1 >= Duration::from_millis(150), "{:?}", waited.1);
        drop(theirs);
        // A stop ends a wait.
        let _held = quotas.plugin_permit(&a, &stop).expect("held");
        stop.store(true, std::sync::atomic::Ordering::Release);
        assert!(quotas.plugin_permit(&a, &stop).is_none());
        let cores = |ms| {
            plugin_concurrency(&Limits {
                plugin_cpu_ms_per_sec: Some(ms),
                ..Limits::default()
            })
        };
        assert_eq!((cores(0), cores(1000), cores(2500)), (1, 1, 3));
    }
}
