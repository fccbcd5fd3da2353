//! The Mailchimp sandbox, tested over HTTP as Mailchimp's clients would use it.

mod conformance;
mod credentials;
mod faults;
mod helpers;
mod lists;
mod members;
mod oauth;
mod pages;
mod segments;
mod state;
