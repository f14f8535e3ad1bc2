//! The embedded log of the releases before segment files: a fjall database with one
//! keyspace per partition (big-endian offset → record) and an `offsets` keyspace of
//! committed offsets. Read only to move its unprocessed records into segments, once.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use super::segments::Segments;
use super::{Offset, Partition, Record, TransportError};
use crate::format;
use crate::point::Point;
use crate::tenant::TenantId;

/// fjall's marker file: a fjall database is in the directory.
const FJALL_MARKER: &str = "version";

/// The one consumer group's name in the offsets keyspace.
const GROUP: &str = "pipeline";

/// Records moved per append to the segments.
const MOVE_BATCH: usize = 1_000;

fn storage(e: impl std::fmt::Display) -> TransportError {
    TransportError::Storage(format!("moving the log out of fjall: {e}"))
}

/// Moves a fjall log in `dir` into segment files there: its records not yet committed
/// (with their offsets) and its committed offsets, then deletes its files. The new files
/// are written aside and renamed in; a crash before that moves it again from the start,
/// a crash after it only leaves fjall's files to delete. Nothing to do without a fjall
/// log.
///
/// # Errors
/// When the fjall log can't be read, holds another number of partitions
/// ([`TransportError::PartitionCount`]), or the segments can't be written.
pub fn migrate(dir: &Path, partitions: u32) -> Result<(), TransportError> {
    if !dir.join(FJALL_MARKER).is_file() {
        return Ok(());
    }
    if !Segments::exists(dir) {
        move_records(dir, partitions)?;
    }
    // The segments hold everything now.
    for entry in std::fs::read_dir(dir).map_err(storage)? {
        let path = entry.map_err(storage)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "keyspaces" || name == "migrating" {
            std::fs::remove_dir_all(&path).map_err(storage)?;
        } else if name == FJALL_MARKER || name == "lock" || name.ends_with(".jnl") {
            std::fs::remove_file(&path).map_err(storage)?;
        }
    }
    tracing::info!(dir = %dir.display(), "Moved the embedded log from fjall into segment files.");
    Ok(())
}

fn move_records(dir: &Path, partitions: u32) -> Result<(), TransportError> {
    let db = Database::builder(dir).open().map_err(storage)?;
    let found = (0..)
        .take_while(|p| db.keyspace_exists(&format!("p{p}")))
        .count() as u32;
    if found != 0 && found != partitions {
        return Err(TransportError::PartitionCount {
            place: dir.display().to_string(),
            found,
            configured: partitions,
        });
    }
    let offsets = db
        .keyspace("offsets", KeyspaceCreateOptions::default)
        .map_err(storage)?;
    let aside = dir.join("migrating");
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(storage)?;
    }
    let segments = Segments::open(&aside, partitions)?;
    let mut committed = Vec::new();
    for p in 0..found {
        let keyspace = db
            .keyspace(&format!("p{p}"), KeyspaceCreateOptions::default)
            .map_err(storage)?;
        let from = offset_at(&offsets, &offset_key(p))?.unwrap_or(0);
        // Records before this offset are in the format of releases before versioned
        // records (all of them, when the key is missing).
        let v1_from = offset_at(&offsets, &format_key(p))?.unwrap_or(Offset::MAX);
        let mut batch: Vec<(Partition, Offset, Vec<u8>)> = Vec::new();
        for kv in keyspace.range(from.to_be_bytes()..) {
            let (key, value) = kv.into_inner().map_err(storage)?;
            let offset = decode_offset(&key)?;
            batch.push((p, offset, reencoded(offset, v1_from, value.to_vec())));
            if batch.len() == MOVE_BATCH {
                append(&segments, &mut batch)?;
            }
        }
        append(&segments, &mut batch)?;
        committed.push((p, from.max(highest_commit(&offsets, p)?)));
    }
    segments.commit(&committed)?;
    // Writes the offsets (nothing appends now).
    segments.reclaim_idle()?;
    drop(segments);
    drop(db);
    std::fs::rename(aside.join("segments"), dir.join("segments")).map_err(storage)?;
    // The commit point: with `offsets` in place, the segments are the log.
    std::fs::rename(aside.join("offsets"), dir.join("offsets")).map_err(storage)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(storage)
}

/// A record in the versioned format: one of the format before it re-encoded, or as it was
/// (undecodable bytes stay so, and are dead-lettered when read).
fn reencoded(offset: Offset, v1_from: Offset, bytes: Vec<u8>) -> Vec<u8> {
    if offset >= v1_from {
        return bytes;
    }
    match postcard::from_bytes::<Legacy>(&bytes) {
        Ok(Legacy { tenant, points }) => format::encode_record(&mut Record::new(tenant, points)),
        Err(_) => bytes,
    }
}

/// A record as the releases before the versioned format wrote it: postcard's encoding.
#[derive(serde::Deserialize)]
struct Legacy {
    tenant: TenantId,
    points: Vec<Point>,
}

fn append(
    segments: &Segments,
    batch: &mut Vec<(Partition, Offset, Vec<u8>)>,
) -> Result<(), TransportError> {
    let frames: Vec<(Partition, Offset, &[u8])> = batch
        .iter()
        .map(|(p, o, b)| (*p, *o, b.as_slice()))
        .collect();
    segments.append(&frames)?;
    batch.clear();
    Ok(())
}

/// The key of partition `p`'s first offset in the versioned record format.
fn format_key(p: Partition) -> Vec<u8> {
    let mut key = b"#record-format-1-from/".to_vec();
    key.extend_from_slice(&p.to_be_bytes());
    key
}

fn offset_key(p: Partition) -> Vec<u8> {
    let mut key = GROUP.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&p.to_be_bytes());
    key
}

fn offset_at(offsets: &Keyspace, key: &[u8]) -> Result<Option<Offset>, TransportError> {
    offsets
        .get(key)
        .map_err(storage)?
        .map(|v| decode_offset(&v))
        .transpose()
}

fn decode_offset(bytes: &[u8]) -> Result<Offset, TransportError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| storage("an offset is not 8 bytes"))?;
    Ok(Offset::from_be_bytes(arr))
}

/// The highest offset any group committed for `p`: a truncated partition's records went
/// up to it, so offsets go on after it.
fn highest_commit(offsets: &Keyspace, p: Partition) -> Result<Offset, TransportError> {
    let mut max = 0;
    for kv in offsets.iter() {
        let (key, value) = kv.into_inner().map_err(storage)?;
        if key.ends_with(&p.to_be_bytes()) && key.len() > 4 && key[key.len() - 5] == 0 {
            max = max.max(decode_offset(&value)?);
        }
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};
    use crate::tenant::TenantId;
    use fjall::PersistMode;

    fn record(lp: &str) -> Record {
        Record::new(TenantId::new("a"), parse(lp, Precision::Nanoseconds, 0).0)
    }

    #[test]
    fn a_fjall_log_moves_into_segments_with_its_offsets_and_old_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = record("m,h=x v=1.5,s=\"é\" 7");
        let mut new = record("m v=2 8");
        {
            let db = Database::builder(dir.path()).open().expect("db");
            let p = |n: u32| {
                db.keyspace(&format!("p{n}"), KeyspaceCreateOptions::default)
                    .expect("partition")
            };
            let (p0, p1) = (p(0), p(1));
            let offsets = db
                .keyspace("offsets", KeyspaceCreateOptions::default)
                .expect("offsets");
            // Partition 0: a legacy record and a versioned one.
            let old_points = old.points.made().expect("made");
            let legacy = postcard::to_allocvec(&(old.tenant.as_str(), old_points)).expect("bytes");
            p0.insert(1u64.to_be_bytes(), legacy).expect("insert");
            p0.insert(2u64.to_be_bytes(), format::encode_record(&mut new))
                .expect("insert");
            // Partition 0 committed through 1, its records versioned from 2; partition 1
            // committed (and truncated) through 5.
            let marks = [
                (offset_key(0), 1u64),
                (format_key(0), 2),
                (offset_key(1), 5),
                (format_key(1), 0),
            ];
            for (key, offset) in marks {
                offsets.insert(key, offset.to_be_bytes()).expect("offset");
            }
            drop(p1);
            db.persist(PersistMode::SyncData).expect("persist");
        }
        migrate(dir.path(), 2).expect("migrate");
        assert!(
            !dir.path().join("keyspaces").exists(),
            "fjall's files are gone"
        );
        assert!(!dir.path().join(FJALL_MARKER).exists());
        let segments = Segments::open(dir.path(), 2).expect("segments");
        assert_eq!(segments.positions(), vec![(1, 3), (5, 5)]);
        let got: Vec<(Offset, Record)> = segments
            .read(0, 0, Offset::MAX, 10)
            .expect("read")
            .into_iter()
            .map(|(o, b)| (o, format::decode_record(&b).expect("versioned")))
            .collect();
        assert_eq!(got, vec![(1, old), (2, new)]);
        // Once moved, a second open has nothing to move.
        drop(segments);
        migrate(dir.path(), 2).expect("again");
    }

    #[test]
    fn a_fjall_log_of_another_partition_count_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = Database::builder(dir.path()).open().expect("db");
            for p in 0..4 {
                db.keyspace(&format!("p{p}"), KeyspaceCreateOptions::default)
                    .expect("partition");
            }
            db.persist(PersistMode::SyncData).expect("persist");
        }
        let err = migrate(dir.path(), 2).expect_err("refused");
        assert!(
            matches!(err, TransportError::PartitionCount { found: 4, .. }),
            "{err}"
        );
        assert!(dir.path().join(FJALL_MARKER).exists());
    }
}
