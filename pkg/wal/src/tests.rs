use std::{fs, sync::Arc};

use super::*;

fn payloads(records: &[Record]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.payload.clone()).collect()
}

/// Returns the bytes the log stores for `payload`.
fn stored(payload: &[u8]) -> Vec<u8> {
    Compressors::default().compress(payload)
}

fn record(i: usize) -> Vec<u8> {
    format!("record {i} {}", "x".repeat(i % 37)).into_bytes()
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let written: Vec<Vec<u8>> = (0..100).map(record).collect();
    for p in &written {
        wal.append(p).unwrap();
    }
    wal.append(b"").unwrap();
    drop(wal);
    let (records, report) = replay(dir.path()).unwrap();
    let mut expected = written.clone();
    expected.push(Vec::new());
    assert_eq!(payloads(&records), expected);
    assert_eq!(report.records, 101);
    assert!(report.skipped.is_empty(), "{report:?}");

    // Reopening appends after the old records, in a new segment.
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.current_segment(), 2);
    wal.append(b"after").unwrap();
    let (records, _) = replay(dir.path()).unwrap();
    assert_eq!(records.len(), 102);
    assert_eq!(records.last().unwrap().payload, b"after");
    assert_eq!(records.last().unwrap().segment, 2);
}

#[test]
fn group_commit_from_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), WalOptions::default()).unwrap());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    wal.append(format!("{t}:{i}").as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (records, report) = replay(dir.path()).unwrap();
    assert_eq!(records.len(), 16 * 50);
    assert!(report.skipped.is_empty());
    // Each thread's records are durable in the order it appended them.
    for t in 0..16 {
        let mine: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8(r.payload.clone()).unwrap())
            .filter(|p| p.starts_with(&format!("{t}:")))
            .collect();
        let expected: Vec<String> = (0..50).map(|i| format!("{t}:{i}")).collect();
        assert_eq!(mine, expected);
    }
}

#[test]
fn torn_last_record_is_truncated_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    for i in 0..10 {
        wal.append(&record(i)).unwrap();
    }
    drop(wal);
    let path = segment_path(dir.path(), 1);
    let full = fs::metadata(&path).unwrap().len();
    let last_len = RECORD_HEADER_LEN + stored(&record(9)).len() as u64;
    // Cut the last record in the middle of its payload.
    let cut = full - last_len / 2;
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let (records, report) = replay(dir.path()).unwrap();
    assert_eq!(payloads(&records), (0..9).map(record).collect::<Vec<_>>());
    assert_eq!(
        report.skipped,
        vec![Skipped {
            segment: 1,
            offset: full - last_len,
            bytes: cut - (full - last_len),
            damage: Damage::TornTail,
        }]
    );
    // The tail is gone: a second replay is clean and appending works.
    assert_eq!(fs::metadata(&path).unwrap().len(), full - last_len);
    let (again, report) = replay(dir.path()).unwrap();
    assert_eq!(again.len(), 9);
    assert!(report.skipped.is_empty());
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append(b"next").unwrap();
    let (records, report) = replay(dir.path()).unwrap();
    assert_eq!(records.len(), 10);
    assert!(report.skipped.is_empty());
}

#[test]
fn flipped_byte_skips_one_record_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let mut offsets = Vec::new();
    let mut offset = HEADER_LEN;
    for i in 0..10 {
        offsets.push(offset);
        offset += RECORD_HEADER_LEN + stored(&record(i)).len() as u64;
        wal.append(&record(i)).unwrap();
    }
    drop(wal);
    let path = segment_path(dir.path(), 1);
    let mut data = fs::read(&path).unwrap();
    // A byte inside record 4's payload.
    let at = (offsets[4] + RECORD_HEADER_LEN + 3) as usize;
    data[at] ^= 0x40;
    fs::write(&path, &data).unwrap();

    let (records, report) = replay(dir.path()).unwrap();
    let expected: Vec<Vec<u8>> = (0..10).filter(|&i| i != 4).map(record).collect();
    assert_eq!(payloads(&records), expected);
    assert_eq!(
        report.skipped,
        vec![Skipped {
            segment: 1,
            offset: offsets[4],
            bytes: RECORD_HEADER_LEN + stored(&record(4)).len() as u64,
            damage: Damage::BadChecksum,
        }]
    );
    // Starting again is not stopped by the damage.
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append(b"next").unwrap();
}

#[test]
fn damaged_header_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(segment_path(dir.path(), 3), b"garbage").unwrap();
    let (records, report) = replay(dir.path()).unwrap();
    assert!(records.is_empty());
    assert_eq!(report.skipped[0].damage, Damage::BadHeader);
    let (_, report) = replay(dir.path()).unwrap();
    assert!(report.skipped.is_empty());
}

#[test]
fn rotation_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        max_segment_bytes: 200,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), options).unwrap();
    for i in 0..20 {
        wal.append(&record(i)).unwrap();
    }
    let segs = segments(dir.path()).unwrap();
    assert!(segs.len() >= 3, "size-based rotation: {segs:?}");
    let closed = wal.rotate().unwrap();
    assert_eq!(closed + 1, wal.current_segment());
    wal.append(b"after rotate").unwrap();

    let (records, _) = replay(dir.path()).unwrap();
    assert_eq!(records.len(), 21);
    let keep_from = records[10].segment;
    let deleted = wal.delete_before(keep_from).unwrap();
    assert_eq!(deleted as u64, keep_from - 1);
    let (records, report) = replay(dir.path()).unwrap();
    assert!(report.skipped.is_empty());
    assert_eq!(records.first().unwrap().segment, keep_from);
    assert_eq!(records.last().unwrap().payload, b"after rotate");

    // The current segment is never deleted.
    wal.delete_before(u64::MAX).unwrap();
    assert_eq!(segments(dir.path()).unwrap(), vec![wal.current_segment()]);
}

#[test]
fn unknown_version_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = header();
    h[8..].copy_from_slice(&99u32.to_le_bytes());
    fs::write(segment_path(dir.path(), 1), h).unwrap();
    assert!(matches!(
        replay(dir.path()),
        Err(Error::Version { version: 99, .. })
    ));
}

#[test]
fn a_second_process_cannot_open_a_locked_directory() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    // flock is per open file description: a second open in this process
    // contends like another process would.
    let err = Wal::open(dir.path(), WalOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("-ingester.wal-dir"), "{message}");
    drop(wal);
    Wal::open(dir.path(), WalOptions::default()).expect("free once the first one closed");
}

#[test]
fn version_1_segments_of_uncompressed_records_still_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Vec::from(&MAGIC[..]);
    data.extend_from_slice(&UNCOMPRESSED_VERSION.to_le_bytes());
    for payload in [&b"one"[..], b"two"] {
        data.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        data.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        data.extend_from_slice(payload);
    }
    fs::write(segment_path(dir.path(), 1), &data).unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append(b"three").unwrap();
    drop(wal);
    let (records, report) = replay(dir.path()).unwrap();
    assert_eq!(
        payloads(&records),
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
    assert!(report.skipped.is_empty());
}

#[test]
fn records_are_stored_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let payload = b"main;work;hot_function ".repeat(1000);
    wal.append(&payload).unwrap();
    drop(wal);
    let size = fs::metadata(segment_path(dir.path(), 1)).unwrap().len();
    assert!(
        size < payload.len() as u64 / 10,
        "{size} bytes for {}",
        payload.len()
    );
    let (records, _) = replay(dir.path()).unwrap();
    assert_eq!(records[0].payload, payload);
}

#[test]
fn replay_progress_counts_every_byte_of_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            max_segment_bytes: 64,
            fsync: false,
        },
    )
    .unwrap();
    for i in 0..20u32 {
        wal.append(&i.to_le_bytes().repeat(10)).unwrap();
    }
    drop(wal);
    let on_disk: u64 = segments(dir.path())
        .unwrap()
        .iter()
        .map(|&s| fs::metadata(segment_path(dir.path(), s)).unwrap().len())
        .sum();
    assert!(segments(dir.path()).unwrap().len() > 2, "several segments");
    let progress = ReplayProgress::default();
    let (records, _) = replay_with(dir.path(), &progress).unwrap();
    assert_eq!(records.len(), 20);
    assert_eq!(progress.bytes_total(), on_disk);
    assert_eq!(progress.bytes_read(), on_disk);
}

#[test]
fn a_record_that_does_not_decompress_is_skipped_in_order_with_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut segment = header().to_vec();
    let mut offsets = Vec::new();
    let mut push = |stored: &[u8], crc: u32| {
        offsets.push(segment.len() as u64);
        segment.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        segment.extend_from_slice(&crc.to_le_bytes());
        segment.extend_from_slice(stored);
    };
    let intact = |i| {
        let bytes = stored(&record(i));
        let crc = crc32fast::hash(&bytes);
        (bytes, crc)
    };
    // Record 9 claims 100 bytes of payload that its frame does not hold, as
    // a broken writer would store it, under a matching checksum; record 15
    // has a wrong checksum.
    let broken = [100u32.to_le_bytes().as_slice(), b"not a zstd frame"].concat();
    for i in 0..22 {
        match i {
            9 => push(&broken, crc32fast::hash(&broken)),
            15 => push(&intact(i).0, intact(i).1 ^ 1),
            _ => push(&intact(i).0, intact(i).1),
        }
    }
    fs::write(segment_path(dir.path(), 1), &segment).unwrap();

    let progress = ReplayProgress::default();
    let (records, report) = replay_with(dir.path(), &progress).unwrap();
    let kept: Vec<usize> = (0..22).filter(|i| ![9, 15].contains(i)).collect();
    assert_eq!(
        payloads(&records),
        kept.iter().map(|&i| record(i)).collect::<Vec<_>>()
    );
    let offsets_kept: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets_kept,
        kept.iter().map(|&i| offsets[i]).collect::<Vec<_>>()
    );
    assert_eq!(report.records, 20);
    let skipped: Vec<(u64, Damage)> = report
        .skipped
        .iter()
        .map(|s| (s.offset, s.damage))
        .collect();
    assert_eq!(
        skipped,
        [
            (offsets[9], Damage::BadChecksum),
            (offsets[15], Damage::BadChecksum)
        ]
    );
    assert_eq!(
        report.skipped[0].bytes,
        RECORD_HEADER_LEN + broken.len() as u64
    );
    assert_eq!(progress.bytes_read(), segment.len() as u64);
}
