//! The API's own description, OpenAPI 3.1, served at `/api/v1/openapi.json`: derived from
//! the handlers' annotations and the request and response types they use.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::api::models::{
    ConditionOut, Counts, DestinationKind, DestinationList, DestinationOut, DestinationStatus,
    FieldValueIn, MailchimpTarget, MergeFieldOut, NewMemberStatusOut, ProfileFieldsIn, ProfileIn,
    ProfileOutcome, ProfileWritten, ProfilesPushed, RefreshOut, RefreshedSegment, RowOutcome,
    RowResult, RunOut, RunStatusOut, SegmentKind, SegmentList, SegmentOut,
};
use crate::api::{FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "export-destinations automation API",
        version = "1",
        description = "Every error is application/problem+json (see Problem), naming the field at fault in errors when \
            there is one. Besides the responses listed per operation: a path the API does not have answers 404, and a \
            method a path does not take answers 405 with an Allow header (components.responses). Request bodies are \
            JSON objects sent with Content-Type: application/json (415 otherwise), at most 1 MiB (413); fields an \
            operation does not take are refused (422). A profile's body names its fields, whichever the catalogue \
            has or gains; a bulk profile write takes a JSON array or NDJSON (Content-Type: application/x-ndjson) of \
            at most 10,000 profiles in at most 32 MiB (413 past either)."
    ),
    paths(
        super::destinations::list,
        super::destinations::create,
        super::destinations::show,
        super::destinations::change,
        super::destinations::start_run,
        super::destinations::preview,
        super::run,
        super::members_csv,
        super::list_segments,
        super::segments::create,
        super::segments::show,
        super::segments::change,
        super::segments::delete,
        super::refresh_segments,
        super::profiles::put_profile,
        super::profiles::push_profiles,
        super::profiles::delete_profile,
        super::profiles::forget_customer,
        super::sources::list,
        super::sources::create,
        super::sources::start_pull,
        super::sources::show_pull,
    ),
    components(schemas(
        Problem,
        FieldError,
        DestinationOut,
        DestinationList,
        DestinationKind,
        DestinationStatus,
        MailchimpTarget,
        NewMemberStatusOut,
        MergeFieldOut,
        RunOut,
        RunStatusOut,
        Counts,
        SegmentOut,
        SegmentList,
        SegmentKind,
        ConditionOut,
        crate::domain::segment_rules::Match,
        crate::domain::segment_rules::Operator,
        super::segments::NewSegment,
        super::segments::SegmentChange,
        super::segments::ConditionIn,
        super::segments::ConditionValue,
        RefreshOut,
        RefreshedSegment,
        crate::export::preview::Preview,
        crate::export::preview::Reason,
        crate::export::preview::TagChange,
        crate::export::forget::Forgotten,
        super::sources::SourceOut,
        super::sources::SourceList,
        super::sources::PullOut,
        super::sources::NewSource,
        super::sources::CredentialsIn,
        super::sources::PullRequestIn,
        crate::export::forget::Erasure,
        crate::export::forget::ErasureOutcome,
        FieldValueIn,
        ProfileFieldsIn,
        ProfileIn,
        ProfileOutcome,
        ProfileWritten,
        RowOutcome,
        RowResult,
        ProfilesPushed,
    )),
    modifiers(&TokensAndFallbacks, &ProblemsByShape),
    security(("token" = []))
)]
struct ApiDoc;

/// The bearer token scheme, and the answers of every path the API does not have.
struct TokensAndFallbacks;

impl Modify for TokensAndFallbacks {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some("A personal API token (Admin > API tokens).".into());
        components.add_security_scheme("token", SecurityScheme::Http(bearer));
        for (name, description) in [
            ("NotFound", "No such path under /api/v1"),
            (
                "MethodNotAllowed",
                "The path does not take this method; Allow lists those it takes",
            ),
        ] {
            components.responses.insert(
                name.into(),
                ResponseBuilder::new()
                    .description(description)
                    .content("application/problem+json", problem())
                    .build()
                    .into(),
            );
        }
    }
}

/// The problems an operation answers because of its shape, added to every operation here
/// instead of being listed on each handler: 401 (every operation takes a token), 403 (every
/// write needs a role), 400 and 404 (an ID in the path; a PUT makes what it does not find),
/// and 400, 413, 415 and 422 (a JSON body). Handlers list their own answers and the problems
/// only they give (409, 502).
struct ProblemsByShape;

impl Modify for ProblemsByShape {
    fn modify(&self, openapi: &mut Document) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_id = path.contains('{');
            let operations = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else {
                    continue;
                };
                let body = operation.request_body.is_some();
                let problems = [
                    (true, "401", "No valid API token was sent"),
                    (
                        method != "get",
                        "403",
                        "The token's user lacks the role this takes",
                    ),
                    (
                        body || path.contains("{id}"),
                        "400",
                        "The ID in the path, or the body, cannot be read",
                    ),
                    (
                        has_id && method != "put",
                        "404",
                        "There is no such resource",
                    ),
                    (body, "413", "The body is larger than this operation takes"),
                    (body, "415", "The body is not sent as JSON"),
                    (body, "422", "Some fields are not right; errors names each"),
                ];
                for (applies, status, description) in problems {
                    if !applies || operation.responses.responses.contains_key(status) {
                        continue;
                    }
                    operation.responses.responses.insert(
                        status.to_owned(),
                        ResponseBuilder::new()
                            .description(description)
                            .content("application/problem+json", problem())
                            .build()
                            .into(),
                    );
                }
            }
        }
    }
}

fn problem() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build()
}

pub async fn document() -> Json<Document> {
    Json(description())
}

pub fn description() -> Document {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(doc: &serde_json::Value, path: &str, method: &str) -> Vec<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is described"))
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn every_operation_lists_the_problems_its_shape_can_answer() {
        let doc = serde_json::to_value(description()).unwrap();
        let cases: [(&str, &str, &[&str]); 6] = [
            ("/api/v1/destinations", "get", &["200", "401"]),
            (
                "/api/v1/destinations/{id}",
                "get",
                &["200", "400", "401", "404"],
            ),
            (
                "/api/v1/destinations/{id}/runs",
                "post",
                &[
                    "202", "400", "401", "403", "404", "409", "413", "415", "422",
                ],
            ),
            (
                "/api/v1/profiles/{customer_id}",
                "put",
                &["200", "201", "400", "401", "403", "413", "415", "422"],
            ),
            (
                "/api/v1/profiles/{customer_id}",
                "delete",
                &["204", "401", "403", "404"],
            ),
            ("/api/v1/segments/refresh", "post", &["200", "401", "403"]),
        ];
        for (path, method, expected) in cases {
            assert_eq!(statuses(&doc, path, method), expected, "{method} {path}");
        }
        let problem = &doc["paths"]["/api/v1/destinations/{id}/runs"]["post"]["responses"]["413"];
        assert_eq!(
            problem["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        assert!(problem["description"].as_str().unwrap().contains("larger"));
    }
}
