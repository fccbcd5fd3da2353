//! The command line: `export-destinations [serve]`, the sandbox, and the data tools.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{DbArgs, ServeArgs};
use crate::domain::FieldType;
use crate::sandbox::standalone::SandboxArgs;

#[derive(Debug, Parser)]
#[command(
    name = "export-destinations",
    version,
    about = "Export customer segments to Mailchimp audiences",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no command, the console is served with these settings.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web console (the default when no command is given).
    Serve(ServeArgs),
    /// Run the Mailchimp sandbox on its own (OAuth and Marketing API 3.0).
    Sandbox(SandboxArgs),
    /// Import data into the console.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Load deterministic demo profiles and segments.
    DemoData(DemoDataArgs),
    /// List or refresh segments.
    #[command(subcommand)]
    Segments(SegmentsCommand),
    /// Personal API tokens.
    #[command(subcommand)]
    ApiToken(ApiTokenCommand),
    /// Run exports from a terminal.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Measure the console at scale; prints the figures BENCHMARKS.md records.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Forget a customer everywhere: delete the profile and its traces, delete the member
    /// for good in every audience that has it, and never send the address again.
    Forget(ForgetArgs),
}

#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    /// The customer ID of the profile to forget.
    pub customer_id: String,
    /// The administrator asking for it (their email address), recorded in the audit log.
    #[arg(long)]
    pub by: String,
    /// The console's secret key (default: the one kept in the data folder).
    #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Create a token for a user and print it (the only time it is shown).
    Create(ApiTokenArgs),
}

#[derive(Debug, clap::Args)]
pub struct ApiTokenArgs {
    /// The user's email address.
    #[arg(long)]
    pub email: String,
    /// What the token is for.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Export one destination now (by display name or id), with a progress bar.
    Run(ExportRunArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportRunArgs {
    /// The destination's display name or id.
    pub destination: String,
    /// Send every member, not only what changed since the last export.
    #[arg(long)]
    pub full: bool,
    /// The console's secret key (default: the one kept in the data folder).
    #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Import a demo CSV into a fresh database, refresh segments, time the data pages.
    Data(BenchDataArgs),
    /// Export demo profiles to a sandbox process with Mailchimp's realistic limits.
    Export(BenchExportArgs),
    /// Export all over several destinations on several accounts, pages timed under load.
    Scale(BenchScaleArgs),
    /// Keep a destination in sync while profiles change through the API at a steady rate:
    /// each change's latency to the audience, calls against the least needed, CPU, memory.
    Live(BenchLiveArgs),
    /// Pull a million-row table from PostgreSQL and MariaDB, and a CSV file over HTTP:
    /// full, incremental (1 % changed) and unchanged pulls into a fresh console database.
    Sources(BenchSourcesArgs),
}

#[derive(Debug, clap::Args)]
pub struct BenchSourcesArgs {
    /// Rows in the source table (and the CSV file).
    #[arg(long, default_value_t = 1_000_000)]
    pub profiles: u64,
    /// A PostgreSQL server whose user may create databases (one is made for the bench).
    #[arg(long, env = "BENCH_SOURCE_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// A MySQL/MariaDB server whose user may create databases.
    #[arg(long, env = "BENCH_SOURCE_MYSQL_URL")]
    pub mysql_url: Option<String>,
    /// The console's database (default: a fresh SQLite file).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct BenchScaleArgs {
    /// Profiles (every destination exports them all).
    #[arg(long, default_value_t = 100_000)]
    pub profiles: u64,
    /// How many demo segments (1 to 6).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u8).range(1..=6))]
    pub segments: u8,
    /// Destinations, each to an audience of its own.
    #[arg(long, default_value_t = 3)]
    pub destinations: usize,
    /// Mailchimp accounts the destinations are spread over (destination i on account i mod M).
    #[arg(long, default_value_t = 3)]
    pub accounts: usize,
    /// Export runs the console executes at once (EXPORT_WORKERS).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Console processes on one database (PostgreSQL only), each with --workers workers.
    #[arg(long, default_value_t = 1)]
    pub consoles: usize,
    /// Concurrent page clients during the first Export all.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Concurrent page clients during the second (full resync) Export all.
    #[arg(long, default_value_t = 10)]
    pub few_clients: usize,
    /// Seconds pages are timed with nothing running, after each Export all.
    #[arg(long, default_value_t = 10)]
    pub idle_seconds: u64,
    #[command(flatten)]
    pub mailchimp: ModelledMailchimp,
    /// An empty database to use instead of a fresh SQLite file (e.g. PostgreSQL).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct BenchLiveArgs {
    #[command(flatten)]
    pub modelled: ModelledBench,
    /// Profile changes a second, each through the profile API (0: none, to see what an idle
    /// destination kept in sync costs).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub rate: u64,
    /// For how many seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub seconds: u64,
    /// Profiles a request changes: 1 is a PUT of one profile; more is a POST to the bulk
    /// endpoint (for rates one request at a time cannot reach).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub per_request: u64,
    /// The console's sync window (SYNC_WINDOW_MS): how long a change waits to be taken in.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub window_ms: u64,
}

/// What `bench export` and `bench live` run on: demo profiles in a console database, and a
/// sandbox process modelling Mailchimp's time per call and per member.
#[derive(Debug, clap::Args)]
pub struct ModelledBench {
    /// How many profiles.
    #[arg(long, default_value_t = 1_000_000)]
    pub profiles: u64,
    /// How many demo segments (1 to 6).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u8).range(1..=6))]
    pub segments: u8,
    #[command(flatten)]
    pub mailchimp: ModelledMailchimp,
    /// An empty database to use instead of a fresh SQLite file (e.g. PostgreSQL).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// The time the benches' sandbox takes, as Mailchimp would.
#[derive(Debug, clap::Args)]
pub struct ModelledMailchimp {
    /// Modelled milliseconds per call (Mailchimp's realistic profile: 150).
    #[arg(long, default_value_t = 150)]
    pub latency_ms: u64,
    /// Modelled microseconds per member in a call (realistic: 1000).
    #[arg(long, default_value_t = 1000)]
    pub per_member_us: u64,
}

#[derive(Debug, clap::Args)]
pub struct BenchExportArgs {
    #[command(flatten)]
    pub modelled: ModelledBench,
    /// Members the naive one-call-per-member exporter is timed on.
    #[arg(long, default_value_t = 2000)]
    pub naive_sample: u64,
    /// Members the serial batch exporter (500 a call, one call after another) sends.
    #[arg(long, default_value_t = 20_000)]
    pub serial_sample: u64,
    /// Requests per second to each of the two pages timed during the full export.
    #[arg(long, default_value_t = 10)]
    pub page_rps: u32,
}

#[derive(Debug, clap::Args)]
pub struct BenchDataArgs {
    /// How many profiles.
    #[arg(long, default_value_t = 1_000_000)]
    pub profiles: u64,
    /// How many demo segments (up to 6).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u8).range(0..=6))]
    pub segments: u8,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// An empty database to use instead of a fresh SQLite file (e.g. PostgreSQL).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import profiles from a CSV file whose first line names the columns.
    Profiles(ImportProfilesArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportProfilesArgs {
    /// The CSV file (UTF-8, with or without a BOM).
    pub file: PathBuf,
    /// The column holding the customer ID (default: CustomerId, customer_id or ID).
    #[arg(long)]
    pub id_column: Option<String>,
    /// The type of a new field, as FIELD=TYPE (text, email, number, date, boolean); repeatable.
    #[arg(long = "type", value_parser = parse_field_type)]
    pub types: Vec<(String, FieldType)>,
    #[command(flatten)]
    pub db: DbArgs,
}

fn parse_field_type(raw: &str) -> Result<(String, FieldType), String> {
    let (field, kind) = raw
        .split_once('=')
        .ok_or_else(|| format!("expected FIELD=TYPE, got {raw:?}"))?;
    Ok((field.trim().to_owned(), kind.parse()?))
}

#[derive(Debug, clap::Args)]
pub struct DemoDataArgs {
    /// How many profiles to write.
    #[arg(long, default_value_t = 20_000)]
    pub profiles: u64,
    /// Seed of the generator: the same seed writes the same profiles.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How many of the six demo segments to create.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u8).range(0..=6))]
    pub segments: u8,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Subcommand)]
pub enum SegmentsCommand {
    /// List segments with their member counts.
    List(DbOnly),
    /// Refresh segments (all, or those named).
    Refresh(RefreshArgs),
}

#[derive(Debug, clap::Args)]
pub struct DbOnly {
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    /// Segment names; none means every segment.
    pub names: Vec<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

impl Cli {
    /// The command to run: `serve` when none was named.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}
