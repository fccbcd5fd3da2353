//! The built-in Mailchimp sandbox: a real HTTP server that speaks Mailchimp's OAuth and a
//! subset of the Marketing API 3.0 with Mailchimp's rules, limits and faults. The console
//! reaches it exactly as it reaches Mailchimp, through base URLs.

mod api_lists;
mod api_members;
mod api_segments;
mod api_webhooks;
pub mod audience;
mod clock;
mod config;
mod json;
mod limits;
mod oauth;
mod pages;
mod partial;
pub mod problem;
pub mod standalone;
mod state;
pub mod status;
pub mod store;
pub mod webhooks;

use axum::Router;
use axum::middleware::from_fn_with_state;

pub use config::SandboxConfig;
pub use limits::Stats;
pub use pages::PageAccess;
pub use state::Sandbox;

impl Sandbox {
    /// The HTTP routes: OAuth, the Marketing API under `/3.0`, and the sandbox's pages.
    pub fn router(&self) -> Router {
        let api = api_lists::router()
            .merge(api_members::router())
            .merge(api_segments::router())
            .merge(api_webhooks::router())
            .layer(axum::middleware::from_fn(partial::only_the_fields_asked))
            .layer(from_fn_with_state(self.limits(), limits::limit_and_fault));
        Router::new()
            .nest("/3.0", api)
            .merge(oauth::router())
            .merge(pages::router())
            .with_state(self.clone())
    }
}

#[cfg(test)]
mod tests {
    /// The sandbox stands for another company's service: of the console it uses only the
    /// subscriber hash (Mailchimp's own definition) and the crypto helpers.
    #[test]
    fn the_sandbox_borrows_nothing_from_the_console_but_the_subscriber_hash_and_crypto() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sandbox");
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            // Tests may drive the sandbox through the console's command line.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                for (at, _) in line.match_indices("crate::") {
                    let used = &line[at + "crate::".len()..];
                    let allowed = ["sandbox", "domain::subscriber_hash", "crypto::"]
                        .iter()
                        .any(|p| used.starts_with(p));
                    assert!(allowed, "{}:{}: {}", path.display(), n + 1, line.trim());
                }
            }
            files += 1;
        }
        assert!(files >= 10, "the sandbox's files were read");
    }
}
