//! How far this console's segment refresh is: profiles scanned, and each segment waiting,
//! being written, done (with its members) or not refreshed (with why). Refreshes run one
//! at a time in a console, so one board per database says it all; it keeps the last
//! refresh's result until the next one starts.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::db::Db;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Board {
    pub running: bool,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Profiles read so far by the scan, and how many there are.
    pub scanned: u64,
    pub profiles: u64,
    pub segments: Vec<SegmentState>,
    /// What the refresh did, once it ended.
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentState {
    pub id: i64,
    pub name: String,
    /// "waiting", "scanning", "writing", "done" or "not refreshed".
    pub state: &'static str,
    pub members: Option<i64>,
    /// Why it was not refreshed.
    pub note: Option<String>,
}

/// The boards by database (a process may serve several, as the tests do).
static BOARDS: Mutex<Option<HashMap<String, Board>>> = Mutex::new(None);

fn key(db: &Db) -> String {
    db.pool().connect_options().database_url.to_string()
}

/// The running refresh, or the last one since the console started.
pub fn current(db: &Db) -> Option<Board> {
    let boards = BOARDS.lock().ok()?;
    boards.as_ref()?.get(&key(db)).cloned()
}

pub(super) fn begin(db: &Db, segments: Vec<SegmentState>) {
    let board = Board {
        running: true,
        started_at: crate::db::now_millis(),
        finished_at: None,
        scanned: 0,
        profiles: 0,
        segments,
        summary: None,
    };
    if let Ok(mut boards) = BOARDS.lock() {
        boards
            .get_or_insert_with(HashMap::new)
            .insert(key(db), board);
    }
}

pub(super) fn update(db: &Db, change: impl FnOnce(&mut Board)) {
    if let Ok(mut boards) = BOARDS.lock() {
        if let Some(board) = boards.as_mut().and_then(|b| b.get_mut(&key(db))) {
            change(board);
        }
    }
}

/// Sets one segment's state (and members, once known).
pub(super) fn segment(db: &Db, id: i64, state: &'static str, members: Option<i64>) {
    update(db, |board| {
        if let Some(s) = board.segments.iter_mut().find(|s| s.id == id) {
            s.state = state;
            s.members = members.or(s.members);
        }
    });
}

pub(super) fn end(db: &Db, summary: String) {
    update(db, |board| {
        board.running = false;
        board.finished_at = Some(crate::db::now_millis());
        board.summary = Some(summary);
    });
}
