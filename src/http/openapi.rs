//! The OpenAPI 3.1 document of the REST API, and the routes built from it.
//!
//! Each handler carries its own `#[utoipa::path]` (path, method, bodies, answers), the
//! answers are the handlers' own types (`ToSchema`), and the bodies parsed by hand have
//! schemas built from the parsers' constants ([`super::schema`]). The router registers
//! exactly the operations of this document ([`routes`]): a route cannot exist without
//! its documentation, nor be documented without being served.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use socketioxide::adapter::Adapter;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::schema::{BatchBody, ChatBody, ChatMessageSchema, EventBody};
use super::{AppState, chat_messages, events, ops, presence};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fixrx-realtime REST API",
        description = "Controllers push typed events to users and vendors, post chat messages, and read presence. \
                       Every /api/v1 route needs `Authorization: Bearer <API_TOKEN>`.",
        license(name = "MIT")
    ),
    paths(
        events::post_event,
        events::post_batch,
        chat_messages::post_message,
        presence::presence,
        presence::disconnect_user,
        ops::health,
        ops::ready,
        ops::metrics,
        openapi_json,
    ),
    components(schemas(
        EventBody,
        BatchBody,
        ChatBody,
        ChatMessageSchema,
        ErrorBody,
        ErrorDetail,
        crate::emit::Emitted,
        events::BatchAnswer,
        chat_messages::ChatAnswer,
        presence::PresenceAnswer,
        presence::DisconnectAnswer,
        presence::PresenceKind,
        ops::Status,
    )),
    modifiers(&BearerAuth),
    tags((name = "events"), (name = "chat"), (name = "presence"), (name = "operations"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("API_TOKEN")).build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document, as served.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

static DOCUMENT_JSON: LazyLock<Arc<str>> =
    LazyLock::new(|| Arc::from(document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))));

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT_JSON.to_string()).into_response()
}

/// The handler of a documented operation, by its `operationId` (the function's name).
fn handler<A: Adapter>(operation_id: &str) -> Option<MethodRouter<AppState<A>>> {
    Some(match operation_id {
        "post_event" => post(events::post_event::<A>),
        "post_batch" => post(events::post_batch::<A>),
        "post_message" => post(chat_messages::post_message::<A>),
        "presence" => get(presence::presence::<A>),
        "disconnect_user" => post(presence::disconnect_user::<A>),
        "health" => get(ops::health),
        "ready" => get(ops::ready::<A>),
        "metrics" => get(ops::metrics::<A>),
        "openapi_json" => get(openapi_json),
        _ => return None,
    })
}

/// Every documented (method, path, operationId), in document order.
pub fn operations(doc: &utoipa::openapi::OpenApi) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ];
        for (method, op) in methods {
            if let Some(op) = op {
                out.push((method, path.clone(), op.operation_id.clone().unwrap_or_default()));
            }
        }
    }
    out
}

/// The router of every documented operation.
///
/// # Panics
/// At start-up, if an operation of the document has no handler here: a bug that every
/// test run would show at once.
pub fn routes<A: Adapter>() -> Router<AppState<A>> {
    routes_without::<A>(&[])
}

/// [`routes`] without the operations named in `left_out` (by `operationId`): the public
/// port leaves `metrics` to the internal one when `INTERNAL_PORT` is set.
pub fn routes_without<A: Adapter>(left_out: &[&str]) -> Router<AppState<A>> {
    let doc = document();
    let mut router = Router::new();
    for (_, path, id) in operations(&doc) {
        if left_out.contains(&id.as_str()) {
            continue;
        }
        let Some(method_router) = handler::<A>(&id) else {
            panic!("the OpenAPI operation `{id}` ({path}) has no handler in http::openapi::handler");
        };
        router = router.route(&path, method_router);
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_operation_has_a_handler_and_the_document_serializes() {
        let doc = document();
        let ops = operations(&doc);
        assert_eq!(ops.len(), 9);
        for (_, path, id) in &ops {
            assert!(handler::<socketioxide::adapter::LocalAdapter>(id).is_some(), "{id} {path}");
        }
        let json: serde_json::Value = serde_json::from_str(&DOCUMENT_JSON).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        let types = &json["components"]["schemas"]["EventBody"]["oneOf"];
        assert_eq!(types.as_array().map(Vec::len), Some(crate::events::EventType::ALL.len()));
    }
}
