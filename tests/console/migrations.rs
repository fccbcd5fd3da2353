//! The migrations of both backends: every version (a file name's numeric prefix) that one
//! backend has, the other has too, so that a database upgraded on either lands on the same
//! schema version.

use std::collections::BTreeMap;
use std::path::Path;

/// The migrations in `folder`, by version: the digits before the first `_` of each `.sql`
/// file's name.
fn versions(folder: &str) -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(folder);
    let mut versions = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sql") {
            continue;
        }
        let version = name.split('_').next().unwrap_or_default();
        assert!(
            !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()),
            "migrations/{folder}/{name}: the name does not start with a version number"
        );
        let path = format!("migrations/{folder}/{name}");
        if let Some(other) = versions.insert(version.to_owned(), path.clone()) {
            panic!("{path} and {other} have the same version");
        }
    }
    versions
}

#[test]
fn sqlite_and_postgres_have_the_same_migration_versions() {
    let sqlite = versions("sqlite");
    let postgres = versions("postgres");
    assert!(!sqlite.is_empty(), "the SQLite migrations were read");
    let mut missing: Vec<String> = Vec::new();
    for (version, file) in &sqlite {
        if !postgres.contains_key(version) {
            missing.push(format!(
                "{file}: no PostgreSQL migration has version {version}"
            ));
        }
    }
    for (version, file) in &postgres {
        if !sqlite.contains_key(version) {
            missing.push(format!("{file}: no SQLite migration has version {version}"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
