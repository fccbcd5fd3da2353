//! Unified customer profiles: CSV import (streamed, typed, reported row by row),
//! deterministic demo data, both written through one writer, and profiles pushed through the
//! automation API; every row is typed by one function (`row::typed`).

pub mod demo;
pub mod import;
pub mod jobs;
pub mod push;
pub mod row;
pub mod writer;

pub use import::{ImportOptions, ImportOutcome, import_file};
