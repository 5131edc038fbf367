//! The SSE framer: splits a stream into events within the cap and hands
//! each complete event to the tally.

use super::tally::Tally;
use super::{push_within, Dialect};

/// SSE framing per the HTML standard, reduced to `event` and `data`.
#[derive(Default)]
pub(super) struct Sse {
    pub(super) line: Vec<u8>,
    /// The current line outgrew the cap; its rest is being discarded.
    pub(super) line_overflow: bool,
    overflow_is_comment: bool,
    /// The last byte was CR, so a leading LF in the next chunk is its pair.
    after_cr: bool,
    past_first_line: bool,
    event: String,
    pub(super) data: Vec<u8>,
    has_data: bool,
    /// Part of the current event was skipped for size; it is not dispatched.
    poisoned: bool,
    pub(super) tally: Tally,
}

impl Sse {
    pub(super) fn observe(&mut self, mut chunk: &[u8], cap: usize, dialect: Dialect) {
        loop {
            // A CR that ended the chunk waits for the next byte, whichever
            // chunk brings it.
            if self.after_cr && !chunk.is_empty() {
                self.after_cr = false;
                chunk = chunk.strip_prefix(b"\n").unwrap_or(chunk);
            }
            let Some(i) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') else {
                break;
            };
            let (segment, rest) = chunk.split_at(i);
            self.push(segment, cap);
            self.end_line(cap, dialect);
            self.after_cr = rest.first() == Some(&b'\r');
            chunk = rest.get(1..).unwrap_or_default();
        }
        self.push(chunk, cap);
    }

    pub(super) fn held(&self) -> usize {
        self.line.len() + self.data.len() + self.event.len()
    }

    fn push(&mut self, bytes: &[u8], cap: usize) {
        if self.line_overflow || bytes.is_empty() {
            return;
        }
        let room = cap.saturating_sub(self.held() - self.line.len());
        if !push_within(&mut self.line, bytes, room) {
            self.overflow_is_comment = self.line.first().or(bytes.first()) == Some(&b':');
            self.line_overflow = true;
            self.line = Vec::new();
        }
    }

    pub(super) fn end_line(&mut self, cap: usize, dialect: Dialect) {
        if std::mem::take(&mut self.line_overflow) {
            self.poisoned |= !self.overflow_is_comment;
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        self.line_done(&line, cap, dialect);
        line.clear();
        self.line = line;
    }

    fn line_done(&mut self, line: &[u8], cap: usize, dialect: Dialect) {
        let line = match std::mem::replace(&mut self.past_first_line, true) {
            false => line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line),
            true => line,
        };
        if line.is_empty() {
            return self.dispatch(dialect);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => line.split_at(i),
            None => (line, &b""[..]),
        };
        let value = value.get(1..).unwrap_or(value);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match field {
            b"data" if !self.poisoned => {
                let sep: &[u8] = if self.has_data { b"\n" } else { b"" };
                let room = cap.saturating_sub(self.event.len());
                if !(push_within(&mut self.data, sep, room)
                    && push_within(&mut self.data, value, room))
                {
                    self.poisoned = true;
                }
                self.has_data = true;
            }
            // A name that is not UTF-8 can match no known event.
            b"event" => self.event = String::from_utf8(value.to_vec()).unwrap_or_default(),
            _ => {}
        }
    }

    pub(super) fn dispatch(&mut self, dialect: Dialect) {
        if std::mem::take(&mut self.poisoned) {
            self.tally.oversized = true;
        } else if self.has_data {
            self.tally.event(&self.event, &self.data, dialect);
        }
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }
}
