//! Reading a CSV file at an HTTP(S) URL. The file's validators (`ETag`, `Last-Modified`)
//! are sent back on the next pull, so an unchanged file costs one request and no row. The
//! body is written to a temporary file as it arrives and parsed from there, as an upload is.

use std::io::{Seek, Write};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION};

use super::spec::Credentials;
use super::{Opened, SourceError, SourceSpec, Sources};
use crate::profiles::import::{CsvRecords, Records};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Fetches the file; `Ok(None)` when the server says it has not changed since the
/// validators were given.
pub async fn open(
    sources: &Sources,
    spec: &SourceSpec,
    validators: Option<(&Option<String>, &Option<String>)>,
) -> Result<Option<Opened>, SourceError> {
    let url = &spec.url;
    let default_port = if url.scheme() == "https" { 443 } else { 80 };
    let addrs = sources.reach.check(url, default_port).await?;
    let mut client = reqwest::Client::builder()
        // A redirect could lead anywhere; the person gives the file's own URL instead.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(sources.statement_timeout)
        .user_agent(concat!("export-destinations/", env!("CARGO_PKG_VERSION")));
    if let Some(host) = url.host_str() {
        // Connect to the addresses that were checked, not to a second answer of the name.
        client = client.resolve_to_addrs(host, &addrs);
    }
    let client = client.build().map_err(|e| {
        SourceError::new(format!("The console could not make an HTTP client: {e}."))
    })?;
    let mut request = client.get(url.clone());
    request = match &spec.credentials {
        Credentials::None => request,
        Credentials::Bearer { token } => request.bearer_auth(token),
        Credentials::Basic { user, password } => request.basic_auth(user, Some(password)),
    };
    if let Some((etag, last_modified)) = validators {
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(last_modified) = last_modified {
            request = request.header(IF_MODIFIED_SINCE, last_modified);
        }
    }
    let shown = spec.url_shown();
    let mut response = request.send().await.map_err(|e| {
        SourceError::new(format!(
            "The file at {shown} could not be fetched: {}.",
            without_url(&e)
        ))
    })?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && validators.is_some() {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(refused(status, &response, &shown));
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
    let mut file = tempfile::tempfile()
        .map_err(|e| SourceError::new(format!("The console could not keep the file: {e}.")))?;
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        SourceError::new(format!(
            "The file at {shown} stopped arriving part way: {}.",
            without_url(&e)
        ))
    })? {
        file.write_all(&chunk)
            .map_err(|e| SourceError::new(format!("The console could not keep the file: {e}.")))?;
    }
    file.rewind()
        .map_err(|e| SourceError::new(format!("The console could not read the file: {e}.")))?;
    let mut records = CsvRecords::new(file);
    let columns = records.header().map_err(|e| SourceError::new(e.as_str()))?;
    Ok(Some(Opened {
        columns,
        records: Box::new(records),
        watermark: None,
        etag,
        last_modified,
    }))
}

fn refused(status: StatusCode, response: &reqwest::Response, shown: &str) -> SourceError {
    let code = status.as_u16();
    SourceError::new(match code {
        300..=399 => format!(
            "The server answered {code} and sends the file elsewhere ({}); give that URL instead.",
            response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no address given")
        ),
        401 | 403 => {
            format!("The server refused to give the file (HTTP {code}): check the credentials.")
        }
        404 | 410 => format!("There is no file at {shown} (HTTP {code})."),
        _ => format!("The server answered HTTP {code} for {shown}."),
    })
}

/// A reqwest error's message without the URL it names (the URL may carry a secret).
fn without_url(err: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    let mut deepest = None;
    while let Some(inner) = source {
        deepest = Some(inner.to_string());
        source = inner.source();
    }
    if err.is_timeout() {
        return "it took too long".into();
    }
    if err.is_connect() {
        return format!(
            "the server could not be reached ({})",
            deepest.unwrap_or_else(|| "connection failed".into())
        );
    }
    deepest.unwrap_or_else(|| "the request failed".into())
}
