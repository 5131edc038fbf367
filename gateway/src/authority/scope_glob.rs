//! `*`-only globs: matching a name, and deciding exactly whether every name
//! one glob matches is matched by at least one glob of a set.
//!
//! A glob here is a byte string in which `*` matches any run of characters
//! (dots and the empty run included) and every other byte is literal. The
//! callers only pass ASCII globs with no `**` (see `normalize`), so matching
//! bytes is the same as matching characters.

use std::collections::{HashMap, HashSet};

/// The only special byte of a glob.
pub(crate) const STAR: u8 = b'*';

/// Bound on the (child position, parent state set) pairs explored, summed
/// over all the inclusion questions sharing one [`Budget`].
pub(crate) const MAX_STATES: usize = 1 << 16;

/// Bound on the total size of the parent state sets computed (the work of
/// the subset construction), summed over one [`Budget`].
pub(crate) const MAX_WORK: usize = 1 << 22;

/// What is left of the search bounds. One budget is shared by all the
/// questions of one containment check, so a scope with many entries cannot
/// multiply the work.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    states: usize,
    work: usize,
}

impl Budget {
    pub(crate) fn new() -> Self {
        Self::with_limits(MAX_STATES, MAX_WORK)
    }

    pub(crate) fn with_limits(states: usize, work: usize) -> Self {
        Self { states, work }
    }
}

/// Candidates to print for "any character no glob mentions" in a witness.
const OTHER_CANDIDATES: &[u8] = b"xqzyjkvwabcdefghilmnoprstu0123456789-_.";

/// Collapses runs of `*` (`a**b` and `a*b` match the same names).
pub(crate) fn normalize(glob: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(glob.len());
    for &b in glob {
        if !(b == STAR && out.last() == Some(&STAR)) {
            out.push(b);
        }
    }
    out
}

/// Whether `glob` matches all of `name`. Linear in space, at most
/// `glob.len() * name.len()` steps.
pub(crate) fn matches(glob: &[u8], name: &[u8]) -> bool {
    let (mut g, mut n) = (0, 0);
    // The last star seen, and the name position it is currently tried at.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if g < glob.len() && glob[g] == STAR {
            star = Some((g, n));
            g += 1;
        } else if g < glob.len() && glob[g] == name[n] {
            g += 1;
            n += 1;
        } else if let Some((sg, sn)) = star {
            // Let the last star swallow one more byte and retry after it.
            star = Some((sg, sn + 1));
            g = sg + 1;
            n = sn + 1;
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&b| b == STAR)
}

/// The answer to "is every name `child` matches matched by a parent?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inclusion {
    /// Yes, for names over any alphabet.
    Included,
    /// No: the child matches this name and no parent does (a shortest one).
    Escapes(String),
    /// The bounds were reached before an answer; treat as "not proven".
    TooComplex,
}

/// One input symbol: a byte some glob mentions, or any other character
/// (all of which every glob treats alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Sym {
    Lit(u8),
    Other,
}

/// Decides `L(child) ⊆ L(parents[0]) ∪ L(parents[1]) ∪ …` exactly, or
/// answers [`Inclusion::TooComplex`] when `budget` runs out (and then leaves
/// it empty). Globs must be normalized.
///
/// Method: the child glob is an NFA whose states are positions in it; the
/// parents together are one NFA (positions in each parent), determinized on
/// the fly. A breadth-first search over (child position, parent state set)
/// finds the shortest name the child accepts and no parent does, or
/// exhausts the pairs, which proves inclusion. Characters no glob mentions
/// are one symbol, so the answer holds over any alphabet.
pub(crate) fn included(child: &[u8], parents: &[&[u8]], budget: &mut Budget) -> Inclusion {
    let nfa = ParentNfa::new(parents);
    let mut lits: Vec<u8> = child
        .iter()
        .chain(parents.iter().flat_map(|p| p.iter()))
        .copied()
        .filter(|&b| b != STAR)
        .collect();
    lits.sort_unstable();
    lits.dedup();
    let syms: Vec<Sym> = lits
        .iter()
        .map(|&b| Sym::Lit(b))
        .chain(std::iter::once(Sym::Other))
        .collect();
    let other = OTHER_CANDIDATES
        .iter()
        .copied()
        .find(|b| !lits.contains(b))
        .unwrap_or(b'~');

    let mut sets: Vec<Vec<u32>> = Vec::new();
    let mut set_ids: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut steps: HashMap<(usize, Sym), usize> = HashMap::new();
    let mut intern = |set: Vec<u32>, sets: &mut Vec<Vec<u32>>| -> usize {
        *set_ids.entry(set).or_insert_with_key(|set| {
            sets.push(set.clone());
            sets.len() - 1
        })
    };

    // Search nodes: (child position, parent set id, predecessor, symbol).
    let mut nodes: Vec<(usize, usize, usize, Option<Sym>)> = Vec::new();
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    let mut work = 0usize;

    let start = nfa.start();
    work += start.len();
    let start = intern(start, &mut sets);
    nodes.push((0, start, usize::MAX, None));
    seen.insert((0, start));

    let mut next = 0;
    while next < nodes.len() {
        let (pos, set, _, _) = nodes[next];
        let current = next;
        next += 1;

        if pos == child.len() && !nfa.accepts(&sets[set]) {
            budget.states = budget.states.saturating_sub(nodes.len());
            budget.work = budget.work.saturating_sub(work);
            return Inclusion::Escapes(witness(&nodes, current, other));
        }
        // A parent state with only stars left accepts every continuation.
        if nfa.accepts_everything(&sets[set]) {
            continue;
        }
        let mut successors: Vec<(usize, Sym)> = Vec::new();
        let mut epsilon = None;
        match child.get(pos) {
            None => {}
            Some(&STAR) => {
                epsilon = Some(pos + 1);
                successors.extend(syms.iter().map(|&s| (pos, s)));
            }
            Some(&b) => successors.push((pos + 1, Sym::Lit(b))),
        }
        if let Some(to) = epsilon {
            if seen.insert((to, set)) {
                nodes.push((to, set, current, None));
            }
        }
        for (to, sym) in successors {
            let target = match steps.get(&(set, sym)) {
                Some(&t) => t,
                None => {
                    let stepped = nfa.step(&sets[set], sym);
                    work += sets[set].len() + stepped.len();
                    let t = intern(stepped, &mut sets);
                    steps.insert((set, sym), t);
                    t
                }
            };
            if seen.insert((to, target)) {
                nodes.push((to, target, current, Some(sym)));
            }
        }
        if nodes.len() > budget.states || work > budget.work {
            *budget = Budget::with_limits(0, 0);
            return Inclusion::TooComplex;
        }
    }
    budget.states = budget.states.saturating_sub(nodes.len());
    budget.work = budget.work.saturating_sub(work);
    Inclusion::Included
}

/// The name spelled by the path from the start to `node`.
fn witness(nodes: &[(usize, usize, usize, Option<Sym>)], mut node: usize, other: u8) -> String {
    let mut bytes = Vec::new();
    while node != usize::MAX {
        let (_, _, pred, sym) = nodes[node];
        match sym {
            Some(Sym::Lit(b)) => bytes.push(b),
            Some(Sym::Other) => bytes.push(other),
            None => {}
        }
        node = pred;
    }
    bytes.reverse();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The union of the parent globs as one NFA. State `i` is a flat index:
/// position `pos` in parent `k` is `offset[k] + pos`.
struct ParentNfa<'a> {
    globs: &'a [&'a [u8]],
    /// For each flat state: (glob index, position).
    states: Vec<(usize, usize)>,
}

impl<'a> ParentNfa<'a> {
    fn new(globs: &'a [&'a [u8]]) -> Self {
        let mut states = Vec::new();
        for (k, g) in globs.iter().enumerate() {
            states.extend((0..=g.len()).map(|pos| (k, pos)));
        }
        Self { globs, states }
    }

    fn token(&self, state: u32) -> Option<u8> {
        let (k, pos) = self.states[state as usize];
        self.globs[k].get(pos).copied()
    }

    /// Start states of every parent, closed under "a star may match nothing".
    fn start(&self) -> Vec<u32> {
        let mut set = Vec::new();
        let mut flat = 0u32;
        for g in self.globs {
            set.push(flat);
            flat += g.len() as u32 + 1;
        }
        self.close(set)
    }

    fn close(&self, mut set: Vec<u32>) -> Vec<u32> {
        let mut i = 0;
        while i < set.len() {
            if self.token(set[i]) == Some(STAR) {
                set.push(set[i] + 1);
            }
            i += 1;
        }
        set.sort_unstable();
        set.dedup();
        set
    }

    fn step(&self, set: &[u32], sym: Sym) -> Vec<u32> {
        let mut out = Vec::with_capacity(set.len());
        for &s in set {
            match self.token(s) {
                Some(STAR) => out.push(s),
                Some(b) if sym == Sym::Lit(b) => out.push(s + 1),
                _ => {}
            }
        }
        self.close(out)
    }

    fn accepts(&self, set: &[u32]) -> bool {
        set.iter().any(|&s| self.token(s).is_none())
    }

    fn accepts_everything(&self, set: &[u32]) -> bool {
        set.iter().any(|&s| {
            let (k, pos) = self.states[s as usize];
            let rest = &self.globs[k][pos..];
            !rest.is_empty() && rest.iter().all(|&b| b == STAR)
        })
    }
}
