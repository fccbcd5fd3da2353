//! What the data commands do: import, demo data, segments. Each prints a report a person
//! can act on and fails with a clear message.

use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{
    ApiTokenArgs, DemoDataArgs, ExportRunArgs, ForgetArgs, ImportProfilesArgs, RefreshArgs,
    SegmentsCommand,
};
use crate::profiles::{ImportOptions, demo, import_file};
use crate::segments::{RefreshOutcome, refresh};
use crate::store::segments;

fn bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!(
        "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)"
    );
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

pub async fn import_profiles(args: ImportProfilesArgs) -> anyhow::Result<()> {
    let db = args.db.connect().await?;
    let size = std::fs::metadata(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?
        .len();
    let progress = bar(size, "bytes");
    let on_progress = |_rows: u64, bytes: u64| progress.set_position(bytes);
    let options = ImportOptions {
        id_column: args.id_column,
        types: args.types.into_iter().collect(),
        max_rows: None,
    };
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let outcome = import_file(&db, &args.file, &name, options, None, &on_progress).await?;
    progress.finish_and_clear();
    let totals = &outcome.totals;
    if let Some(error) = &totals.error {
        bail!(
            "{} was not imported; nothing was changed. {error}",
            args.file.display()
        );
    }
    println!(
        "Imported {}: {} rows read, {} created, {} updated, {}{} rejected.",
        args.file.display(),
        totals.counts.rows_read,
        totals.counts.created,
        totals.counts.updated,
        if totals.counts.unchanged > 0 {
            format!("{} unchanged, ", totals.counts.unchanged)
        } else {
            String::new()
        },
        totals.counts.rejected
    );
    for (name, field_type) in &totals.new_fields {
        println!("New field {name} ({field_type}).");
    }
    for rejection in &totals.rejections {
        println!(
            "Line {}: rejected ({}): {}",
            rejection.line, rejection.customer_id, rejection.reason
        );
    }
    if totals.counts.rejected as usize > totals.rejections.len() {
        println!(
            "… and {} more rejected rows.",
            totals.counts.rejected as usize - totals.rejections.len()
        );
    }
    Ok(())
}

pub async fn demo_data(args: DemoDataArgs) -> anyhow::Result<()> {
    let db = args.db.connect().await?;
    let progress = bar(args.profiles, "profiles");
    let on_progress = |rows: u64, _bytes: u64| progress.set_position(rows);
    let totals = demo::load(
        &db,
        args.profiles,
        args.seed,
        args.segments as usize,
        &on_progress,
    )
    .await?;
    progress.finish_and_clear();
    println!(
        "Demo data: {} profiles created, {} updated.",
        totals.counts.created, totals.counts.updated
    );
    print_refresh(&refresh(&db, None).await?);
    Ok(())
}

pub async fn segments(command: SegmentsCommand) -> anyhow::Result<()> {
    match command {
        SegmentsCommand::List(args) => {
            let db = args.db.connect().await?;
            for segment in segments::list(db.pool()).await? {
                println!(
                    "{:>10}  {}  (last refresh: {})",
                    segment.member_count,
                    segment.name,
                    crate::web::format::optional_timestamp(segment.last_refreshed_at)
                );
            }
            Ok(())
        }
        SegmentsCommand::Refresh(RefreshArgs { names, db }) => {
            let db = db.connect().await?;
            let all = segments::list(db.pool()).await?;
            let mut ids = Vec::new();
            for name in &names {
                match all.iter().find(|s| &s.name == name) {
                    Some(segment) => ids.push(segment.id),
                    None => bail!("there is no segment named {name:?}"),
                }
            }
            let report = refresh(&db, (!names.is_empty()).then_some(ids.as_slice())).await?;
            print_refresh(&report);
            Ok(())
        }
    }
}

fn print_refresh(report: &crate::segments::RefreshReport) {
    println!(
        "Refreshed segments over {} profiles in {} ms:",
        report.profiles_scanned, report.duration_ms
    );
    for (name, outcome) in &report.segments {
        match outcome {
            RefreshOutcome::Refreshed {
                members,
                unmatched_ids,
                ..
            } if *unmatched_ids > 0 => {
                println!("{members:>10}  {name}  ({unmatched_ids} listed IDs have no profile)")
            }
            RefreshOutcome::Refreshed { members, .. } => println!("{members:>10}  {name}"),
            RefreshOutcome::Invalid(errors) => {
                println!(
                    "{:>10}  {name}: not refreshed: {}",
                    "-",
                    crate::domain::Invalid::join(errors)
                )
            }
        }
    }
}

/// The export engine of a command run beside the console: the console's database and
/// secret key (`--secret-key`, or the key file in the data directory), Mailchimp reached as
/// stored at set-up.
fn command_engine(
    db: &crate::db::Db,
    args: &crate::config::DbArgs,
    secret_key: Option<&str>,
) -> anyhow::Result<crate::export::Engine> {
    let key = match secret_key {
        Some(raw) => crate::crypto::SecretKey::parse(raw)?,
        None => crate::crypto::SecretKey::load_or_generate(&args.data_dir.join("secret.key"))?,
    };
    Ok(crate::export::Engine {
        db: db.clone(),
        key,
        client: crate::mailchimp::client::Client::new(),
        limiters: crate::export::Limiters::default(),
        sandbox: Default::default(),
        fresh: Default::default(),
        webhooks: None,
    })
}

/// `export run DESTINATION [--full]`: the same engine as the console, in this process.
pub async fn export_run(args: ExportRunArgs) -> anyhow::Result<()> {
    use crate::store::{destinations, runs};
    let db = args.db.connect().await?;
    let all = destinations::list(db.pool()).await?;
    let Some(destination) = all
        .iter()
        .filter(|d| d.is_active())
        .find(|d| d.display_name == args.destination || d.id.to_string() == args.destination)
    else {
        bail!("there is no saved destination named {:?}", args.destination);
    };
    let engine = command_engine(&db, &args.db, args.secret_key.as_deref())?;
    let worker = crate::export::worker::Worker::new(engine);
    let Some(run) =
        crate::actions::exports::queue_and_claim(&db, destination, args.full, worker.owner())
            .await?
    else {
        bail!(
            "“{}” is already exporting; try again when that run ends",
            destination.display_name
        );
    };
    let run_id = run.id;
    let progress = bar(0, "members");
    let watch = {
        let (pool, progress) = (db.pool().clone(), progress.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(Some(run)) = runs::find(&pool, run_id).await {
                    let c = run.counters;
                    progress.set_length(c.total.max(0) as u64);
                    progress
                        .set_position((c.sent + c.unchanged + c.skipped + c.failed).max(0) as u64);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let executed = worker.execute_claimed(run).await;
    watch.abort();
    progress.finish_and_clear();
    executed?;
    let run = runs::find(db.pool(), run_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the run vanished"))?;
    println!("{}: {}.", run.status.label(), run.counters);
    if let Some(message) = &run.message {
        println!("{message}");
    }
    if run.status != runs::RunStatus::Successful {
        bail!("the export did not succeed");
    }
    Ok(())
}

/// `api-token create --email USER --name NAME`: prints the token once.
pub async fn api_token_create(args: ApiTokenArgs) -> anyhow::Result<()> {
    let db = args.db.connect().await?;
    let email = crate::domain::EmailAddress::parse(&args.email)
        .map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let name = args.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        bail!("--name: say what the token is for, in 1 to 100 characters");
    }
    let Some(user) = crate::store::users::find_by_email(db.pool(), &email)
        .await?
        .filter(|u| u.is_active())
    else {
        bail!("there is no active user {email}");
    };
    let token = crate::store::api_tokens::create(db.pool(), user.id, name).await?;
    println!("{token}");
    eprintln!(
        "This token acts as {email} ({}). It is not shown again.",
        user.role
    );
    Ok(())
}

/// `forget CUSTOMER_ID --by EMAIL`: the console's Forget, from a terminal.
pub async fn forget(args: ForgetArgs) -> anyhow::Result<()> {
    use crate::export::forget::ErasureOutcome;
    let db = args.db.connect().await?;
    let email =
        crate::domain::EmailAddress::parse(&args.by).map_err(|e| anyhow::anyhow!("--by: {e}"))?;
    let Some(user) = crate::store::users::find_by_email(db.pool(), &email)
        .await?
        .filter(|u| u.is_active())
    else {
        bail!("--by: there is no active user {email}");
    };
    if user.role != crate::domain::Role::Administrator {
        bail!(
            "--by: only an administrator may forget a customer; {email} is a {}",
            user.role
        );
    }
    let customer_id = args.customer_id.trim();
    if customer_id.is_empty() {
        bail!("CUSTOMER_ID: give the customer ID of the profile to forget");
    }
    let engine = command_engine(&db, &args.db, args.secret_key.as_deref())?;
    let actor = crate::store::audit::Actor {
        user_id: user.id,
        email: &user.email,
    };
    let Some(forgotten) = crate::export::forget::forget(&engine, customer_id, &actor).await? else {
        bail!("there is no profile with customer ID {customer_id:?}");
    };
    println!("Forgot customer {customer_id}: the profile and its traces are deleted.");
    let mut pending = 0;
    for e in &forgotten.erasures {
        if e.outcome == ErasureOutcome::Pending {
            pending += 1;
        }
        println!("  {}: {}", e.destination, e.detail);
    }
    if forgotten.erasures.is_empty() {
        println!("No destination had exported this customer.");
    }
    if pending > 0 {
        eprintln!(
            "{pending} deletion(s) in Mailchimp are pending; each destination's next run makes them."
        );
    }
    Ok(())
}
