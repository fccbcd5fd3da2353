//! Real-browser tests in headless Chromium through chromedriver. They need
//! `/usr/bin/chromium` and `/usr/bin/chromedriver`, so they are ignored by a plain
//! `cargo test` and run by `cargo test -- --ignored` (as `.ci/run` does).

mod first_steps;
mod kit;
mod mailchimp;
mod reach;
