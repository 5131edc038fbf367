//! Shared by the usage targets: the input's header (dialect, cap) and a
//! body cut into chunks at fuzzer-chosen points, so parsers are checked to
//! be independent of how a body arrives.

use caracal_gateway::usage::Dialect;

/// The cap of the unit tests; odd cap bytes choose a small cap instead.
pub const CAP: usize = 64 * 1024;

/// One input: a dialect byte (% 3: OpenAI, Anthropic, Unknown), a cap byte
/// (even: CAP, odd: twice its value), a split-count byte (% 8), that many
/// split-point bytes (p / 256 of the way into the body), then the body.
pub struct Input<'a> {
    pub dialect: Dialect,
    pub cap: usize,
    pub body: &'a [u8],
    pub chunks: Vec<&'a [u8]>,
}

impl<'a> Input<'a> {
    pub fn read(data: &'a [u8]) -> Option<Self> {
        let [flags, cap, rest @ ..] = data else {
            return None;
        };
        let (body, chunks) = split(rest);
        let dialect =
            [Dialect::OpenAi, Dialect::Anthropic, Dialect::Unknown][usize::from(flags % 3)];
        let cap = match cap & 1 {
            0 => CAP,
            _ => usize::from(*cap) * 2,
        };
        Some(Input {
            dialect,
            cap,
            body,
            chunks,
        })
    }
}

/// The body after up to 7 split-point bytes (the first byte counts them),
/// and the body cut at those points; equal points give empty chunks.
pub fn split(rest: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let Some((&n, rest)) = rest.split_first() else {
        return (rest, vec![rest]);
    };
    let n = usize::from(n % 8).min(rest.len());
    let (points, body) = rest.split_at(n);
    let mut cuts: Vec<usize> = points
        .iter()
        .map(|&p| usize::from(p) * (body.len() + 1) / 256)
        .collect();
    cuts.sort_unstable();
    let mut chunks = Vec::with_capacity(n + 1);
    let mut at = 0;
    for cut in cuts.into_iter().chain([body.len()]) {
        chunks.push(&body[at..cut]);
        at = cut;
    }
    (body, chunks)
}

pub fn lens(chunks: &[&[u8]]) -> Vec<usize> {
    chunks.iter().map(|c| c.len()).collect()
}
