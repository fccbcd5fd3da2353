//! CSV import of profiles. The header row names the fields; one column is the customer ID;
//! types come from the catalogue, from the caller, or are inferred from the first rows.
//! The file is streamed, never held whole.
//!
//! A bad **row** (wrong number of columns, no customer ID, a value that does not fit its
//! field's type) is rejected alone and reported with its line number and reason; the other
//! rows are imported. A bad **file** (not UTF-8, no header, no ID column, repeated column
//! names, a quote that never closes) imports nothing, and says why.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::db::Db;
use crate::domain::{FieldName, FieldType, Invalid, field};
use crate::profiles::row::{self, Column};
use crate::profiles::writer::{self, Batch, Message, Progress, Totals};
use crate::store::fields::{self as catalogue, Field};
use crate::store::imports::Rejection;
use crate::store::profiles::ProfileWrite;

const BATCH_ROWS: usize = 500;
/// Rows read before types of new fields are inferred.
const SAMPLE_ROWS: usize = 1000;
/// Headers taken as the customer ID column when none is named (compared loosely).
const ID_HEADERS: [&str; 3] = ["customerid", "id", "customer"];

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The column holding the customer ID; by default CustomerId, customer_id or ID.
    pub id_column: Option<String>,
    /// Types for new fields, overriding inference.
    pub types: HashMap<String, FieldType>,
    /// Read at most this many rows (a preview of what an import would do).
    pub max_rows: Option<u64>,
}

/// The result of one import, as recorded under `id`.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    pub id: i64,
    pub totals: Totals,
}

/// Imports a CSV file; the outcome's `error` is set when the file was refused whole.
pub async fn import_file(
    db: &Db,
    path: &Path,
    file_name: &str,
    options: ImportOptions,
    imported_by: Option<i64>,
    progress: Progress<'_>,
) -> anyhow::Result<ImportOutcome> {
    let file = std::fs::File::open(path)?;
    import_reader(db, file, file_name, options, imported_by, progress).await
}

pub async fn import_reader<R: Read + Send + 'static>(
    db: &Db,
    reader: R,
    file_name: &str,
    options: ImportOptions,
    imported_by: Option<i64>,
    progress: Progress<'_>,
) -> anyhow::Result<ImportOutcome> {
    let (receiver, parser) = start(db, CsvRecords::new(reader), options).await?;
    let (id, totals) = writer::write(db, receiver, file_name, imported_by, progress).await?;
    parser.await?;
    Ok(ImportOutcome { id, totals })
}

/// Rows to import: a header naming the columns, then records. A CSV file is one kind;
/// a source's rows are another, typed and checked the same way.
pub trait Records: Send + 'static {
    /// The column names, in order.
    fn header(&mut self) -> Result<Vec<String>, Invalid>;
    /// The next record: (line or row number, cells, bytes read so far).
    fn next_record(&mut self) -> Result<Option<(u64, Vec<String>, u64)>, Invalid>;
    /// Checks once the last record was read: `last` is its line and whether one of its
    /// values holds a line break.
    fn finish(&mut self, _last: Option<(u64, bool)>) -> Result<(), Invalid> {
        Ok(())
    }
}

impl Records for Box<dyn Records> {
    fn header(&mut self) -> Result<Vec<String>, Invalid> {
        (**self).header()
    }

    fn next_record(&mut self) -> Result<Option<(u64, Vec<String>, u64)>, Invalid> {
        (**self).next_record()
    }

    fn finish(&mut self, last: Option<(u64, bool)>) -> Result<(), Invalid> {
        (**self).finish(last)
    }
}

/// Starts parsing `records` against the field catalogue on a blocking thread; the writer
/// consumes what it sends.
pub async fn start<T: Records>(
    db: &Db,
    records: T,
    options: ImportOptions,
) -> anyhow::Result<(mpsc::Receiver<Message>, tokio::task::JoinHandle<()>)> {
    let known = catalogue::list(db.pool()).await?;
    let (sender, receiver) = mpsc::channel(4);
    let parser = tokio::task::spawn_blocking(move || {
        if let Err(reason) = parse(records, &known, &options, &sender) {
            let _ = sender.blocking_send(Message::Failed(reason));
        }
    });
    Ok((receiver, parser))
}

/// A CSV file's records.
pub struct CsvRecords<R: Read> {
    csv: csv::Reader<QuoteCounter<R>>,
    quotes: Arc<AtomicU64>,
    record: csv::ByteRecord,
}

impl<R: Read> CsvRecords<R> {
    pub fn new(reader: R) -> Self {
        let quotes = Arc::new(AtomicU64::new(0));
        let reader = QuoteCounter {
            inner: reader,
            quotes: quotes.clone(),
        };
        Self {
            csv: csv::ReaderBuilder::new().flexible(true).from_reader(reader),
            quotes,
            record: csv::ByteRecord::new(),
        }
    }
}

impl<R: Read + Send + 'static> Records for CsvRecords<R> {
    fn header(&mut self) -> Result<Vec<String>, Invalid> {
        let raw_headers = self.csv.byte_headers().map_err(describe)?.clone();
        if raw_headers.is_empty() || raw_headers.iter().all(|h| h.is_empty()) {
            return Err("The file is empty: its first line must name the columns.".into());
        }
        raw_headers
            .iter()
            .map(|raw| {
                std::str::from_utf8(raw).map(str::to_owned).map_err(|_| {
                    "Line 1 is not UTF-8 text: save the file as UTF-8 (with or without a BOM) and import it again."
                        .into()
                })
            })
            .collect()
    }

    fn next_record(&mut self) -> Result<Option<(u64, Vec<String>, u64)>, Invalid> {
        read_record(&mut self.csv, &mut self.record)
    }

    fn finish(&mut self, last: Option<(u64, bool)>) -> Result<(), Invalid> {
        // A quote that never closes swallows the rest of the file into one value: an odd
        // number of quotes with a line break inside the last value. Refuse the file rather
        // than lose the rows after that quote.
        if let Some((line, true)) = last {
            if self.quotes.load(Ordering::Relaxed) % 2 == 1 {
                return Err(Invalid::new(format!(
                    "Line {line}: a quoted value starts here and never ends. Check the quotes on that line."
                )));
            }
        }
        Ok(())
    }
}

fn parse<T: Records>(
    mut records: T,
    known: &[Field],
    options: &ImportOptions,
    out: &mpsc::Sender<Message>,
) -> Result<(), Invalid> {
    let names = column_names(records.header()?, known.len())?;
    let id_index = id_column(&names, options.id_column.as_deref())?;

    // Read a sample to infer the types of new fields.
    let limit = options.max_rows.unwrap_or(u64::MAX);
    let mut sample = Vec::new();
    while sample.len() < SAMPLE_ROWS && (sample.len() as u64) < limit {
        match records.next_record()? {
            Some(row) => sample.push(row),
            None => break,
        }
    }
    let (columns, new_fields) = typed_columns(&names, id_index, known, options, &sample)?;
    let primary_email = primary_email(known, &new_fields);
    let sets_email_key = primary_email
        .as_ref()
        .is_some_and(|email| names.contains(email));
    send(
        out,
        Message::Header {
            new_fields,
            sets_email_key,
        },
    )?;

    let mut batch = Batch::default();
    let mut batch_ids = HashSet::new();
    let mut handle =
        |(line, cells, bytes): (u64, Vec<String>, u64), batch: &mut Batch| -> Result<(), Invalid> {
            let shape = Shape {
                id_index,
                columns: &columns,
                primary_email: primary_email.as_deref(),
            };
            match to_profile(line, &cells, &shape) {
                Ok(profile) => {
                    if !batch_ids.insert(profile.customer_id.clone()) {
                        // The same ID twice in one batch: write what came before first.
                        send(out, Message::Batch(std::mem::take(batch)))?;
                        batch_ids.clear();
                        batch_ids.insert(profile.customer_id.clone());
                    }
                    batch.rows.push(profile);
                }
                Err(rejection) => batch.rejections.push(rejection),
            }
            batch.rows_read += 1;
            batch.bytes_read = bytes;
            if batch.rows.len() + batch.rejections.len() >= BATCH_ROWS {
                send(out, Message::Batch(std::mem::take(batch)))?;
                batch_ids.clear();
            }
            Ok(())
        };
    let mut last: Option<(u64, bool)> = None;
    let mut taken = sample.len() as u64;
    for row in sample {
        last = Some((row.0, row.1.iter().any(|c| c.contains('\n'))));
        handle(row, &mut batch)?;
    }
    while taken < limit {
        let Some(row) = records.next_record()? else {
            break;
        };
        taken += 1;
        last = Some((row.0, row.1.iter().any(|c| c.contains('\n'))));
        handle(row, &mut batch)?;
    }
    if taken < limit {
        records.finish(last)?;
    }
    if batch.rows_read > 0 {
        send(out, Message::Batch(batch))?;
    }
    Ok(())
}

/// The header's column names, checked: each a field name, none twice, not too many.
fn column_names(raw_headers: Vec<String>, known: usize) -> Result<Vec<String>, Invalid> {
    // Counted before any name is read: a header of 100,000 columns is refused at once.
    if raw_headers.len() > catalogue::MAX_FIELDS + 1 {
        return Err(too_many_fields(raw_headers.len() - 1, known));
    }
    let mut names = Vec::new();
    for text in &raw_headers {
        let name = FieldName::parse(text).map_err(|e| format!("Line 1: {e}."))?;
        names.push(name.as_str().to_owned());
    }
    let mut seen = HashSet::new();
    for name in &names {
        if !seen.insert(name.to_lowercase()) {
            return Err(Invalid::new(format!(
                "Line 1: the column {:?} appears twice.",
                crate::domain::text::excerpt(name)
            )));
        }
    }
    Ok(names)
}

/// Each column's field and type (`None` for the ID column): a known field keeps its type,
/// a new one takes the type given for it or the one its sample's values suggest. Also the
/// new fields, which must fit in the catalogue.
#[allow(clippy::type_complexity)]
fn typed_columns(
    names: &[String],
    id_index: usize,
    known: &[Field],
    options: &ImportOptions,
    sample: &[(u64, Vec<String>, u64)],
) -> Result<(Vec<Option<Column>>, Vec<(String, FieldType)>), Invalid> {
    let known_types: HashMap<&str, FieldType> = known
        .iter()
        .map(|f| (f.name.as_str(), f.field_type))
        .collect();
    let mut columns = Vec::new();
    let mut new_fields = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i == id_index {
            columns.push(None);
            continue;
        }
        let field_type = match (known_types.get(name.as_str()), options.types.get(name)) {
            (Some(t), _) => *t,
            (None, Some(t)) => *t,
            (None, None) => infer(
                name,
                // Rows of the wrong shape are rejected: their values say nothing of a column.
                sample
                    .iter()
                    .filter(|(_, cells, _)| cells.len() == names.len())
                    .map(|(_, cells, _)| cells[i].as_str()),
            ),
        };
        if !known_types.contains_key(name.as_str()) {
            new_fields.push((name.clone(), field_type));
        }
        columns.push(Some(Column {
            name: name.clone(),
            field_type,
        }));
    }
    if known.len() + new_fields.len() > catalogue::MAX_FIELDS {
        return Err(too_many_fields(new_fields.len(), known.len()));
    }
    Ok((columns, new_fields))
}

/// The field a profile's email address is read from: the catalogue's email field, else
/// the first new one of type email.
fn primary_email(known: &[Field], new_fields: &[(String, FieldType)]) -> Option<String> {
    known
        .iter()
        .find(|f| f.field_type == FieldType::Email)
        .map(|f| f.name.clone())
        .or_else(|| {
            new_fields
                .iter()
                .find(|(_, t)| *t == FieldType::Email)
                .map(|(n, _)| n.clone())
        })
}

fn too_many_fields(new: usize, existing: usize) -> Invalid {
    Invalid::new(format!(
        "Line 1: the file would add {new} fields to the {existing} there are; the console keeps at most {} fields. \
         Nothing was imported: remove columns you do not need, or delete unused fields under Data > Fields.",
        catalogue::MAX_FIELDS
    ))
}

/// Counts the double quotes that pass through.
struct QuoteCounter<R> {
    inner: R,
    quotes: Arc<AtomicU64>,
}

impl<R: Read> Read for QuoteCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let found = buf[..n].iter().filter(|b| **b == b'"').count() as u64;
        self.quotes.fetch_add(found, Ordering::Relaxed);
        Ok(n)
    }
}

fn send(out: &mpsc::Sender<Message>, message: Message) -> Result<(), Invalid> {
    // The writer stopped (it failed and said why): stop reading.
    out.blocking_send(message)
        .map_err(|_| "The import was stopped.".into())
}

/// The next record as (line, cells, bytes read so far); file-level problems are errors.
fn read_record<R: Read>(
    csv: &mut csv::Reader<R>,
    record: &mut csv::ByteRecord,
) -> Result<Option<(u64, Vec<String>, u64)>, Invalid> {
    let more = csv.read_byte_record(record).map_err(describe)?;
    if !more {
        return Ok(None);
    }
    let line = record.position().map_or(0, |p| p.line());
    let mut cells = Vec::with_capacity(record.len());
    for cell in record.iter() {
        let text = std::str::from_utf8(cell).map_err(|_| {
            format!("Line {line} is not UTF-8 text: save the file as UTF-8 (with or without a BOM) and import it again.")
        })?;
        cells.push(text.to_owned());
    }
    Ok(Some((line, cells, csv.position().byte())))
}

/// Where a record's values go: the ID column, the field of every other column, and the
/// primary email field's name.
struct Shape<'a> {
    id_index: usize,
    columns: &'a [Option<Column>],
    primary_email: Option<&'a str>,
}

fn to_profile(line: u64, cells: &[String], shape: &Shape) -> Result<ProfileWrite, Rejection> {
    let raw_id = cells
        .get(shape.id_index)
        .map(String::as_str)
        .unwrap_or_default();
    let reject = |reason: String| Rejection {
        line,
        customer_id: row::shown_id(raw_id),
        reason,
    };
    if cells.len() != shape.columns.len() {
        return Err(reject(format!(
            "The row has {} values; the header names {} columns.",
            cells.len(),
            shape.columns.len()
        )));
    }
    let values = cells
        .iter()
        .zip(shape.columns)
        .filter_map(|(cell, column)| Some((column.as_ref()?, cell.as_str())));
    row::typed(raw_id, values, shape.primary_email).map_err(|fault| reject(fault.to_string()))
}

pub fn id_column(names: &[String], named: Option<&str>) -> Result<usize, Invalid> {
    if let Some(named) = named {
        return names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(named.trim()))
            .ok_or_else(|| {
                format!(
                    "There is no column named {:?} for the customer ID.",
                    crate::domain::text::excerpt(named)
                )
                .into()
            });
    }
    let loose = |s: &str| {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_lowercase()
    };
    ID_HEADERS
        .iter()
        .find_map(|wanted| names.iter().position(|n| loose(n) == *wanted))
        .ok_or_else(|| {
            "No column holds the customer ID: call it CustomerId (or ID), or name the column to use.".into()
        })
}

/// A new field's type from its name and sample values.
pub fn infer<'a>(name: &str, values: impl Iterator<Item = &'a str>) -> FieldType {
    let values: Vec<&str> = values.map(str::trim).filter(|v| !v.is_empty()).collect();
    if name.to_lowercase().contains("email") {
        return FieldType::Email;
    }
    if values.is_empty() {
        return FieldType::Text;
    }
    // A typed reading wins when nine in ten values fit it: a few typos in a numeric
    // column are then rejected and reported row by row instead of turning it into text.
    let mostly = |test: &dyn Fn(&str) -> bool| {
        values.iter().filter(|v| test(v)).count() * 10 >= values.len() * 9
    };
    let words = |v: &str| !v.chars().all(|c| c.is_ascii_digit());
    if mostly(&|v| field::parse_bool(v).is_some()) && values.iter().any(|v| words(v)) {
        return FieldType::Boolean;
    }
    if mostly(&|v| field::parse_number(v).is_some()) {
        return FieldType::Number;
    }
    if mostly(&|v| field::parse_date(v).is_some()) {
        return FieldType::Date;
    }
    if values.iter().filter(|v| v.contains('@')).count() * 10 >= values.len() * 8 {
        return FieldType::Email;
    }
    FieldType::Text
}

fn describe(err: csv::Error) -> Invalid {
    Invalid::new(match err.kind() {
        csv::ErrorKind::Utf8 { pos, .. } => format!(
            "Line {} is not UTF-8 text: save the file as UTF-8 (with or without a BOM) and import it again.",
            pos.as_ref().map(|p| p.line()).unwrap_or(1)
        ),
        csv::ErrorKind::Io(e) => format!("The file could not be read: {e}."),
        _ => format!("The file is not valid CSV: {err}."),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_inferred_from_names_and_values() {
        assert_eq!(infer("WorkEmail", ["", "x"].into_iter()), FieldType::Email);
        assert_eq!(
            infer("Age", ["31", "42.5", ""].into_iter()),
            FieldType::Number
        );
        assert_eq!(
            infer("Since", ["2020-01-01", "2021-12-31"].into_iter()),
            FieldType::Date
        );
        assert_eq!(
            infer("OptIn", ["true", "false", "yes"].into_iter()),
            FieldType::Boolean
        );
        assert_eq!(
            infer("Flag", ["1", "0"].into_iter()),
            FieldType::Number,
            "0/1 alone read as numbers"
        );
        assert_eq!(
            infer(
                "Contact",
                ["a@x.io", "b@y.io", "c@z.io", "d@w.io", "oops"].into_iter()
            ),
            FieldType::Email
        );
        assert_eq!(infer("City", ["Berlin", "42"].into_iter()), FieldType::Text);
        let mostly_numbers = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "eleven"];
        assert_eq!(
            infer("Visits", mostly_numbers.into_iter()),
            FieldType::Number,
            "one typo in eleven"
        );
        assert_eq!(infer("Empty", std::iter::empty()), FieldType::Text);
    }

    #[test]
    fn the_id_column_is_found_by_its_usual_names_or_named() {
        let names: Vec<String> = ["Email", "Customer_ID", "Name"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(id_column(&names, None), Ok(1));
        assert_eq!(id_column(&names, Some("name")), Ok(2));
        assert!(
            id_column(&names, Some("Nope"))
                .unwrap_err()
                .as_str()
                .contains("no column named")
        );
        let none: Vec<String> = vec!["Email".into()];
        assert!(
            id_column(&none, None)
                .unwrap_err()
                .as_str()
                .contains("CustomerId")
        );
    }
}
