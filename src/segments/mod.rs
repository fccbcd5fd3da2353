//! Segments: evaluating rules over every profile, previews, refreshes that publish new
//! membership atomically, membership that follows each profile change (`follow`), and saving or deleting a segment as the pages and the API do.

pub mod define;
pub mod follow;
pub mod progress;
mod refresh;

pub use refresh::{
    RefreshOutcome, RefreshReport, is_current, is_refreshing, preview_count, refresh,
    refresh_in_background, scan,
};
