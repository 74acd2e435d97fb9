use std::io::{Seek, SeekFrom};

use super::*;
use crate::model::AckOutcome;
use crate::testing::{AckProbe, span_batch};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sightline-pq-{tag}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(dir: &Path) -> PersistentConfig {
    PersistentConfig {
        dir: dir.to_path_buf(),
        max_size_bytes: 64 << 20,
        segment_bytes: 4096,
        fsync: FsyncPolicy::Interval,
        fsync_interval: Duration::from_millis(50),
    }
}

fn counted() -> (QueueCounters, IntCounter, IntCounter) {
    let records = IntCounter::new("r", "r").unwrap();
    let bytes = IntCounter::new("b", "b").unwrap();
    (
        QueueCounters {
            corrupt_records: Some(records.clone()),
            corrupt_bytes: Some(bytes.clone()),
            ..Default::default()
        },
        records,
        bytes,
    )
}

fn open(dir: &Path) -> PersistentQueue {
    PersistentQueue::open(config(dir), FullPolicy::Refuse, QueueCounters::default()).unwrap()
}

async fn pop_all(q: &PersistentQueue) -> Vec<(Batch, Ticket)> {
    let mut out = Vec::new();
    while q.pending_records() > 0 {
        out.push(q.pop().await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_push_is_acknowledged_once_written_and_what_is_not_finished_survives_a_restart() {
    let dir = temp_dir("restart");
    let probe = AckProbe::new();
    {
        let q = open(&dir);
        for n in 1..=5 {
            q.push(probe.track(span_batch(n))).await.unwrap();
        }
        // Written: the sources' data is safe now, before anything is sent.
        assert_eq!(probe.count(AckOutcome::Delivered), 5);
        assert_eq!(q.len_items(), 15);
        // Two are finished with, one is taken and then the process "dies".
        let mut popped = pop_all(&q).await;
        assert_eq!(popped[0].0.item_count(), 1);
        assert!(popped[0].0.is_encoded(), "read back as bytes");
        let (_, t0) = popped.remove(0);
        t0.done();
        let (_, t1) = popped.remove(0);
        t1.done();
        // The rest was never finished with (as if the process died while sending).
        for (_, t) in popped {
            t.keep();
        }
    }
    let q = open(&dir);
    let back: Vec<usize> = pop_all(&q)
        .await
        .into_iter()
        .map(|(b, t)| {
            t.done();
            b.item_count()
        })
        .collect();
    assert_eq!(
        back,
        vec![3, 4, 5],
        "unfinished records come back, in order"
    );
    probe.assert_resolved();
    drop(q);
    let q = open(&dir);
    assert_eq!(
        q.pending_records(),
        0,
        "finished records are not sent again"
    );
    assert_eq!(inspect(&dir).unwrap().records, 0);
}

#[tokio::test]
async fn finished_segments_are_deleted_and_the_disk_bound_pushes_back() {
    let dir = temp_dir("bound");
    let mut cfg = config(&dir);
    let one = {
        let b = span_batch(20);
        (HEADER + BODY_PREFIX + b.encoded_len()) as u64
    };
    cfg.max_size_bytes = one * 3;
    cfg.segment_bytes = one * 2;
    let q = PersistentQueue::open(cfg, FullPolicy::Refuse, QueueCounters::default()).unwrap();
    for _ in 0..3 {
        q.push(span_batch(20)).await.unwrap();
    }
    assert!(matches!(
        q.push(span_batch(20)).await,
        Err(ConsumeError::Full)
    ));
    let popped = pop_all(&q).await;
    assert_eq!(segment_files(&dir).unwrap().len(), 2);
    drop(popped);
    // All finished: the first segment is gone, room is back.
    assert_eq!(segment_files(&dir).unwrap().len(), 1);
    q.push(span_batch(20)).await.unwrap();
}

#[tokio::test]
async fn a_send_cut_off_keeps_its_record_for_the_next_start() {
    let dir = temp_dir("keep");
    {
        let q = open(&dir);
        q.push(span_batch(2)).await.unwrap();
        q.push(span_batch(3)).await.unwrap();
        let (b, t) = q.pop().await.unwrap();
        assert_eq!(b.item_count(), 2);
        t.keep();
        let (b, t) = q.pop().await.unwrap();
        assert_eq!(b.item_count(), 2, "kept records go back to the front");
        t.keep();
        assert!(
            q.drain_all().is_empty(),
            "a persistent queue keeps what is queued"
        );
    }
    let q = open(&dir);
    assert_eq!(q.pending_records(), 2);
}

#[tokio::test]
async fn a_torn_tail_is_cut_counted_and_start_up_goes_on() {
    let dir = temp_dir("torn");
    {
        let q = open(&dir);
        q.push(span_batch(4)).await.unwrap();
        q.push(span_batch(5)).await.unwrap();
    }
    let (_, path) = segment_files(&dir)
        .unwrap()
        .into_iter()
        .next_back()
        .unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    // Cut the file in the middle of the second record.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let report = inspect(&dir).unwrap();
    assert_eq!((report.records, report.corrupt_records), (1, 1));
    let (counters, records, bytes) = counted();
    let q = PersistentQueue::open(config(&dir), FullPolicy::Refuse, counters).unwrap();
    assert_eq!(records.get(), 1);
    assert!(bytes.get() > 0);
    let back = pop_all(&q).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0.item_count(), 4);
    // The tail was cut: appending goes on cleanly, and a second open finds no damage.
    q.push(span_batch(6)).await.unwrap();
    drop(back);
    drop(q);
    assert_eq!(inspect(&dir).unwrap().corrupt_records, 0);
    assert_eq!(open(&dir).pending_records(), 1);
}

#[tokio::test]
async fn flipped_bytes_in_an_older_segment_lose_only_that_segment_s_rest() {
    let dir = temp_dir("flip");
    let mut cfg = config(&dir);
    cfg.segment_bytes = 1; // one record per segment
    {
        let q = PersistentQueue::open(cfg.clone(), FullPolicy::Refuse, QueueCounters::default())
            .unwrap();
        for n in [1, 2, 3] {
            q.push(span_batch(n)).await.unwrap();
        }
    }
    let files = segment_files(&dir).unwrap();
    assert_eq!(files.len(), 3);
    let (_, middle) = files.iter().nth(1).unwrap();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(middle)
        .unwrap();
    f.seek(SeekFrom::Start(40)).unwrap();
    f.write_all(&[0xff, 0x00, 0xee]).unwrap();
    drop(f);
    let (counters, records, _) = counted();
    let q = PersistentQueue::open(cfg, FullPolicy::Refuse, counters).unwrap();
    assert_eq!(records.get(), 1, "the damage is counted");
    let back: Vec<usize> = pop_all(&q)
        .await
        .iter()
        .map(|(b, _)| b.item_count())
        .collect();
    assert_eq!(back, vec![1, 3]);
}

#[tokio::test]
async fn garbage_files_never_stop_start_up() {
    let dir = temp_dir("garbage");
    std::fs::write(
        dir.join("00000000000000000000.seg"),
        b"\xff\xff\xff\xff garbage",
    )
    .unwrap();
    std::fs::write(dir.join("commit"), b"not a number").unwrap();
    std::fs::write(dir.join("00000000000000000007.seg"), b"").unwrap();
    let q = open(&dir);
    assert_eq!(q.pending_records(), 0);
    q.push(span_batch(1)).await.unwrap();
    assert_eq!(pop_all(&q).await.len(), 1);
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_queue() {
    let dir = temp_dir("lock");
    let _q = open(&dir);
    assert!(matches!(
        PersistentQueue::open(config(&dir), FullPolicy::Refuse, QueueCounters::default()),
        Err(OpenError::Locked(_))
    ));
}

#[tokio::test]
async fn a_gap_in_sequence_numbers_does_not_stop_the_commit_point() {
    // One record written by a queue, copied as segment 0 and as segment 5: records 1-4 are
    // gone (as after damage in a middle segment).
    let source = temp_dir("gap-src");
    {
        let q = open(&source);
        q.push(span_batch(2)).await.unwrap();
    }
    let record = std::fs::read(source.join(format!("{:020}.seg", 0))).unwrap();
    let dir = temp_dir("gap");
    std::fs::write(dir.join(format!("{:020}.seg", 0)), &record).unwrap();
    std::fs::write(dir.join(format!("{:020}.seg", 5)), &record).unwrap();
    {
        let q = open(&dir);
        assert_eq!(q.pending_records(), 2);
        for (_, ticket) in pop_all(&q).await {
            ticket.done();
        }
    }
    let q = open(&dir);
    assert_eq!(
        q.pending_records(),
        0,
        "finished records would be sent again"
    );
    assert_eq!(inspect(&dir).unwrap().records, 0);
}
