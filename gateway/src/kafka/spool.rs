//! A durable local spool: where events wait, in order, while the broker
//! cannot take them.
//!
//! A directory of append-only segment files, `<seq>.seg` (twenty decimal
//! digits, so names sort in order), each a run of records:
//!
//! ```text
//! len: u32 LE | crc: u32 LE | body (len bytes) = key_len: u32 LE | key | value
//! ```
//!
//! `crc` is CRC-32C (Castagnoli, the `crc` crate) of the `len` field and
//! the body, so a torn length, a torn body and a run of zeros (what a
//! crash can leave past the last write) all fail the check. Records are
//! appended through a buffer and made durable by [`Spool::sync`], which the
//! caller calls once per batch (the sink: once per batch of events it
//! received, so fsyncs are at most one per few milliseconds under load).
//!
//! Reading is from the *head*, the first record not yet delivered:
//! [`Spool::peek`] reads records from it without moving it, and
//! [`Spool::ack`] moves it past delivered ones, deleting each segment once
//! every record in it is delivered, and rewriting the small `cursor` file
//! (temp file and rename), so a restart does not deliver those again. The
//! cursor is not fsynced: losing it only means delivering the head segment
//! again, which consumers tolerate (they dedupe by event id).
//!
//! Opening scans every segment and checks every record. The first bad one
//! in a segment (a torn tail left by a crash, or corruption) is logged as
//! an error and the segment is cut there: the records before it survive,
//! the bytes from it on are dropped (nothing after a bad length can be
//! trusted to be a record boundary). Nothing in a spool's bytes can make
//! opening or reading panic. A lock file keeps a second process out of
//! the directory.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Bytes before a record's body.
const HEADER: u64 = 8;
/// The largest body a record may have; a longer length is corruption.
pub const MAX_RECORD: u32 = 16 << 20;
/// Segment size at which appends start a new segment.
pub const SEGMENT_BYTES: u64 = 8 << 20;

const LOCK: &str = "LOCK";
const CURSOR: &str = "cursor";

/// Why the spool cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("spool {0} is in use by another process")]
    Locked(PathBuf),
    #[error("record of {0} bytes is larger than a spool record can be")]
    TooLarge(usize),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A position in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    seq: u64,
    offset: u64,
}

/// One spooled record, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Where the record after it starts.
    next: Position,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    /// Bytes of whole records in it.
    len: u64,
}

/// Bytes in the spool not yet delivered: a cheap handle the sink reads on
/// every call.
#[derive(Debug, Clone, Default)]
pub struct SpoolSize(Arc<AtomicU64>);

impl SpoolSize {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
        metrics::gauge!("caracal_kafka_spool_bytes").set(n as f64);
    }
}

/// The spool of one directory (see the module docs).
pub struct Spool {
    dir: PathBuf,
    _lock: File,
    /// Segments from the head's on, oldest first; appends go to the last.
    segments: VecDeque<Segment>,
    head: Position,
    /// The last segment, open for appends.
    writer: Option<BufWriter<File>>,
    /// A segment was created since the last sync (the directory needs one).
    created: bool,
    /// A write failed: the next append starts a new segment (the old
    /// one's tail may be torn; reading finds and drops it).
    broken: bool,
    segment_bytes: u64,
    size: SpoolSize,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("len_bytes", &self.len_bytes())
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (creating it if needed) the spool in `dir`, recovering what a
    /// previous process left: every whole record not yet delivered, in
    /// order. Segments roll over at [`SEGMENT_BYTES`].
    pub fn open(dir: &Path) -> Result<Self, SpoolError> {
        Self::open_with(dir, SEGMENT_BYTES)
    }

    /// [`Self::open`] with segments rolling over at `segment_bytes`.
    pub fn open_with(dir: &Path, segment_bytes: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir.into())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
        let mut seqs = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let entry = entry.map_err(io_err("list", dir))?;
            let name = entry.file_name();
            let seq = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(seq) = seq {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let cursor = read_cursor(&dir.join(CURSOR));
        let mut segments = VecDeque::new();
        let mut head = None;
        for seq in seqs {
            let path = segment_path(dir, seq);
            if cursor.is_some_and(|c| seq < c.seq) {
                // Delivered before the restart; its deletion did not happen.
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                continue;
            }
            let scan = scan(&path)?;
            if let Some(c) = cursor.filter(|c| c.seq == seq) {
                if scan.starts.binary_search(&c.offset).is_ok() || c.offset == scan.len {
                    head = Some(c);
                } else {
                    tracing::warn!(
                        segment = %path.display(),
                        offset = c.offset,
                        "spool cursor is not at a record boundary; delivering the segment again"
                    );
                }
            }
            segments.push_back(Segment { seq, len: scan.len });
        }
        let head = head.unwrap_or(Position {
            seq: segments.front().map_or(0, |s| s.seq),
            offset: 0,
        });
        let mut spool = Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            segments,
            head,
            writer: None,
            created: false,
            broken: false,
            segment_bytes: segment_bytes.max(1),
            size: SpoolSize::default(),
        };
        spool.update_size();
        if spool.is_empty() {
            spool.clear()?;
        }
        Ok(spool)
    }

    /// Bytes of records not yet delivered (headers included).
    pub fn len_bytes(&self) -> u64 {
        self.size.get()
    }

    /// A handle that reads [`Self::len_bytes`] from elsewhere.
    pub fn size(&self) -> SpoolSize {
        self.size.clone()
    }

    /// Whether every record was delivered.
    pub fn is_empty(&self) -> bool {
        self.len_bytes() == 0
    }

    /// Appends one record after every other. Durable only after
    /// [`Self::sync`]; readable by [`Self::peek`] at once.
    pub fn append(&mut self, key: &[u8], value: &[u8]) -> Result<(), SpoolError> {
        let body_len = 4 + key.len() + value.len();
        let len = u32::try_from(body_len)
            .ok()
            .filter(|&l| l <= MAX_RECORD)
            .ok_or(SpoolError::TooLarge(body_len))?;
        let rollover = self.broken
            || self
                .segments
                .back()
                .is_none_or(|s| s.len > 0 && s.len + HEADER + u64::from(len) > self.segment_bytes);
        if rollover || self.writer.is_none() {
            self.open_writer(rollover)?;
        }
        let mut record = Vec::with_capacity(HEADER as usize + body_len);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&[0; 4]);
        record.extend_from_slice(&(key.len() as u32).to_le_bytes());
        record.extend_from_slice(key);
        record.extend_from_slice(value);
        let crc = checksum(&record[..4], &record[HEADER as usize..]);
        record[4..8].copy_from_slice(&crc.to_le_bytes());
        let last = self.segments.back_mut().expect("a segment is open");
        let path = segment_path(&self.dir, last.seq);
        let writer = self.writer.as_mut().expect("a segment is open");
        last.len += record.len() as u64;
        if let Err(e) = writer.write_all(&record) {
            self.broken = true;
            self.update_size();
            return Err(io_err("write", &path)(e));
        }
        self.update_size();
        Ok(())
    }

    /// Makes every appended record durable (flush, then fdatasync; and
    /// the directory, if a segment was created since the last sync).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if let (Some(writer), Some(last)) = (self.writer.as_mut(), self.segments.back()) {
            let path = segment_path(&self.dir, last.seq);
            let synced = writer.flush().and_then(|()| writer.get_ref().sync_data());
            if let Err(e) = synced {
                self.broken = true;
                return Err(io_err("fsync", &path)(e));
            }
        }
        if self.created {
            sync_dir(&self.dir)?;
            self.created = false;
        }
        Ok(())
    }

    /// Up to `max_records` records from the head, in order, stopping
    /// early past `max_bytes` (at least one record is returned if any is
    /// there). The head does not move.
    pub fn peek(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, SpoolError> {
        if let (Some(writer), Some(last)) = (self.writer.as_mut(), self.segments.back()) {
            let path = segment_path(&self.dir, last.seq);
            writer.flush().map_err(io_err("flush", &path))?;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut at = self.head;
        'segments: for i in 0..self.segments.len() {
            let (seq, len) = (self.segments[i].seq, self.segments[i].len);
            if seq < at.seq {
                continue;
            }
            if seq > at.seq {
                at = Position { seq, offset: 0 };
            }
            if at.offset >= len {
                continue;
            }
            let path = segment_path(&self.dir, seq);
            let mut file = File::open(&path).map_err(io_err("open", &path))?;
            file.seek(SeekFrom::Start(at.offset))
                .map_err(io_err("seek", &path))?;
            let mut reader = BufReader::new(file.take(len - at.offset));
            while at.offset < len {
                if out.len() >= max_records || (bytes >= max_bytes && !out.is_empty()) {
                    break 'segments;
                }
                match read_record(&mut reader) {
                    Ok(Some((key, value, size))) => {
                        at.offset += size;
                        bytes += size as usize;
                        out.push(Record {
                            key,
                            value,
                            next: at,
                        });
                    }
                    Ok(None) | Err(ReadError::Bad(_)) | Err(ReadError::Io(_)) => {
                        // Checked when written or opened: the disk changed
                        // under us. What follows cannot be trusted.
                        tracing::error!(
                            segment = %path.display(),
                            offset = at.offset,
                            dropped_bytes = len - at.offset,
                            "spool record unreadable; dropping the rest of the segment"
                        );
                        self.segments[i].len = at.offset;
                        if i + 1 == self.segments.len() {
                            self.writer = None;
                        }
                        self.update_size();
                        continue 'segments;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Marks every record up to and including `last` (one [`Self::peek`]
    /// returned) delivered: the head moves past it, and segments left
    /// behind are deleted.
    pub fn ack(&mut self, last: &Record) -> Result<(), SpoolError> {
        if last.next <= self.head {
            return Ok(());
        }
        self.head = last.next;
        while self.segments.len() > 1 && self.segments[0].seq < self.head.seq {
            let seg = self.segments.pop_front().expect("checked");
            let path = segment_path(&self.dir, seg.seq);
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
        }
        // A head at the end of a segment that is not the last one moves on.
        if self.segments.len() > 1 && self.head.offset >= self.segments[0].len {
            let seg = self.segments.pop_front().expect("checked");
            let path = segment_path(&self.dir, seg.seq);
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            self.head = Position {
                seq: self.segments[0].seq,
                offset: 0,
            };
        }
        self.update_size();
        if self.is_empty() {
            self.clear()
        } else {
            write_cursor(&self.dir, self.head)
        }
    }

    /// Everything delivered: deletes every segment and the cursor, so the
    /// next append starts a fresh segment.
    fn clear(&mut self) -> Result<(), SpoolError> {
        let next = self.segments.back().map_or(self.head.seq, |s| s.seq) + 1;
        self.writer = None;
        for seg in self.segments.drain(..) {
            let path = segment_path(&self.dir, seg.seq);
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
        }
        let cursor = self.dir.join(CURSOR);
        match fs::remove_file(&cursor) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err("remove", &cursor)(e));
            }
            _ => {}
        }
        self.head = Position {
            seq: next,
            offset: 0,
        };
        Ok(())
    }

    /// Opens the last segment for appends, or a new one after it.
    fn open_writer(&mut self, new: bool) -> Result<(), SpoolError> {
        if new {
            if let Some(mut w) = self.writer.take().filter(|_| !self.broken) {
                // The old segment's tail must be on disk before records
                // after it are.
                let seq = self.segments.back().map_or(0, |s| s.seq);
                let path = segment_path(&self.dir, seq);
                w.flush().map_err(io_err("flush", &path))?;
                w.get_ref().sync_data().map_err(io_err("fsync", &path))?;
            }
            let seq = self
                .segments
                .back()
                .map_or(self.head.seq.max(1), |s| s.seq + 1);
            if self.segments.is_empty() {
                self.head = Position { seq, offset: 0 };
            }
            self.segments.push_back(Segment { seq, len: 0 });
            self.created = true;
            self.broken = false;
        }
        let last = self.segments.back().expect("a segment");
        let path = segment_path(&self.dir, last.seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        // Cut anything past the whole records (a bad tail found by a read).
        if file.metadata().map_err(io_err("stat", &path))?.len() != last.len {
            file.set_len(last.len).map_err(io_err("truncate", &path))?;
        }
        self.writer = Some(BufWriter::with_capacity(64 << 10, file));
        Ok(())
    }

    fn update_size(&self) {
        let total: u64 = self.segments.iter().map(|s| s.len).sum();
        let delivered = self
            .segments
            .front()
            .filter(|s| s.seq == self.head.seq)
            .map_or(0, |_| self.head.offset);
        self.size.set(total.saturating_sub(delivered));
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

fn checksum(len: &[u8], body: &[u8]) -> u32 {
    let mut digest = CRC.digest();
    digest.update(len);
    digest.update(body);
    digest.finalize()
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

enum ReadError {
    /// Not a whole, intact record (torn, corrupt).
    Bad(&'static str),
    Io(io::Error),
}

/// A record as read back: key, value, and its size on disk.
type ReadRecord = (Vec<u8>, Vec<u8>, u64);

/// The next record of `r`: `None` at a clean end, and the record's size on
/// disk with it.
fn read_record(r: &mut impl Read) -> Result<Option<ReadRecord>, ReadError> {
    let mut header = [0u8; HEADER as usize];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(ReadError::Bad("torn header")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if !(4..=MAX_RECORD).contains(&len) {
        return Err(ReadError::Bad("impossible length"));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ReadError::Bad("torn body"),
        _ => ReadError::Io(e),
    })?;
    if checksum(&header[..4], &body) != crc {
        return Err(ReadError::Bad("checksum mismatch"));
    }
    let key_len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if key_len > body.len() - 4 {
        return Err(ReadError::Bad("impossible key length"));
    }
    let value = body.split_off(4 + key_len);
    let key = body.split_off(4);
    Ok(Some((key, value, HEADER + u64::from(len))))
}

/// What opening found in a segment.
struct Scan {
    /// Offsets of its records.
    starts: Vec<u64>,
    /// Bytes of whole records (the segment is cut to this).
    len: u64,
}

/// Checks every record of a segment, cutting it at the first bad one.
fn scan(path: &Path) -> Result<Scan, SpoolError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    let on_disk = file.metadata().map_err(io_err("stat", path))?.len();
    let mut reader = BufReader::new(&file);
    let mut scan = Scan {
        starts: Vec::new(),
        len: 0,
    };
    loop {
        match read_record(&mut reader) {
            Ok(Some((_, _, size))) => {
                scan.starts.push(scan.len);
                scan.len += size;
            }
            Ok(None) => break,
            Err(ReadError::Io(e)) => return Err(io_err("read", path)(e)),
            Err(ReadError::Bad(why)) => {
                tracing::error!(
                    segment = %path.display(),
                    offset = scan.len,
                    dropped_bytes = on_disk - scan.len,
                    why,
                    "spool segment has a bad record (a write torn by a crash?); \
                     dropping it and what follows it in the segment"
                );
                metrics::counter!("caracal_kafka_spool_records_dropped_total").increment(1);
                break;
            }
        }
    }
    drop(reader);
    if scan.len != on_disk {
        file.set_len(scan.len).map_err(io_err("truncate", path))?;
        file.sync_all().map_err(io_err("fsync", path))?;
    }
    Ok(scan)
}

fn read_cursor(path: &Path) -> Option<Position> {
    let bytes = fs::read(path).ok()?;
    let bytes: [u8; 20] = bytes.try_into().ok()?;
    let crc = u32::from_le_bytes(bytes[16..].try_into().ok()?);
    if CRC.checksum(&bytes[..16]) != crc {
        tracing::warn!(cursor = %path.display(), "spool cursor is corrupt; ignoring it");
        return None;
    }
    Some(Position {
        seq: u64::from_le_bytes(bytes[..8].try_into().ok()?),
        offset: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
    })
}

fn write_cursor(dir: &Path, at: Position) -> Result<(), SpoolError> {
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(&at.seq.to_le_bytes());
    bytes.extend_from_slice(&at.offset.to_le_bytes());
    let crc = CRC.checksum(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("cursor.tmp");
    fs::write(&tmp, &bytes).map_err(io_err("write", &tmp))?;
    let path = dir.join(CURSOR);
    fs::rename(&tmp, &path).map_err(io_err("rename", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8(r.value.clone()).unwrap())
            .collect()
    }

    fn fill(spool: &mut Spool, range: std::ops::Range<usize>) {
        for i in range {
            spool
                .append(format!("k{}", i % 3).as_bytes(), format!("v{i}").as_bytes())
                .unwrap();
        }
        spool.sync().unwrap();
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_acks_delete_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open_with(dir.path(), 64).unwrap();
        assert!(spool.is_empty());
        fill(&mut spool, 0..10);
        assert!(segments(dir.path()).len() > 2, "small segments roll over");
        let first = spool.peek(4, usize::MAX).unwrap();
        assert_eq!(values(&first), ["v0", "v1", "v2", "v3"]);
        assert_eq!(first[1].key, b"k1");
        // Peeking does not move the head.
        assert_eq!(spool.peek(1, usize::MAX).unwrap()[0].value, b"v0");
        let before = spool.len_bytes();
        spool.ack(&first[3]).unwrap();
        assert!(spool.len_bytes() < before);
        let rest = spool.peek(100, usize::MAX).unwrap();
        assert_eq!(values(&rest), ["v4", "v5", "v6", "v7", "v8", "v9"]);
        // The byte bound stops early but always returns something.
        assert_eq!(spool.peek(100, 1).unwrap().len(), 1);
        spool.ack(rest.last().unwrap()).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.len_bytes(), 0);
        assert!(
            segments(dir.path()).is_empty(),
            "all delivered: all deleted"
        );
        fill(&mut spool, 10..12);
        assert_eq!(values(&spool.peek(10, usize::MAX).unwrap()), ["v10", "v11"]);
    }

    #[test]
    fn a_reopened_spool_delivers_what_was_left_from_the_head() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open_with(dir.path(), 100).unwrap();
            fill(&mut spool, 0..20);
            let got = spool.peek(7, usize::MAX).unwrap();
            spool.ack(got.last().unwrap()).unwrap();
        }
        let mut spool = Spool::open_with(dir.path(), 100).unwrap();
        let got = spool.peek(100, usize::MAX).unwrap();
        assert_eq!(got.len(), 13);
        assert_eq!(got[0].value, b"v7");
        assert_eq!(got.last().unwrap().value, b"v19");
        fill(&mut spool, 20..21);
        let got = spool.peek(100, usize::MAX).unwrap();
        assert_eq!(got.last().unwrap().value, b"v20");
    }

    #[test]
    fn a_lost_cursor_delivers_the_head_segment_again_never_less() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path()).unwrap();
            fill(&mut spool, 0..5);
            let got = spool.peek(2, usize::MAX).unwrap();
            spool.ack(got.last().unwrap()).unwrap();
        }
        fs::write(dir.path().join(CURSOR), b"garbage").unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.peek(100, usize::MAX).unwrap().len(), 5);
    }

    #[test]
    fn a_torn_tail_record_is_dropped_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path()).unwrap();
            fill(&mut spool, 0..5);
        }
        let seg = segments(dir.path()).pop().unwrap();
        let whole = fs::metadata(&seg).unwrap().len();
        // A crash mid-write: half of a sixth record.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&40u32.to_le_bytes()).unwrap();
        f.write_all(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
        drop(f);
        let mut spool = Spool::open(dir.path()).unwrap();
        assert_eq!(fs::metadata(&seg).unwrap().len(), whole, "cut at the tear");
        assert_eq!(
            values(&spool.peek(100, usize::MAX).unwrap()),
            ["v0", "v1", "v2", "v3", "v4"]
        );
        // Appends continue after the last whole record.
        fill(&mut spool, 5..6);
        drop(spool);
        let mut spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.peek(100, usize::MAX).unwrap().len(), 6);
    }

    #[test]
    fn corrupt_or_zeroed_tails_are_dropped_never_a_panic() {
        for damage in ["flip", "zeros", "huge length", "cut"] {
            let dir = tempfile::tempdir().unwrap();
            {
                let mut spool = Spool::open(dir.path()).unwrap();
                fill(&mut spool, 0..4);
            }
            let seg = segments(dir.path()).pop().unwrap();
            let mut bytes = fs::read(&seg).unwrap();
            let last_start = {
                // Records here are 8 + 4 + 2 + 2 = 16 bytes.
                bytes.len() - 16
            };
            match damage {
                "flip" => bytes[last_start + 13] ^= 0x40,
                "zeros" => bytes.extend_from_slice(&[0; 4096]),
                "huge length" => {
                    bytes[last_start..last_start + 4].copy_from_slice(&u32::MAX.to_le_bytes())
                }
                _ => bytes.truncate(bytes.len() - 3),
            }
            fs::write(&seg, &bytes).unwrap();
            let mut spool = Spool::open(dir.path()).unwrap();
            let got = values(&spool.peek(100, usize::MAX).unwrap());
            let want: &[&str] = if damage == "zeros" {
                &["v0", "v1", "v2", "v3"]
            } else {
                &["v0", "v1", "v2"]
            };
            assert_eq!(got, want, "{damage}");
        }
    }

    #[test]
    fn arbitrary_segment_bytes_never_panic() {
        use proptest::prelude::*;
        proptest!(ProptestConfig::with_cases(64), |(bytes in proptest::collection::vec(any::<u8>(), 0..300))| {
            let dir = tempfile::tempdir().unwrap();
            fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
            let mut spool = Spool::open(dir.path()).unwrap();
            let got = spool.peek(1000, usize::MAX).unwrap();
            if let Some(last) = got.last() {
                spool.ack(last).unwrap();
            }
            prop_assert!(spool.is_empty());
        });
    }

    #[test]
    fn a_second_process_cannot_open_a_spool_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(dir.path()).unwrap();
        assert!(matches!(
            Spool::open(dir.path()),
            Err(SpoolError::Locked(_))
        ));
    }
}
