//! Spend windows (filled in by the window work).
