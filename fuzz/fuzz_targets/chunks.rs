//! Shared by the usage targets: a body cut into chunks at fuzzer-chosen
//! points, so parsers are checked to be independent of how a body arrives.

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
