//! A TensorBoard event file: TFRecord framing of serialized `Event` messages.
//!
//! Each record is `len: u64 LE | masked_crc32c(len bytes): u32 LE | data | masked_crc32c(data)`
//! where `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8` (wrapping). The first record is the
//! `brain.Event:2` version header. The file is only appended to and flushed after each write, so
//! a killed run leaves at most one torn record at the end, which TensorBoard's reader skips.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use super::tb_proto::{Event, EventWhat, Summary};

/// TFRecord's CRC mask.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let c = crc32c::crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One framed record around `data`.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Seconds since the Unix epoch, as `time.time()`.
pub fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The machine's host name (`socket.gethostname()`), for the file name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// An open event file in a log folder.
#[derive(Debug)]
pub struct EventFile {
    path: PathBuf,
    file: File,
}

impl EventFile {
    /// Creates `dir` and a new `events.out.tfevents.{secs:010}.{host}.{pid}.{n}` in it (the
    /// name torch's `SummaryWriter` gives; `n` makes two writers of one process distinct), and
    /// writes the version header.
    pub fn create(dir: &Path) -> std::io::Result<EventFile> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static UID: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(dir)?;
        let now = wall_time();
        let name = format!(
            "events.out.tfevents.{:010}.{}.{}.{}",
            now as u64,
            hostname(),
            std::process::id(),
            UID.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        let mut ev = EventFile { path, file };
        ev.write(&Event {
            wall_time: now,
            step: 0,
            what: Some(EventWhat::FileVersion("brain.Event:2".into())),
        })?;
        Ok(ev)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and flushes it.
    pub fn write(&mut self, event: &Event) -> std::io::Result<()> {
        self.file.write_all(&frame(&event.encode_to_vec()))?;
        self.file.flush()
    }

    /// Appends `summary` at `step`, stamped now.
    pub fn write_summary(&mut self, step: i64, summary: Summary) -> std::io::Result<()> {
        self.write(&Event {
            wall_time: wall_time(),
            step,
            what: Some(EventWhat::Summary(summary)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // CRC-32C of "123456789" is 0xE3069283 (RFC 3720's check value); the mask is TFRecord's.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        // ((c >> 15) | (c << 17)) + 0xa282ead8, written out.
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn a_frame_is_length_crc_data_crc() {
        let f = frame(b"abc");
        assert_eq!(f.len(), 8 + 4 + 3 + 4);
        assert_eq!(&f[..8], &3u64.to_le_bytes());
        assert_eq!(&f[12..15], b"abc");
        assert_eq!(&f[15..], &masked_crc32c(b"abc").to_le_bytes());
    }
}
