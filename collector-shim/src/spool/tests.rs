use std::sync::Arc;

use super::*;
use crate::config::{FsyncPolicy, SpoolConfig};

fn config(dir: &Path, segment_bytes: u64, max_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_owned(),
        max_bytes,
        segment_bytes,
        fsync: FsyncPolicy::Always,
    }
}

fn open(config: &SpoolConfig) -> (Spool, Vec<Pending>) {
    Spool::open(config, Arc::new(Metrics::default())).unwrap()
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

#[test]
fn unacknowledged_records_survive_a_restart_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20, 1 << 30);
    {
        let (spool, pending) = open(&config);
        assert!(pending.is_empty());
        let a = spool.append(b"first", 1).unwrap();
        let b = spool.append(b"second", 2).unwrap();
        let c = spool.append(b"third", 3).unwrap();
        spool.mark_dispatched(b);
        spool.ack(a);
        assert_eq!(spool.usage().0, 5);
        let _ = c;
        // Dropped without any shutdown step: like kill -9 (no fsync of marks either).
    }
    let (spool, pending) = open(&config);
    let ids: Vec<_> = pending
        .iter()
        .map(|p| (p.id, p.spans, p.dispatched))
        .collect();
    assert_eq!(ids, [(1, 2, true), (2, 3, false)]);
    assert_eq!(spool.read(&pending[0]).unwrap(), b"second");
    assert_eq!(spool.read(&pending[1]).unwrap(), b"third");
    assert_eq!(spool.usage().0, 5);
    // New ids continue after the old ones.
    assert_eq!(spool.append(b"fourth", 1).unwrap(), 3);
}

#[test]
fn torn_and_corrupt_tails_are_cut_at_the_last_good_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20, 1 << 30);
    let log = {
        let (spool, _) = open(&config);
        spool.append(b"kept", 1).unwrap();
        spool.append(b"also kept", 1).unwrap();
        log_path(dir.path(), 0)
    };
    let good_len = fs::metadata(&log).unwrap().len();
    // A crash in the middle of a write leaves half a record.
    let mut file = OpenOptions::new().append(true).open(&log).unwrap();
    file.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
    drop(file);
    let (_, pending) = open(&config);
    assert_eq!(pending.len(), 2);
    assert_eq!(fs::metadata(&log).unwrap().len(), good_len);

    // A flipped payload byte fails the CRC: that record and everything after it is cut.
    let mut data = fs::read(&log).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    fs::write(&log, &data).unwrap();
    let (_, pending) = open(&config);
    assert_eq!(pending.len(), 1);
}

#[test]
fn acknowledged_segments_are_deleted_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 64, 1 << 20);
    let (spool, _) = open(&config);
    let ids: Vec<_> = (0..4)
        .map(|_| spool.append(&[7u8; 40], 1).unwrap())
        .collect();
    assert_eq!(
        segment_files(dir.path()).len(),
        4,
        "one 64-byte record per segment"
    );
    for id in &ids[..3] {
        spool.ack(*id);
    }
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "only the active segment is left"
    );
    let (spans, bytes) = spool.usage();
    assert_eq!((spans, bytes), (1, 64));
}

#[test]
fn appends_are_refused_past_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1000, 2000);
    let (spool, _) = open(&config);
    let mut taken = 0;
    loop {
        match spool.append(&[0u8; 176], 1) {
            Ok(_) => taken += 1,
            Err(SpoolError::Full { used, max }) => {
                assert_eq!(max, 2000);
                assert!(used <= 2000);
                break;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(taken, 10, "10 records of 200 bytes fill 2000 bytes");
}

#[test]
fn one_process_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1000, 2000);
    let (_spool, _) = open(&config);
    match Spool::open(&config, Arc::new(Metrics::default())) {
        Err(SpoolError::Locked(_)) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
}
