//! Keeping a provider's credentials from the agent: the injected values are
//! masked wherever a response could carry them back — its headers, and its
//! body as it streams (an echo endpoint, a passthrough operation, an error
//! that quotes the request), across chunk boundaries.
//!
//! The body is not buffered: a [`Masker`] holds back at most the length of
//! the longest secret minus one byte, the only bytes that could be the start
//! of a secret completed by the next chunk. Each byte of a secret becomes
//! `*`, so lengths (and `Content-Length`) are unchanged. Pure.

use aho_corasick::{AhoCorasick, MatchKind};
use bytes::Bytes;

/// Secrets shorter than this are not masked: they would also match
/// ordinary text, and no provider issues keys that short.
pub const MIN_SECRET_BYTES: usize = 8;

/// The secrets of one provider, compiled for matching.
#[derive(Debug, Clone)]
pub struct Secrets {
    matcher: AhoCorasick,
    longest: usize,
    secrets: Vec<Vec<u8>>,
}

impl Secrets {
    /// The secrets in credential header values: each whole value and, for
    /// `Scheme token` values (`Bearer sk-…`), the token alone. `None` when
    /// none is long enough to mask.
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Secrets> {
        let mut secrets: Vec<&[u8]> = Vec::new();
        for v in values {
            secrets.push(v);
            if let Some(at) = v.iter().position(|b| *b == b' ') {
                secrets.push(v[at + 1..].trim_ascii());
            }
        }
        secrets.retain(|s| s.len() >= MIN_SECRET_BYTES);
        secrets.sort_unstable();
        secrets.dedup();
        let longest = secrets.iter().map(|s| s.len()).max()?;
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&secrets)
            .ok()?;
        let secrets = secrets.into_iter().map(<[u8]>::to_vec).collect();
        Some(Secrets {
            matcher,
            longest,
            secrets,
        })
    }

    /// Masks every secret in `bytes`, in place; returns how many.
    pub fn mask(&self, bytes: &mut [u8]) -> u64 {
        let found: Vec<_> = self.matcher.find_iter(&*bytes).map(|m| m.range()).collect();
        for r in &found {
            bytes[r.clone()].fill(b'*');
        }
        found.len() as u64
    }

    /// Whether `bytes` holds a secret.
    pub fn found_in(&self, bytes: &[u8]) -> bool {
        self.matcher.is_match(bytes)
    }

    /// A streaming masker for one body.
    pub fn masker(&self) -> Masker {
        Masker {
            secrets: self.clone(),
            held: Vec::new(),
            masked: 0,
        }
    }
}

/// Masks secrets in a body fed chunk by chunk, wherever the chunks split.
#[derive(Debug)]
pub struct Masker {
    secrets: Secrets,
    /// The end of the bytes seen so far that could begin a secret.
    held: Vec<u8>,
    masked: u64,
}

impl Masker {
    /// The next chunk; returns what can be sent now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(chunk);
        self.mask(&mut buf);
        // Only what could begin a secret the next chunk completes is held;
        // anything that starts earlier was complete here, and masked.
        if let Some(at) = self.partial_start(&buf) {
            self.held = buf.split_off(at);
        }
        buf
    }

    /// [`Masker::push`] without copying in the usual case: a chunk that
    /// holds no secret and ends with nothing that could begin one goes out
    /// as it came.
    pub fn push_bytes(&mut self, chunk: Bytes) -> Bytes {
        if !self.held.is_empty() || self.secrets.matcher.is_match(&chunk[..]) {
            return Bytes::from(self.push(&chunk));
        }
        match self.partial_start(&chunk) {
            None => chunk,
            Some(at) => {
                self.held = chunk[at..].to_vec();
                chunk.slice(..at)
            }
        }
    }

    /// The first position of the chunk's last `longest - 1` bytes from
    /// which the rest of the chunk is the beginning of a secret (one the
    /// next chunk may complete). Earlier positions cannot begin an
    /// incomplete secret: it would be complete within the chunk.
    fn partial_start(&self, chunk: &[u8]) -> Option<usize> {
        let from = chunk.len().saturating_sub(self.secrets.longest - 1);
        (from..chunk.len()).find(|&i| {
            self.secrets
                .secrets
                .iter()
                .any(|s| s.starts_with(&chunk[i..]))
        })
    }

    /// The body ended: the bytes held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.held);
        self.mask(&mut rest);
        rest
    }

    /// Whether bytes are held back.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// How many secrets were masked so far.
    pub fn masked(&self) -> u64 {
        self.masked
    }

    /// How many secrets were masked since the last call (for counting).
    pub fn take_masked(&mut self) -> u64 {
        std::mem::take(&mut self.masked)
    }

    fn mask(&mut self, buf: &mut [u8]) {
        self.masked += self.secrets.mask(buf);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn secrets() -> Secrets {
        Secrets::from_values([b"Bearer sk-live-0123456789".as_slice(), b"short"]).unwrap()
    }

    /// Feeds `body` split at `cuts` and returns what came out, through
    /// `push` and through `push_bytes` (which must agree).
    fn stream(body: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut outs = Vec::new();
        for copying in [true, false] {
            let mut m = secrets().masker();
            let mut out = Vec::new();
            let mut at = 0;
            let mut feed = |m: &mut Masker, part: &[u8]| {
                if copying {
                    out.extend(m.push(part));
                } else {
                    out.extend(m.push_bytes(Bytes::copy_from_slice(part)));
                }
            };
            for &c in cuts {
                let c = c.clamp(at, body.len());
                feed(&mut m, &body[at..c]);
                at = c;
            }
            feed(&mut m, &body[at..]);
            out.extend(m.finish());
            outs.push(out);
        }
        assert_eq!(outs[0], outs[1], "push and push_bytes agree");
        outs.pop().unwrap()
    }

    #[test]
    fn secrets_are_the_values_and_their_tokens() {
        let s = secrets();
        assert!(s.found_in(b"Bearer sk-live-0123456789"));
        assert!(s.found_in(b"{\"key\":\"sk-live-0123456789\"}"));
        // Too short to mask.
        assert!(!s.found_in(b"short"));
        assert!(Secrets::from_values([b"tiny".as_slice()]).is_none());
        assert!(Secrets::from_values(std::iter::empty()).is_none());
    }

    #[test]
    fn every_split_of_a_body_masks_every_secret() {
        let body = b"{\"headers\":{\"authorization\":\"Bearer sk-live-0123456789\"},\"again\":\"sk-live-0123456789sk-live-0123456789\"}";
        let want = stream(body, &[]);
        assert!(
            !want.windows(10).any(|w| w == b"sk-live-01"),
            "{}",
            String::from_utf8_lossy(&want)
        );
        assert_eq!(want.len(), body.len(), "lengths are kept");
        assert_eq!(
            String::from_utf8_lossy(&want),
            "{\"headers\":{\"authorization\":\"*************************\"},\"again\":\"************************************\"}"
        );
        for a in 0..body.len() {
            for b in a..body.len() {
                assert_eq!(stream(body, &[a, b]), want, "split at {a} and {b}");
            }
        }
    }

    #[test]
    fn ordinary_chunks_go_out_whole_and_uncopied() {
        let mut m = secrets().masker();
        let chunk = Bytes::from_static(b"{\"id\":\"chatcmpl-1\",\"choices\":[]}");
        let out = m.push_bytes(chunk.clone());
        assert_eq!(out.as_ptr(), chunk.as_ptr(), "the same bytes, not a copy");
        assert_eq!(out.len(), chunk.len());
        assert!(!m.holding());
        // Ending with what could begin a secret: that much is held.
        let out = m.push_bytes(Bytes::from_static(b"data: Bearer sk-li"));
        assert_eq!(&out[..], b"data: ");
        assert!(m.holding());
        let mut out = m
            .push_bytes(Bytes::from_static(b"ve-0123456789 end"))
            .to_vec();
        out.extend(m.finish());
        assert_eq!(&out[..], b"************************* end");
        assert_eq!(m.masked(), 1);
        let mut again = m.push(b"sk-live-0123456789 and sk-live-0123456789");
        again.extend(m.finish());
        assert_eq!(m.masked(), 3, "counted once per secret");
        let mut header = b"x Bearer sk-live-0123456789".to_vec();
        secrets().mask(&mut header);
        assert_eq!(&header[..], b"x *************************");
    }

    #[test]
    fn nothing_is_held_beyond_a_possible_secret() {
        let mut m = secrets().masker();
        let out = m.push(&[b'x'; 100]);
        assert_eq!(out.len(), 100, "nothing there could begin a secret");
        assert!(!m.holding());
        // Once something was held, later chunks are not held back whole.
        assert_eq!(m.push(b"data: Bear").len(), 6);
        assert!(m.holding());
        assert_eq!(m.push(b"ish news\n\n"), b"Bearish news\n\n");
        assert!(!m.holding());
        assert_eq!(m.masked(), 0);
    }

    proptest! {
        /// Whatever the body and the splits, no secret survives and
        /// nothing else changes.
        #[test]
        fn no_secret_survives_any_split(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"sk-live-0123456789".to_vec()),
                    Just(b"Bearer ".to_vec()),
                    Just(b"sk-live-".to_vec()),
                    proptest::collection::vec(any::<u8>(), 0..20),
                ],
                0..12,
            ),
            cuts in proptest::collection::vec(0usize..300, 0..6),
        ) {
            let body: Vec<u8> = parts.concat();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let out = stream(&body, &cuts);
            prop_assert_eq!(out.len(), body.len());
            prop_assert!(!secrets().found_in(&out));
            for (o, b) in out.iter().zip(&body) {
                prop_assert!(o == b || *o == b'*');
            }
        }
    }
}
