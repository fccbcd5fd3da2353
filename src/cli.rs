//! The command line: `export-destinations [serve]` and, as the console grows, its other tools.

use clap::{Parser, Subcommand};

use crate::config::ServeArgs;
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
}

impl Cli {
    /// The command to run: `serve` when none was named.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}
