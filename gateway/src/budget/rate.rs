//! Rate limits (filled in by the rate-limit work).
