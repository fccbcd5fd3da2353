//! Unified customer profiles: CSV import (streamed, typed, reported row by row) and
//! deterministic demo data, both written through one writer.

pub mod demo;
pub mod import;
pub mod jobs;
pub mod writer;

pub use import::{ImportOptions, ImportOutcome, import_file};
