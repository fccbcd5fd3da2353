//! Segments: evaluating rules over every profile, previews, and refreshes that publish
//! new membership atomically.

pub mod progress;
mod refresh;

pub use refresh::{RefreshOutcome, RefreshReport, is_current, preview_count, refresh, scan};
