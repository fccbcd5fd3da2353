use clap::Parser;
use export_destinations::app::shutdown_signal;
use export_destinations::cli::{
    ApiTokenCommand, BenchCommand, Cli, Command, ExportCommand, ImportCommand,
};
use export_destinations::commands;
use export_destinations::sandbox::standalone::RunningSandbox;
use export_destinations::{App, Settings, telemetry};

/// glibc's allocator keeps a heap per thread, and every SQLite connection has its own
/// thread: freed memory piled up per heap (a 1,000,000-member export peaked at 296 MiB).
/// mimalloc, built without transparent huge pages and told to return freed memory at once,
/// keeps the console's memory close to what it actually holds (`BENCHMARKS.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    export_destinations::memory::return_freed_memory_at_once();
    let cli = Cli::parse();
    telemetry::init();
    match cli.into_command() {
        Command::Serve(args) => {
            let settings = Settings::from_args(args)?;
            let app = App::build(settings).await?;
            tracing::info!("console ready: open {}", app.public_url());
            app.run_until_stopped().await
        }
        Command::Sandbox(args) => {
            let bind = args.bind;
            let public_url = args.public_url.clone();
            let running = RunningSandbox::bind(args.into_config()?, bind, public_url).await?;
            running.announce();
            running.serve(shutdown_signal()).await
        }
        Command::Import(ImportCommand::Profiles(args)) => commands::import_profiles(args).await,
        Command::DemoData(args) => commands::demo_data(args).await,
        Command::Segments(command) => commands::segments(command).await,
        Command::Export(ExportCommand::Run(args)) => commands::export_run(args).await,
        Command::Forget(args) => commands::forget(args).await,
        Command::ApiToken(ApiTokenCommand::Create(args)) => commands::api_token_create(args).await,
        Command::Bench(BenchCommand::Export(args)) => {
            export_destinations::bench::export(args).await
        }
        Command::Bench(BenchCommand::Scale(args)) => export_destinations::bench::scale(args).await,
        Command::Bench(BenchCommand::Live(args)) => export_destinations::bench::live(args).await,
        Command::Bench(BenchCommand::Data(args)) => export_destinations::bench::data(args).await,
        Command::Bench(BenchCommand::Sources(args)) => {
            export_destinations::bench::sources(args).await
        }
    }
}
