//! Organization key terms: status, rotation and rewrap.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use warden_api::*;
use warden_policies::{Action, Scope};

use super::*;
use crate::ApiError;
use crate::caller::Caller;
use crate::state::App;
use warden_pipeline::{Operation, Target};

pub(super) async fn key_status(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<KeyStatus>, ApiError> {
    let org = org_arg(path)?;
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "keys.status",
                Action::KeyRotate,
                Scope::Path(org.clone()),
                Target::scope(&org),
            ),
            |permit| async move {
                let terms = app.vault.key_status(&permit, &org).await?;
                Ok(Json(KeyStatus {
                    org: org.to_string(),
                    current_term: terms.iter().map(|t| t.term).max().unwrap_or(0),
                    rotate_at: warden_vault::ROTATE_AT,
                    terms: terms
                        .into_iter()
                        .map(|t| KeyTerm {
                            term: t.term,
                            created_at: t.created_at,
                            encryptions: t.encryptions,
                            versions: t.versions,
                        })
                        .collect(),
                }))
            },
        )
        .await
}

pub(super) async fn rotate(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Rotated>, ApiError> {
    let org = org_arg(path)?;
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "keys.rotate",
                Action::KeyRotate,
                Scope::Path(org.clone()),
                Target::scope(&org),
            ),
            |permit| async move {
                Ok(Json(Rotated {
                    term: app.vault.rotate(&permit, &org).await?,
                }))
            },
        )
        .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitQuery {
    /// Versions to re-encrypt in this call (default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<i64>,
}

pub(super) async fn rewrap(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<RewrapStep>, ApiError> {
    let org = org_arg(path)?;
    let limit = query_arg(q)?.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit is between 1 and 1000").field("limit"));
    }
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "keys.rewrap",
                Action::KeyRotate,
                Scope::Path(org.clone()),
                Target::scope(&org),
            ),
            |permit| async move {
                let p = app.vault.rewrap(&permit, &org, limit).await?;
                Ok(Json(RewrapStep {
                    target_term: p.target_term,
                    rewrapped: p.rewrapped,
                    remaining: p.remaining,
                }))
            },
        )
        .await
}
