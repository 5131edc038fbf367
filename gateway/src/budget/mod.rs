//! Budgets: spend windows, rate limits, and reserve-before / settle-after
//! accounting over a counter seam (in-process here; Redis in the
//! distributed deployment, with the same semantics).

pub mod rate;
pub mod window;
