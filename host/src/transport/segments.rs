//! The embedded log's files: every partition's records appended to one segment file at a
//! time (so a group of appends costs one write and one fsync, whatever partitions it
//! touches), an in-memory index of where each record is, and the committed offsets in a
//! small file of their own.
//!
//! Processed records give their disk back whole segments at a time: a segment is deleted
//! once every partition has committed past its records in it, and an idle log deletes
//! its active segment too, so the log of a service that has caught up takes no disk.
//! (The fjall-based log before it deleted records key by key: tombstones, and a journal
//! of up to 64 MB that fjall 3.1 never truncates while open.)
//!
//! # Files
//!
//! `segments/{id:020}.log`: frames, each a header (payload length `u32`, CRC-32 of the rest
//! `u32`, partition `u32`, offset `u64`, all little-endian) and the payload (a record in
//! [`crate::format`]'s encoding). A partition's offsets run on without a gap across
//! segments. A crash can tear only the last frames of the last segment: recovery cuts
//! them off (they were never acknowledged: an append returns after its fsync).
//!
//! `offsets`: `SLOGOFS1`, the partition count (`u32`), each partition's committed offset
//! (`u64`), then a CRC-32 of it all; replaced by rename after an fsync, so it is always
//! one whole version. A partition's next offset is the later of its last record's + 1 and
//! its committed offset, so offsets never repeat even once every record is deleted.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Offset, Partition, TransportError};

/// A segment is sealed (a new one started) past this size: the grain at which processed
/// records give their disk back.
pub const SEGMENT_BYTES: u64 = 16 << 20;

/// Longest a commit stays in memory only (see [`Segments::commit`]).
const PERSIST_EVERY: Duration = Duration::from_secs(5);

/// Frame header: payload length, CRC, partition, offset.
const HEADER: usize = 4 + 4 + 4 + 8;

/// Largest payload a frame may say it has: far above any record ingest makes (bodies are
/// bounded well below), so a corrupt length can't make recovery allocate gigabytes.
const MAX_PAYLOAD: u32 = 1 << 30;

const OFFSETS_MAGIC: &[u8; 8] = b"SLOGOFS1";

/// Where a record's payload is.
#[derive(Debug, Clone, Copy)]
struct Place {
    segment: u64,
    pos: u64,
    len: u32,
}

/// A partition's records on disk from offset `first` on.
#[derive(Debug, Default)]
struct PartitionIndex {
    first: Offset,
    places: VecDeque<Place>,
}

impl PartitionIndex {
    fn end(&self) -> Offset {
        self.first + self.places.len() as Offset
    }
}

/// A segment file: its handle, length, and each partition's last offset in it.
struct Segment {
    file: Arc<File>,
    path: PathBuf,
    len: u64,
    last: BTreeMap<Partition, Offset>,
}

struct State {
    /// Segments by id, oldest first; the active one (appended to) is the last, when
    /// `active` says so.
    segments: BTreeMap<u64, Segment>,
    active: bool,
    next_id: u64,
    index: Vec<PartitionIndex>,
    committed: Vec<Offset>,
    /// The committed offsets as the offsets file has them, and when it was written.
    persisted: Vec<Offset>,
    persisted_at: Instant,
}

/// The log's files in a directory.
pub struct Segments {
    dir: PathBuf,
    state: Mutex<State>,
    /// Held while the offsets file is written and processed segments deleted, so one
    /// reclaimer runs at a time; never taken under `state`, which is not held across that
    /// I/O (an fsync, a rename and a directory fsync, then unlinks): appends and reads go on
    /// meanwhile. Under `state`, an acknowledgement waited for all of it.
    reclaiming: Mutex<()>,
    /// Held (an exclusive lock on `dir/segments.lock`) while open: two logs appending to one
    /// directory would interleave offsets.
    _lock: File,
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> TransportError {
    let place = format!("{what} {}", path.display());
    move |e| TransportError::Storage(format!("{place}: {e}"))
}

fn corrupt(path: &Path, detail: impl std::fmt::Display) -> TransportError {
    TransportError::Storage(format!(
        "log file {} is corrupt ({detail}); restoring the data directory from a backup, or removing the file (losing its unprocessed records), is needed",
        path.display()
    ))
}

impl Segments {
    /// Whether `dir` holds a log in this layout.
    pub fn exists(dir: &Path) -> bool {
        dir.join("offsets").is_file()
    }

    /// Opens (creating, or recovering after a crash) the log in `dir` with `partitions`
    /// partitions.
    ///
    /// # Errors
    /// When another process has it open, the files can't be read or written, hold another
    /// partition count, or are corrupt anywhere but at the torn end of the last segment.
    pub fn open(dir: &Path, partitions: u32) -> Result<Self, TransportError> {
        let segments_dir = dir.join("segments");
        std::fs::create_dir_all(&segments_dir).map_err(io("creating", &segments_dir))?;
        let lock_path = dir.join("segments.lock");
        let lock = File::create(&lock_path).map_err(io("creating", &lock_path))?;
        lock.try_lock().map_err(|e| {
            TransportError::Storage(format!(
                "the log in {} is open in another process or instance ({e}); one at a time",
                dir.display()
            ))
        })?;
        let offsets_path = dir.join("offsets");
        let committed = if offsets_path.is_file() {
            let committed = read_offsets(&offsets_path)?;
            if committed.len() != partitions as usize {
                return Err(TransportError::PartitionCount {
                    place: dir.display().to_string(),
                    found: committed.len() as u32,
                    configured: partitions,
                });
            }
            committed
        } else {
            let committed = vec![0; partitions as usize];
            write_offsets(dir, &committed)?;
            committed
        };
        let mut state = State {
            segments: BTreeMap::new(),
            active: false,
            next_id: 0,
            index: (0..partitions).map(|_| PartitionIndex::default()).collect(),
            persisted: committed.clone(),
            persisted_at: Instant::now(),
            committed,
        };
        let mut ids: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&segments_dir).map_err(io("listing", &segments_dir))? {
            let path = entry.map_err(io("listing", &segments_dir))?.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok());
            match id {
                Some(id) => ids.push((id, path)),
                None => return Err(corrupt(&path, "not a segment's name")),
            }
        }
        ids.sort();
        let last = ids.last().map(|(id, _)| *id);
        for (id, path) in ids {
            let segment = recover(&path, &mut state, id, Some(id) == last)?;
            state.segments.insert(id, segment);
            state.next_id = id + 1;
        }
        // The last segment goes on taking appends while it has room.
        state.active = state
            .segments
            .values()
            .next_back()
            .is_some_and(|s| s.len < SEGMENT_BYTES);
        for (index, committed) in state.index.iter_mut().zip(&state.committed) {
            if index.places.is_empty() {
                index.first = index.first.max(*committed);
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            state: Mutex::new(state),
            reclaiming: Mutex::new(()),
            _lock: lock,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Each partition's committed offset and next offset.
    pub fn positions(&self) -> Vec<(Offset, Offset)> {
        let state = self.lock();
        state
            .committed
            .iter()
            .zip(&state.index)
            .map(|(c, i)| (*c, i.end().max(*c)))
            .collect()
    }

    /// Appends `records` (partition, offset, payload) with one write and one fsync: durable
    /// on return. Each partition's offsets must continue its last. One appender at a time
    /// (the log's writer thread): it alone creates, seals and (idle) deletes the active
    /// segment.
    ///
    /// # Errors
    /// When the write or the fsync fails: the log must not be appended to again (what the
    /// kernel kept of the write is unknown) until a reopen cuts off the torn end.
    pub fn append(&self, records: &[(Partition, Offset, &[u8])]) -> Result<(), TransportError> {
        // Sized up front: grown frame by frame, the buffer's copies were 1.5% of
        // remote-write ingest.
        let mut frames = Vec::with_capacity(records.iter().map(|(_, _, r)| r.len() + HEADER).sum());
        let mut places = Vec::with_capacity(records.len());
        for (p, offset, payload) in records {
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|l| *l <= MAX_PAYLOAD)
                .ok_or_else(|| {
                    TransportError::Storage(format!(
                        "a record of {} bytes is larger than the log takes",
                        payload.len()
                    ))
                })?;
            let start = frames.len() as u64;
            frames.extend_from_slice(&len.to_le_bytes());
            frames.extend_from_slice(&crc(*p, *offset, payload).to_le_bytes());
            frames.extend_from_slice(&p.to_le_bytes());
            frames.extend_from_slice(&offset.to_le_bytes());
            frames.extend_from_slice(payload);
            places.push((*p, *offset, start + HEADER as u64, len));
        }
        let (id, file, path, at) = self.active_segment()?;
        file.write_all_at(&frames, at)
            .map_err(io("writing", &path))?;
        file.sync_data().map_err(io("syncing", &path))?;
        let mut state = self.lock();
        let State {
            segments, index, ..
        } = &mut *state;
        let segment = segments
            .get_mut(&id)
            .ok_or_else(|| TransportError::Storage(format!("segment {id} vanished")))?;
        segment.len = at + frames.len() as u64;
        for (p, offset, pos, len) in places {
            let partition = index
                .get_mut(p as usize)
                .ok_or_else(|| TransportError::Storage(format!("no partition {p}")))?;
            if partition.places.is_empty() {
                partition.first = offset;
            }
            partition.places.push_back(Place {
                segment: id,
                pos: at + pos,
                len,
            });
            segment.last.insert(p, offset);
        }
        if segment.len >= SEGMENT_BYTES {
            state.active = false;
        }
        Ok(())
    }

    /// The active segment (created when there is none) and where the next frame goes.
    /// Only the appender creates segments, so the new file is made and its name synced
    /// without holding the state (readers go on meanwhile).
    fn active_segment(&self) -> Result<(u64, Arc<File>, PathBuf, u64), TransportError> {
        let id = {
            let state = self.lock();
            if state.active {
                return last_segment(&state);
            }
            state.next_id
        };
        let path = self.segment_path(id);
        let file = File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io("creating", &path))?;
        // The new file's name must survive a crash before any frame in it counts.
        sync_dir(&self.dir.join("segments"))?;
        let mut state = self.lock();
        state.segments.insert(
            id,
            Segment {
                file: Arc::new(file),
                path,
                len: 0,
                last: BTreeMap::new(),
            },
        );
        state.next_id = id + 1;
        state.active = true;
        last_segment(&state)
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join("segments").join(format!("{id:020}.log"))
    }

    /// Up to `max` payloads of `partition` from offset `from` (those before its first
    /// record on disk are gone: committed and deleted), below `end`.
    ///
    /// # Errors
    /// When a segment can't be read.
    pub fn read(
        &self,
        partition: Partition,
        from: Offset,
        end: Offset,
        max: usize,
    ) -> Result<Vec<(Offset, Vec<u8>)>, TransportError> {
        let wanted: Vec<(Offset, Place, Arc<File>, PathBuf)> = {
            let state = self.lock();
            let Some(index) = state.index.get(partition as usize) else {
                return Err(TransportError::Storage(format!("no partition {partition}")));
            };
            let from = from.max(index.first);
            let end = end.min(index.end());
            (from..end)
                .take(max)
                .filter_map(|offset| {
                    let place = *index.places.get((offset - index.first) as usize)?;
                    let segment = state.segments.get(&place.segment)?;
                    Some((offset, place, segment.file.clone(), segment.path.clone()))
                })
                .collect()
        };
        wanted
            .into_iter()
            .map(|(offset, place, file, path)| {
                let mut payload = vec![0; place.len as usize];
                file.read_exact_at(&mut payload, place.pos)
                    .map_err(io("reading", &path))?;
                Ok((offset, payload))
            })
            .collect()
    }

    /// Commits `next` for each partition given (offsets only move forward), and deletes
    /// the segments every partition has committed past. The offsets file is written (and
    /// synced) before a segment goes, and otherwise at most every [`PERSIST_EVERY`]: a crash
    /// replays the records of the last few seconds again (the store's writes are
    /// idempotent), and a commit costs no fsync.
    ///
    /// # Errors
    /// When the offsets can't be written (they stay as they were on disk).
    pub fn commit(&self, offsets: &[(Partition, Offset)]) -> Result<(), TransportError> {
        let mut state = self.lock();
        let mut changed = false;
        for (p, next) in offsets {
            let Some(committed) = state.committed.get_mut(*p as usize) else {
                return Err(TransportError::Storage(format!("no partition {p}")));
            };
            if *next > *committed {
                *committed = *next;
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        let State {
            index, committed, ..
        } = &mut *state;
        for (index, committed) in index.iter_mut().zip(committed.iter()) {
            while index.first < *committed && !index.places.is_empty() {
                index.places.pop_front();
                index.first += 1;
            }
            index.first = index.first.max(*committed);
        }
        let due = state.persisted_at.elapsed() >= PERSIST_EVERY;
        drop(state);
        self.reclaim(false, due)
    }

    /// Deletes the active segment too when every record in it is committed, and writes the
    /// committed offsets: the writer's call when idle, and at close.
    ///
    /// # Errors
    /// When the offsets can't be written or a file can't be deleted.
    pub fn reclaim_idle(&self) -> Result<(), TransportError> {
        self.reclaim(true, true)
    }

    /// Deletes the sealed segments (and the active one, with `active`) whose records are
    /// all committed, once the offsets past them are written; writes the offsets anyway
    /// with `persist_due`.
    fn reclaim(&self, active: bool, persist_due: bool) -> Result<(), TransportError> {
        let _one = self
            .reclaiming
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (done, committed, moved) = {
            let state = self.lock();
            let newest = state.segments.keys().next_back().copied();
            let done: Vec<u64> = state
                .segments
                .iter()
                .filter(|(id, _)| active || !state.active || Some(**id) != newest)
                .filter(|(_, s)| {
                    s.last
                        .iter()
                        .all(|(p, last)| *last < state.committed[*p as usize])
                })
                .map(|(id, _)| *id)
                .collect();
            let moved = state.persisted != state.committed;
            (done, state.committed.clone(), moved)
        };
        let writing = !done.is_empty() || persist_due;
        // Deleted records must never be asked for again: the offsets past them first.
        // Committed offsets only move on, so `done` stays done whatever commits meanwhile.
        if writing && moved {
            write_offsets(&self.dir, &committed)?;
        }
        let gone: Vec<PathBuf> = {
            let mut state = self.lock();
            if writing {
                state.persisted = committed;
                state.persisted_at = Instant::now();
            }
            let newest = state.segments.keys().next_back().copied();
            done.iter()
                .filter_map(|id| {
                    if Some(*id) == newest {
                        state.active = false;
                    }
                    state.segments.remove(id).map(|s| s.path)
                })
                .collect()
        };
        for path in gone {
            // Readers holding the file keep reading it; the name goes now.
            std::fs::remove_file(&path).map_err(io("deleting", &path))?;
        }
        Ok(())
    }
}

/// The last segment's id, file, path and length: where the next frame goes.
fn last_segment(state: &State) -> Result<(u64, Arc<File>, PathBuf, u64), TransportError> {
    let (id, segment) = state
        .segments
        .iter()
        .next_back()
        .ok_or_else(|| TransportError::Storage("no active segment".into()))?;
    Ok((*id, segment.file.clone(), segment.path.clone(), segment.len))
}

/// The CRC of a frame: of its partition, offset and payload.
fn crc(p: Partition, offset: Offset, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&p.to_le_bytes());
    h.update(&offset.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Reads segment `id` at `path` into `state`'s index; a torn end of the `last` segment is
/// cut off.
fn recover(path: &Path, state: &mut State, id: u64, last: bool) -> Result<Segment, TransportError> {
    let file = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("opening", path))?;
    let size = file.metadata().map_err(io("reading", path))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, &file);
    let mut pos = 0u64;
    let mut segment_last = BTreeMap::new();
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    let torn = loop {
        if pos == size {
            break None;
        }
        if reader.read_exact(&mut header).is_err() {
            break Some("a frame header cut short");
        }
        let field = |at: usize, n: usize| &header[at..at + n];
        let u32_at = |at| u32::from_le_bytes(field(at, 4).try_into().unwrap_or_default());
        let (len, sum, p) = (u32_at(0), u32_at(4), u32_at(8));
        let offset = u64::from_le_bytes(field(12, 8).try_into().unwrap_or_default());
        if len > MAX_PAYLOAD || pos + (HEADER as u64) + u64::from(len) > size {
            break Some("a frame longer than the file");
        }
        payload.resize(len as usize, 0);
        if reader.read_exact(&mut payload).is_err() {
            break Some("a frame cut short");
        }
        if crc(p, offset, &payload) != sum {
            break Some("a frame whose checksum does not match");
        }
        let Some(index) = state.index.get_mut(p as usize) else {
            return Err(corrupt(
                path,
                format!("a record of partition {p}, which the log has not"),
            ));
        };
        if !index.places.is_empty() && offset != index.end() {
            return Err(corrupt(
                path,
                format!(
                    "partition {p}'s offset {offset} follows {}",
                    index.end() - 1
                ),
            ));
        }
        segment_last.insert(p, offset);
        if offset >= state.committed[p as usize] {
            if index.places.is_empty() {
                index.first = offset;
            }
            index.places.push_back(Place {
                segment: id,
                pos: pos + HEADER as u64,
                len,
            });
        }
        pos += HEADER as u64 + u64::from(len);
    };
    if let Some(what) = torn {
        if !last {
            return Err(corrupt(path, format!("{what} at byte {pos}")));
        }
        // Never acknowledged: its fsync had not returned.
        tracing::warn!(file = %path.display(), at = pos, "Cutting a torn append off the log's end ({what}).");
        file.set_len(pos).map_err(io("truncating", path))?;
        file.sync_all().map_err(io("syncing", path))?;
    }
    Ok(Segment {
        file: Arc::new(file),
        path: path.to_owned(),
        len: pos,
        last: segment_last,
    })
}

fn read_offsets(path: &Path) -> Result<Vec<Offset>, TransportError> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let bad = |what: &str| corrupt(path, what);
    let (body, sum) = bytes
        .split_last_chunk::<4>()
        .ok_or_else(|| bad("shorter than its header"))?;
    if crc32fast::hash(body) != u32::from_le_bytes(*sum) {
        return Err(bad("its checksum does not match"));
    }
    let rest = body
        .strip_prefix(OFFSETS_MAGIC)
        .ok_or_else(|| bad("not an offsets file"))?;
    let (count, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("no partition count"))?;
    let count = u32::from_le_bytes(*count) as usize;
    if rest.len() != count * 8 {
        return Err(bad("its length does not match its partition count"));
    }
    Ok(rest
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

/// Replaces `dir/offsets` with `committed`, durably: written and synced aside, renamed over
/// the old one, and the directory synced (segments are deleted only after).
fn write_offsets(dir: &Path, committed: &[Offset]) -> Result<(), TransportError> {
    let mut body = OFFSETS_MAGIC.to_vec();
    body.extend_from_slice(&(committed.len() as u32).to_le_bytes());
    for c in committed {
        body.extend_from_slice(&c.to_le_bytes());
    }
    body.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let aside = dir.join("offsets.new");
    let mut file = File::create(&aside).map_err(io("creating", &aside))?;
    file.write_all(&body).map_err(io("writing", &aside))?;
    file.sync_data().map_err(io("syncing", &aside))?;
    let path = dir.join("offsets");
    std::fs::rename(&aside, &path).map_err(io("replacing", &path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), TransportError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(log: &Segments, p: Partition) -> Vec<(Offset, Vec<u8>)> {
        log.read(p, 0, Offset::MAX, usize::MAX).expect("read")
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("segments"))
            .expect("dir")
            .count()
    }

    #[test]
    fn records_survive_a_reopen_and_committed_segments_are_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = vec![7u8; (SEGMENT_BYTES / 3) as usize];
        {
            let log = Segments::open(dir.path(), 2).expect("open");
            for offset in 0..4 {
                log.append(&[(0, offset, big.as_slice()), (1, offset, b"small")])
                    .expect("append");
            }
            // 4 appends of a third of a segment: the fourth starts a second segment.
            assert_eq!(files(dir.path()), 2);
        }
        let log = Segments::open(dir.path(), 2).expect("reopen");
        assert_eq!(log.positions(), vec![(0, 4), (0, 4)]);
        assert_eq!(payloads(&log, 1)[3], (3, b"small".to_vec()));
        // Partition 0 past the first segment, 1 not: nothing goes.
        log.commit(&[(0, 3)]).expect("commit");
        assert_eq!(files(dir.path()), 2);
        assert_eq!(payloads(&log, 0).len(), 1, "committed records are not read");
        log.commit(&[(1, 3)]).expect("commit");
        assert_eq!(files(dir.path()), 1, "the first segment is processed");
        // The active segment goes only when idle, and offsets go on after it.
        log.commit(&[(0, 4), (1, 4)]).expect("commit");
        assert_eq!(files(dir.path()), 1);
        log.reclaim_idle().expect("reclaim");
        assert_eq!(files(dir.path()), 0);
        drop(log);
        let log = Segments::open(dir.path(), 2).expect("reopen");
        assert_eq!(log.positions(), vec![(4, 4), (4, 4)]);
        log.append(&[(1, 4, b"again")]).expect("append");
        assert_eq!(payloads(&log, 1), vec![(4, b"again".to_vec())]);
    }

    #[test]
    fn a_torn_end_is_cut_off_and_corruption_before_it_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = Segments::open(dir.path(), 1).expect("open");
            log.append(&[(0, 0, b"first")]).expect("append");
            log.append(&[(0, 1, b"second")]).expect("append");
        }
        let segment = dir.path().join("segments").join(format!("{:020}.log", 0));
        let whole = std::fs::read(&segment).expect("read");
        // A crash in the middle of the second frame's write.
        std::fs::write(&segment, &whole[..whole.len() - 3]).expect("tear");
        {
            let log = Segments::open(dir.path(), 1).expect("reopen");
            assert_eq!(payloads(&log, 0), vec![(0, b"first".to_vec())]);
            log.append(&[(0, 1, b"again")])
                .expect("append after the cut");
            assert_eq!(payloads(&log, 0)[1], (1, b"again".to_vec()));
        }
        // A flipped bit in a sealed segment is not a torn end: refused, naming the file.
        let mut bytes = std::fs::read(&segment).expect("read");
        bytes[HEADER + 1] ^= 1;
        std::fs::write(&segment, &bytes).expect("flip");
        std::fs::write(
            dir.path().join("segments").join(format!("{:020}.log", 1)),
            b"",
        )
        .expect("a later segment");
        let err = Segments::open(dir.path(), 1).err().expect("refused");
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(
            err.to_string().contains("00000000000000000000.log"),
            "{err}"
        );
    }

    #[test]
    fn a_commit_is_written_before_a_segment_goes_and_at_idle_not_at_every_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = Segments::open(dir.path(), 1).expect("open");
            log.append(&[(0, 0, b"a"), (0, 1, b"b")]).expect("append");
            log.commit(&[(0, 1)]).expect("commit");
            // A crash now (no idle call): the commit was in memory only.
        }
        let log = Segments::open(dir.path(), 1).expect("reopen");
        assert_eq!(log.positions(), vec![(0, 2)], "record 0 is processed again");
        log.commit(&[(0, 1)]).expect("commit");
        log.reclaim_idle().expect("idle");
        drop(log);
        let log = Segments::open(dir.path(), 1).expect("reopen");
        assert_eq!(log.positions(), vec![(1, 2)]);
        assert_eq!(payloads(&log, 0), vec![(1, b"b".to_vec())]);
    }

    #[test]
    fn appends_and_reads_go_on_while_a_reclaim_writes_offsets_and_deletes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Segments::open(dir.path(), 1).expect("open");
        log.append(&[(0, 0, b"a")]).expect("append");
        // A reclaim stuck in its fsyncs and unlinks holds only `reclaiming`.
        let stuck = log.reclaiming.lock().expect("reclaiming");
        std::thread::scope(|s| {
            let committing = s.spawn(|| log.commit(&[(0, 1)]));
            // The commit has moved the offset and now waits for the reclaim.
            while log.positions()[0].0 < 1 {
                std::thread::yield_now();
            }
            log.append(&[(0, 1, b"b")])
                .expect("append during the reclaim");
            assert_eq!(payloads(&log, 0), vec![(1, b"b".to_vec())]);
            drop(stuck);
            committing.join().expect("join").expect("commit");
        });
    }

    #[test]
    fn commits_racing_appends_delete_only_what_is_processed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = vec![3u8; (SEGMENT_BYTES / 4) as usize];
        let appended = 40;
        {
            let log = Segments::open(dir.path(), 1).expect("open");
            std::thread::scope(|s| {
                let committer = s.spawn(|| {
                    let mut next = 0;
                    while next < appended - 2 {
                        let end = log.positions()[0].1;
                        // Up to two behind the end, so records stay unprocessed.
                        if end > next + 2 {
                            next = end - 2;
                            log.commit(&[(0, next)]).expect("commit");
                        }
                        std::thread::yield_now();
                    }
                    log.reclaim_idle().expect("reclaim");
                    next
                });
                for offset in 0..appended {
                    log.append(&[(0, offset, big.as_slice())]).expect("append");
                }
                let committed = committer.join().expect("join");
                assert_eq!(log.positions(), vec![(committed, appended)]);
            });
            // About 10 segments were written, all but the last two or three deleted.
            assert!(
                files(dir.path()) <= 2,
                "{} segments left",
                files(dir.path())
            );
        }
        let log = Segments::open(dir.path(), 1).expect("reopen");
        let (committed, end) = log.positions()[0];
        assert_eq!((committed, end), (appended - 2, appended));
        let offsets: Vec<Offset> = payloads(&log, 0).iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, vec![appended - 2, appended - 1]);
    }

    #[test]
    fn a_log_opens_once_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Segments::open(dir.path(), 1).expect("open");
        let err = Segments::open(dir.path(), 1).err().expect("refused");
        assert!(err.to_string().contains("one at a time"), "{err}");
        drop(log);
        Segments::open(dir.path(), 1).expect("open again once closed");
    }

    #[test]
    fn another_partition_count_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Segments::open(dir.path(), 4).expect("open"));
        let err = Segments::open(dir.path(), 2).err().expect("refused");
        assert!(matches!(
            err,
            TransportError::PartitionCount {
                found: 4,
                configured: 2,
                ..
            }
        ));
    }
}
