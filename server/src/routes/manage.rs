//! What the management rules (`warden_policies::manage`) decide over,
//! loaded from storage, and their refusals as answers. The rules
//! themselves are pure functions in `policies`; nothing here decides.

use warden_pipeline::Target;
use warden_policies::{ManageDenial, Member, Scope, visible_to};
use warden_types::ScopePath;

use crate::ApiError;
use crate::caller::Caller;
use crate::state::App;

/// A principal with its home and every binding it holds, or `None` if
/// there is no such principal (workloads have no row and are never
/// managed).
pub(super) async fn member(app: &App, id: &str) -> Result<Option<Member>, ApiError> {
    let Some(row) = app.store.principal(id).await? else {
        return Ok(None);
    };
    Ok(Some(Member {
        bindings: app.pipeline.identity().bindings(&app.store, id).await?,
        id: row.id,
        home: row.org,
    }))
}

/// Every principal holding a binding of custom role `name` of `org`.
pub(super) async fn holders(
    app: &App,
    org: &ScopePath,
    name: &str,
) -> Result<Vec<Member>, ApiError> {
    let mut ids: Vec<String> = app
        .store
        .bindings_in(Some(org.as_str()))
        .await?
        .into_iter()
        .filter(|g| g.role == name && g.org.as_deref() == Some(org.as_str()))
        .map(|g| g.principal)
        .collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(m) = member(app, &id).await? {
            out.push(m);
        }
    }
    Ok(out)
}

/// A refusal as an answer: "not found" where the rules hide the subject
/// (the same words as a principal that does not exist), else 403.
pub(super) fn refused(d: ManageDenial) -> ApiError {
    if d.not_found {
        ApiError::not_found(d.reason)
    } else {
        ApiError::forbidden(d.reason)
    }
}

/// Where `subject` is managed: its home organization, or the root.
pub(super) fn home_scope(subject: &Member) -> Result<Scope, ApiError> {
    match &subject.home {
        Some(org) => Ok(Scope::Path(super::org_param(org)?)),
        None => Ok(Scope::Root),
    }
}

/// Records a refusal decided before the pipeline's own decision (the
/// subject is hidden, or does not exist) and returns it: every refusal is
/// audited, including those answered "not found".
pub(super) async fn refuse(
    app: &App,
    caller: &Caller,
    operation: &str,
    target: Target,
    e: ApiError,
) -> ApiError {
    app.pipeline
        .refuse(caller, operation, target, e.error().clone())
        .await
        .into()
}

/// Another principal the caller may learn exists; anything else (absent,
/// or living where the caller has no part) is the same recorded
/// "principal X not found".
pub(super) async fn visible_member(
    app: &App,
    caller: &Caller,
    operation: &str,
    id: &str,
) -> Result<Member, ApiError> {
    match member(app, id).await? {
        Some(m) if visible_to(&caller.who().principal, &m) => Ok(m),
        _ => Err(refuse(
            app,
            caller,
            operation,
            Target::principal(id),
            refused(ManageDenial::principal_not_found(id)),
        )
        .await),
    }
}
