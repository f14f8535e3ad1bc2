//! On-disk cache of precompiled plugin artifacts, so a restart (or a file that returns to
//! an earlier version) skips Cranelift.
//!
//! The key is the SHA-256 of the component plus the engine's compatibility hash: a new
//! wasmtime or different engine settings never read an old artifact. The cache directory
//! must be as trusted as the binary itself, since its artifacts are native code.
//!
//! Artifacts are large (a Python component's is ~35 MB), and every deployed version adds
//! one, so the cache is held to a size: a hit marks its artifact used (its mtime), and
//! storing a new one removes the least recently used others until the rest fits.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use wasmtime::Engine;
use wasmtime::component::Component;

/// Age past which a temporary artifact file is a crashed writer's leftover.
const STALE_WRITE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Precompiled artifacts in one directory.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_hash: u64,
    max_bytes: u64,
}

impl ArtifactCache {
    /// A cache in `dir` (created if missing) for artifacts of `engine`, held to `max_bytes`.
    ///
    /// # Errors
    /// When the directory can't be created.
    pub fn new(dir: &Path, engine: &Engine, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // DefaultHasher is deterministic for one build of the binary, which is all the key
        // needs: another build may hash differently and simply recompiles.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_owned(),
            engine_hash: hasher.finish(),
            max_bytes,
        })
    }

    /// Whether the artifact of the component whose SHA-256 is `digest` is cached.
    pub fn holds(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir
            .join(format!("{digest}-{:016x}.cwasm", self.engine_hash))
    }

    /// The compiled component for `bytes` (whose SHA-256 is `digest`): from the cache when
    /// present and loadable, otherwise compiled now and stored.
    ///
    /// # Errors
    /// When compiling fails. Cache I/O failures only cost a recompile and are logged.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &str,
    ) -> wasmtime::Result<Component> {
        let path = self.path(digest);
        if let Ok(cached) = std::fs::read(&path) {
            match deserialize(engine, &cached) {
                Ok(component) => {
                    mark_used(&path);
                    return Ok(component);
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "Unusable cached artifact; recompiling.");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let artifact = engine.precompile_component(bytes)?;
        match write_atomically(&path, &artifact) {
            Ok(()) => self.prune(&path),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "Could not cache compiled plugin.");
            }
        }
        deserialize(engine, &artifact)
    }

    /// Removes the least recently used artifacts but `keep` until the cache fits its size.
    fn prune(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let (artifacts, temporaries): (Vec<_>, Vec<_>) = entries
            .filter_map(Result::ok)
            .partition(|e| e.path().extension().is_some_and(|x| x == "cwasm"));
        // A writer that crashed left its temporary file; none is an hour in the writing.
        for stale in temporaries.iter().filter(|e| {
            e.path().extension().is_some_and(|x| x == "tmp")
                && e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_WRITE))
        }) {
            let _ = std::fs::remove_file(stale.path());
        }
        let mut artifacts: Vec<(SystemTime, u64, PathBuf)> = artifacts
            .into_iter()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = artifacts.iter().map(|a| a.1).sum();
        artifacts.sort();
        for (_, size, path) in artifacts {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    total = total.saturating_sub(size);
                    tracing::info!(path = %path.display(), size, "Pruned a least recently used plugin artifact from the cache.");
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "Could not prune a cached plugin artifact.");
                }
            }
        }
    }
}

/// Marks an artifact used now, so pruning keeps it longest. A failure only makes it an
/// earlier candidate for pruning.
fn mark_used(path: &Path) {
    let touched = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(error) = touched {
        tracing::debug!(path = %path.display(), %error, "Could not mark a cached artifact used.");
    }
}

/// Loads a precompiled artifact. Read into memory rather than mapped from its file: a mapped
/// file that someone truncates would crash the process (SIGBUS).
#[expect(
    unsafe_code,
    reason = "wasmtime artifacts are native code; the cache directory is trusted like the binary"
)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `artifact` was produced by `Engine::precompile_component` of an engine with the
    // same compatibility hash (it is in the file name), just now or into a directory only we
    // write; wasmtime still checks its header and version.
    unsafe { Component::deserialize(engine, artifact) }
}

/// Writes `bytes` to `path` through a temporary file of this writer's own, so that
/// processes sharing the cache (the service and `sluice plugin check`, say) compiling the
/// same component at once never interleave their bytes: each renames a whole file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}.{n}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Cranelift's per-function compilation cache, kept in one append-only file.
///
/// A new version of a plugin mostly holds the same functions as the last: a Python or
/// JavaScript component is the interpreter plus a little user code (~18 MB, ~8 s to compile
/// whole, for a few changed functions). Cranelift keys each function by the SHA-256 of its
/// IR and the target and rejects entries of another Cranelift version, so a hit is the code
/// it would have compiled. Records are `key length, key, value length, value, check` with
/// an 8-byte SHA-256 prefix of the value as check: a torn tail (a crash mid-append) ends the
/// file at load, and a record that reads back wrong is a miss. Only keys and offsets stay
/// in memory. When the file reaches its size it starts over empty.
#[derive(Debug)]
pub struct FunctionCache {
    inner: std::sync::Mutex<FunctionLog>,
}

#[derive(Debug)]
struct FunctionLog {
    path: PathBuf,
    file: std::fs::File,
    index: Index,
    max_bytes: u64,
}

/// Bytes of a record's check.
const CHECK: usize = 8;

/// A function log's index: key → (value offset, value length, check).
type Index = std::collections::HashMap<Vec<u8>, (u64, u32, [u8; CHECK])>;

fn check_of(value: &[u8]) -> [u8; CHECK] {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(value);
    let mut check = [0; CHECK];
    check.copy_from_slice(&digest[..CHECK]);
    check
}

impl FunctionCache {
    /// The cache in file `path` (created if missing), held to `max_bytes`.
    ///
    /// # Errors
    /// When the file can't be opened or read.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<Self> {
        use std::io::Read;
        let mut file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // Under the file lock: what looks like a torn tail may be another process's append
        // in progress, and cutting it there would tear it for real.
        file.lock()?;
        let mut bytes = Vec::new();
        let read = file.read_to_end(&mut bytes);
        let cut = read.and_then(|_| Self::index_and_cut(&mut file, &bytes, max_bytes));
        file.unlock()?;
        Ok(Self {
            inner: std::sync::Mutex::new(FunctionLog {
                path: path.to_owned(),
                file,
                index: cut?,
                max_bytes,
            }),
        })
    }

    /// The index of the whole records in `bytes` (the file's content), with the file cut
    /// after the last of them, or emptied when over `max_bytes`.
    fn index_and_cut(
        file: &mut std::fs::File,
        bytes: &[u8],
        max_bytes: u64,
    ) -> std::io::Result<Index> {
        let mut index = Index::new();
        let mut at = 0usize;
        // Each step reads one whole record or stops: the file ends at the last whole one.
        while let Some((key, value, check, next)) = record_at(bytes, at) {
            if let (Ok(offset), Ok(len)) = (u64::try_from(value.0), u32::try_from(value.1)) {
                index.insert(key.to_vec(), (offset, len, check));
            }
            at = next;
        }
        let end = u64::try_from(at).unwrap_or(u64::MAX);
        if end > max_bytes || end < bytes.len() as u64 {
            // Over its size (the limit was lowered) or a torn tail: cut there.
            let keep = if end > max_bytes { 0 } else { end };
            file.set_len(keep)?;
            if keep == 0 {
                index.clear();
            }
        }
        Ok(index)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FunctionLog> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The record at `at` of a function log: key, (value offset, value length), check, and the
/// offset of the next record; none when no whole record starts there.
#[expect(clippy::type_complexity, reason = "one private parser's tuple")]
fn record_at(bytes: &[u8], at: usize) -> Option<(&[u8], (usize, usize), [u8; CHECK], usize)> {
    let u32_at = |i: usize| -> Option<usize> {
        let b = bytes.get(i..i.checked_add(4)?)?;
        usize::try_from(u32::from_le_bytes(b.try_into().ok()?)).ok()
    };
    let key_len = u32_at(at)?;
    let key_start = at.checked_add(4)?;
    let key = bytes.get(key_start..key_start.checked_add(key_len)?)?;
    let value_len = u32_at(key_start + key_len)?;
    let value_start = key_start + key_len + 4;
    let value_end = value_start.checked_add(value_len)?;
    let check = bytes.get(value_end..value_end.checked_add(CHECK)?)?;
    let check: [u8; CHECK] = check.try_into().ok()?;
    Some((key, (value_start, value_len), check, value_end + CHECK))
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        use std::os::unix::fs::FileExt;
        let log = self.lock();
        let &(offset, len, check) = log.index.get(key)?;
        let mut value = vec![0; len as usize];
        log.file.read_exact_at(&mut value, offset).ok()?;
        (check_of(&value) == check).then_some(std::borrow::Cow::Owned(value))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut log = self.lock();
        // Other processes may append to the same file (the service and `sluice plugin
        // check` share a cache directory): the file lock makes each append whole and at the
        // true end. Their records are seen at the next open.
        if let Err(error) = log.file.lock() {
            tracing::warn!(path = %log.path.display(), %error, "Could not lock the function cache.");
            return false;
        }
        let appended = log.append(key, &value);
        let _ = log.file.unlock();
        appended
    }
}

impl FunctionLog {
    /// Appends one record at the file's end (the caller holds the file lock) and indexes it.
    fn append(&mut self, key: &[u8], value: &[u8]) -> bool {
        use std::os::unix::fs::FileExt;
        let (Ok(key_len), Ok(value_len)) = (u32::try_from(key.len()), u32::try_from(value.len()))
        else {
            return false;
        };
        let mut record = Vec::with_capacity(key.len() + value.len() + 8 + CHECK);
        record.extend_from_slice(&key_len.to_le_bytes());
        record.extend_from_slice(key);
        record.extend_from_slice(&value_len.to_le_bytes());
        record.extend_from_slice(value);
        let check = check_of(value);
        record.extend_from_slice(&check);
        let mut at = match self.file.metadata() {
            Ok(meta) => meta.len(),
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "Could not read the function cache's size.");
                return false;
            }
        };
        if at + record.len() as u64 > self.max_bytes {
            // Full: start over, keeping what is compiled from now on.
            if let Err(error) = self.file.set_len(0) {
                tracing::warn!(path = %self.path.display(), %error, "Could not empty the full function cache.");
                return false;
            }
            self.index.clear();
            at = 0;
        }
        if let Err(error) = self.file.write_all_at(&record, at) {
            tracing::warn!(path = %self.path.display(), %error, "Could not append to the function cache.");
            return false;
        }
        let value_at = at + 4 + u64::from(key_len) + 4;
        self.index
            .insert(key.to_vec(), (value_at, value_len, check));
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wasmtime::CacheStore;

    use super::*;

    #[test]
    fn functions_survive_a_reopen_and_a_torn_tail_or_flipped_byte_is_a_miss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("functions.log");
        let cache = FunctionCache::open(&path, 1 << 20).expect("open");
        assert!(cache.insert(b"k1", vec![1; 100]));
        assert!(cache.insert(b"k2", vec![2; 50]));
        drop(cache);
        // A crash in the middle of a third append.
        let whole = std::fs::metadata(&path).expect("meta").len();
        let mut torn = std::fs::read(&path).expect("read");
        torn.extend_from_slice(&[3, 0, 0, 0, b'k', b'3']);
        std::fs::write(&path, &torn).expect("write");
        let cache = FunctionCache::open(&path, 1 << 20).expect("reopen");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), whole);
        assert_eq!(cache.get(b"k1").as_deref(), Some(&[1u8; 100][..]));
        assert_eq!(cache.get(b"k2").as_deref(), Some(&[2u8; 50][..]));
        assert_eq!(cache.get(b"k3"), None);
        drop(cache);
        // Rot in k1's value: its check no longer matches.
        let mut rotten = std::fs::read(&path).expect("read");
        rotten[4 + 2 + 4 + 10] ^= 0xff;
        std::fs::write(&path, &rotten).expect("write");
        let cache = FunctionCache::open(&path, 1 << 20).expect("reopen");
        assert_eq!(cache.get(b"k1"), None);
        assert!(cache.get(b"k2").is_some());
    }

    #[test]
    fn two_processes_appending_to_one_function_cache_keep_every_record_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("functions.log");
        // Two opens of one file, as the service and `sluice plugin check` have.
        let (a, b) = (
            FunctionCache::open(&path, 1 << 20).expect("open"),
            FunctionCache::open(&path, 1 << 20).expect("open"),
        );
        let value = |who: u8, i: usize| vec![who ^ (i as u8); 50 + i];
        for i in 0..40 {
            assert!(a.insert(format!("a{i}").as_bytes(), value(1, i)));
            assert!(b.insert(format!("b{i}").as_bytes(), value(2, i)));
        }
        assert_eq!(a.get(b"a7").as_deref(), Some(&value(1, 7)[..]));
        assert_eq!(b.get(b"b39").as_deref(), Some(&value(2, 39)[..]));
        let reopened = FunctionCache::open(&path, 1 << 20).expect("reopen");
        for i in 0..40 {
            let (ka, kb) = (format!("a{i}"), format!("b{i}"));
            assert_eq!(
                reopened.get(ka.as_bytes()).as_deref(),
                Some(&value(1, i)[..]),
                "{ka}"
            );
            assert_eq!(
                reopened.get(kb.as_bytes()).as_deref(),
                Some(&value(2, i)[..]),
                "{kb}"
            );
        }
    }

    #[test]
    fn a_full_function_cache_starts_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("functions.log");
        let cache = FunctionCache::open(&path, 300).expect("open");
        assert!(cache.insert(b"a", vec![0; 200]));
        assert!(cache.insert(b"b", vec![0; 200]));
        assert_eq!(cache.get(b"a"), None, "dropped when the file filled");
        assert!(cache.get(b"b").is_some());
        assert!(std::fs::metadata(&path).expect("meta").len() <= 300);
    }

    #[test]
    fn storing_an_artifact_prunes_the_least_recently_used_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ArtifactCache::new(dir.path(), &Engine::default(), 250).expect("cache");
        let now = SystemTime::now();
        let artifact = |name: &str, age_s: u64| {
            let path = dir.path().join(format!("{name}.cwasm"));
            std::fs::write(&path, [0u8; 100]).expect("write");
            let file = std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open");
            file.set_modified(now - Duration::from_secs(age_s))
                .expect("mtime");
            path
        };
        let (oldest, used, newest) = (artifact("a", 30), artifact("b", 20), artifact("c", 10));
        mark_used(&used);
        cache.prune(&newest);
        // 300 bytes over a budget of 250: the least recently used one goes.
        assert!(!oldest.exists());
        assert!(used.exists() && newest.exists());
        // The one just stored stays even when it alone is over budget.
        let tiny = ArtifactCache::new(dir.path(), &Engine::default(), 10).expect("cache");
        tiny.prune(&newest);
        assert!(newest.exists() && !used.exists());
    }
}
