//! The API's routes. [`ROUTES`] is the single table from which both the
//! router and the OpenAPI document are built, and each entry declares the
//! action it is authorized as; a route cannot exist without a declaration.

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Extension, Router};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use warden_api::*;
use warden_policies::Action;
use warden_types::{ScopeKind, ScopePath, SecretName};
use warden_vault::VersionChange;
use warden_vault::unseal::InitMethod;

use crate::ApiError;
use crate::caller::Declared;
use crate::state::App;

mod audit;
pub(crate) mod auth;
mod bindings;
mod clusters;
mod keys;
mod kubernetes;
mod manage;
mod roles;
mod scopes;
mod secrets;
mod service_accounts;
pub(crate) mod sessions;
mod shell;
mod ssh_keys;
mod sys;
mod users;
mod watch;
pub use watch::Watches;
mod workloads;

pub(crate) use users::issue_workload;

type AppState = Arc<App>;

/// How a route is authorized. The actions listed are the only ones its
/// handler can run through the pipeline (it refuses any other), so the
/// table cannot drift from what the handlers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// No token needed (health, metrics, status, init, unseal, login).
    Public,
    /// Requires one of these actions on the route's resource (the first is
    /// the usual one; e.g. granting Owner is `ownership.transfer`).
    Requires(&'static [Action]),
    /// Any authenticated caller acting on its own identity (whoami, its
    /// tokens, password, MFA, SSH keys, policy checks); acting on another
    /// principal requires these actions where that principal lives.
    Caller(&'static [Action]),
}

impl Guard {
    /// The actions the route's handler may run.
    pub fn actions(self) -> &'static [Action] {
        match self {
            Guard::Public => &[],
            Guard::Requires(a) | Guard::Caller(a) => a,
        }
    }
}

/// One route: method, path template, guard, summary and handler.
pub struct RouteSpec {
    /// HTTP method.
    pub method: &'static str,
    /// axum path template.
    pub path: &'static str,
    /// Authorization declaration.
    pub guard: Guard,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// What the OpenAPI document says it takes and answers.
    pub doc: Doc,
    handler: fn() -> MethodRouter<AppState>,
}

/// A schema from the generator: a request or response type's, named by
/// [`of`] or spelled field by field by [`fields`].
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// A reference to `T`'s schema, registered under `components/schemas`.
pub fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// `T`'s own schema, inline: for query strings, whose parameters are the
/// fields of the struct the handler deserializes.
pub fn fields<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

/// What a route takes and answers, in the terms of the types its handler
/// (de)serializes: the OpenAPI document is built from these, and the
/// fuzzer in CI (`scripts/openapi-fuzz.sh`) checks the server against it.
#[derive(Clone, Copy)]
pub struct Doc {
    /// Query parameters: the fields of this struct.
    pub query: Option<SchemaFn>,
    /// The JSON request body.
    pub body: Option<SchemaFn>,
    /// The success status.
    pub status: u16,
    /// The success body.
    pub reply: Reply,
}

/// A success body.
#[derive(Clone, Copy)]
pub enum Reply {
    /// JSON of this schema.
    Json(SchemaFn),
    /// Bytes of this media type.
    Bytes(&'static str),
    /// None (204).
    Empty,
}

impl Doc {
    const fn json(reply: SchemaFn) -> Self {
        Doc {
            query: None,
            body: None,
            status: 200,
            reply: Reply::Json(reply),
        }
    }

    const fn text(media_type: &'static str) -> Self {
        Doc {
            reply: Reply::Bytes(media_type),
            ..Doc::json(of::<()>)
        }
    }

    const fn empty() -> Self {
        Doc {
            status: 204,
            reply: Reply::Empty,
            ..Doc::json(of::<()>)
        }
    }

    const fn query(self, query: SchemaFn) -> Self {
        Doc {
            query: Some(query),
            ..self
        }
    }

    const fn body(self, body: SchemaFn) -> Self {
        Doc {
            body: Some(body),
            ..self
        }
    }

    const fn status(self, status: u16) -> Self {
        Doc { status, ..self }
    }
}

/// Largest request body accepted: enough for the maximum number of keys at
/// the maximum value size, JSON-escaped.
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Every route of the API.
pub static ROUTES: &[RouteSpec] = &[
    RouteSpec {
        method: "GET",
        path: "/healthz",
        guard: Guard::Public,
        summary: "Liveness: the process answers.",
        doc: Doc::text("text/plain"),
        handler: || get(sys::healthz),
    },
    RouteSpec {
        method: "GET",
        path: "/readyz",
        guard: Guard::Public,
        summary: "Readiness: unsealed and database reachable (503 otherwise).",
        doc: Doc::json(of::<Readiness>),
        handler: || get(sys::readyz),
    },
    RouteSpec {
        method: "GET",
        path: "/metrics",
        guard: Guard::Public,
        summary: "Prometheus metrics.",
        doc: Doc::text("text/plain"),
        handler: || get(sys::metrics),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/openapi.json",
        guard: Guard::Public,
        summary: "This document.",
        doc: Doc::json(of::<serde_json::Map<String, serde_json::Value>>),
        handler: || get(sys::openapi),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/sys/status",
        guard: Guard::Public,
        summary: "Seal status.",
        doc: Doc::json(of::<SysStatus>),
        handler: || get(sys::sys_status),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/shell",
        guard: Guard::Requires(&[Action::ShellExec]),
        summary: "A shell or command in a pod: a WebSocket speaking v5.channel.k8s.io (stdin 0, stdout 1, stderr 2, status 3, resize 4, close 255). `warden shell` is its client.",
        doc: Doc::text("application/octet-stream")
            .status(101)
            .query(fields::<ShellQuery>),
        handler: || get(shell::shell),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/sessions/{org}",
        guard: Guard::Requires(&[Action::AuditRead]),
        summary: "An organization's shell sessions, newest first (`live` for those still running).",
        doc: Doc::json(of::<SessionList>).query(fields::<SessionListQuery>),
        handler: || get(sessions::list),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/session/{id}",
        guard: Guard::Requires(&[Action::AuditRead]),
        summary: "One shell session.",
        doc: Doc::json(of::<SessionInfo>),
        handler: || get(sessions::show),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/session/{id}/kill",
        guard: Guard::Requires(&[Action::SessionManage]),
        summary: "End a live shell session (its user is told who ended it); needs session.manage on its service.",
        doc: Doc::empty(),
        handler: || post(sessions::kill),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/session/{id}/join",
        guard: Guard::Requires(&[Action::SessionWatch]),
        summary: "Follow a shell session read-only as it is recorded: a WebSocket (subprotocol v1.join.warden.dev) sending each recording chunk (asciicast v2 lines) as a text message, closing normally once the session ended; needs session.watch on its service, for as long as it lasts. `warden session join` is its client.",
        doc: Doc::text("text/plain").status(101),
        handler: || get(sessions::join),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/session/{id}/recording",
        guard: Guard::Requires(&[Action::SessionWatch]),
        summary: "A page of a shell session's recording (asciicast v2 chunks, opened and checked), with its audit outcome on the last page; needs session.watch on its service.",
        doc: Doc::json(of::<SessionRecording>).query(fields::<RecordingQuery>),
        handler: || get(sessions::recording),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/sys/gateway",
        guard: Guard::Public,
        summary: "The shell gateway's SSH address and host key fingerprint.",
        doc: Doc::json(of::<GatewayStatus>),
        handler: || get(sys::gateway_status),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/sys/init",
        guard: Guard::Public,
        summary: "Create the root key (passphrase or Shamir); returns the bootstrap token once.",
        doc: Doc::json(of::<InitResponse>)
            .body(of::<InitRequest>)
            .status(201),
        handler: || post(sys::sys_init),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/sys/unseal",
        guard: Guard::Public,
        summary: "Submit the passphrase or one Shamir share.",
        doc: Doc::json(of::<SysStatus>).body(of::<UnsealRequest>),
        handler: || post(sys::sys_unseal),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/sys/seal",
        guard: Guard::Requires(&[Action::SysSeal]),
        summary: "Drop all key material from memory.",
        doc: Doc::json(of::<SysStatus>),
        handler: || post(sys::sys_seal),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/scopes",
        guard: Guard::Caller(&[]),
        summary: "List the organizations the caller can see.",
        doc: Doc::json(of::<ScopeList>),
        handler: || get(scopes::list_orgs),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/scopes",
        guard: Guard::Requires(&[Action::EnvManage]),
        summary: "Create an organization, project, environment or service.",
        doc: Doc::json(of::<warden_api::Scope>)
            .body(of::<CreateScope>)
            .status(201),
        handler: || post(scopes::create_scope),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/scopes/{*parent}",
        guard: Guard::Requires(&[Action::EnvRead]),
        summary: "List the children of a scope.",
        doc: Doc::json(of::<ScopeList>),
        handler: || get(scopes::list_children),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/secrets/{*scope}",
        guard: Guard::Requires(&[Action::SecretList]),
        summary: "List secret names and metadata (never values).",
        doc: Doc::json(of::<SecretList>),
        handler: || get(secrets::list_secrets),
    },
    RouteSpec {
        method: "PUT",
        path: "/api/v1/secrets/{*scope}",
        guard: Guard::Requires(&[Action::SecretWrite]),
        summary: "Write new versions of one or more secrets (atomic; optional cas).",
        doc: Doc::json(of::<PutResponse>).body(of::<PutSecrets>),
        handler: || put(secrets::put_secrets),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/secret/{*scope}",
        guard: Guard::Requires(&[Action::SecretRead]),
        summary: "Read a secret value (?key=NAME[&version=N]).",
        doc: Doc::json(of::<SecretResponse>).query(fields::<secrets::KeyQuery>),
        handler: || get(secrets::get_secret),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/secret-history/{*scope}",
        guard: Guard::Requires(&[Action::SecretList]),
        summary: "List a secret's versions (?key=NAME).",
        doc: Doc::json(of::<History>).query(fields::<secrets::HistoryQuery>),
        handler: || get(secrets::history),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/secret-delete/{*scope}",
        guard: Guard::Requires(&[Action::SecretDelete]),
        summary: "Soft-delete versions (latest by default).",
        doc: Doc::json(of::<VersionsChanged>).body(of::<VersionsRequest>),
        handler: || post(secrets::change_versions::<{ secrets::DELETE }, VersionsRequest>),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/secret-undelete/{*scope}",
        guard: Guard::Requires(&[Action::SecretDelete]),
        summary: "Undelete versions (latest by default).",
        doc: Doc::json(of::<VersionsChanged>).body(of::<VersionsRequest>),
        handler: || post(secrets::change_versions::<{ secrets::UNDELETE }, VersionsRequest>),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/secret-destroy/{*scope}",
        guard: Guard::Requires(&[Action::SecretDestroy]),
        summary: "Erase the ciphertext of versions for good.",
        doc: Doc::json(of::<VersionsChanged>).body(of::<DestroyRequest>),
        handler: || post(secrets::change_versions::<{ secrets::DESTROY }, DestroyRequest>),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/resolve/{*service}",
        guard: Guard::Requires(&[Action::SecretRead]),
        summary: "Effective secrets of a service after inheritance and ${REF} interpolation.",
        doc: Doc::json(of::<Resolved>).query(fields::<secrets::ResolveQuery>),
        handler: || get(secrets::resolve),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/watch/{*service}",
        guard: Guard::Requires(&[Action::SecretRead]),
        summary: "Keep a service's resolved secrets current (WebSocket, subprotocol v1.watch.warden.dev).",
        doc: Doc::json(of::<Resolved>)
            .query(fields::<watch::WatchQuery>)
            .status(101),
        handler: || get(watch::watch),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/secret-holders/{*scope}",
        guard: Guard::Requires(&[Action::SecretList]),
        summary: "Which watching pods hold which version of a secret (?name=NAME).",
        doc: Doc::json(of::<SecretHolders>).query(fields::<watch::HoldersQuery>),
        handler: || get(watch::holders),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/keys/{org}",
        guard: Guard::Requires(&[Action::KeyRotate]),
        summary: "Key terms and their usage.",
        doc: Doc::json(of::<KeyStatus>),
        handler: || get(keys::key_status),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/keys/{org}/rotate",
        guard: Guard::Requires(&[Action::KeyRotate]),
        summary: "Start a new key term.",
        doc: Doc::json(of::<Rotated>),
        handler: || post(keys::rotate),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/keys/{org}/rewrap",
        guard: Guard::Requires(&[Action::KeyRotate]),
        summary: "Re-encrypt up to ?limit=N versions under the newest term.",
        doc: Doc::json(of::<RewrapStep>).query(fields::<keys::LimitQuery>),
        handler: || post(keys::rewrap),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/auth/whoami",
        guard: Guard::Caller(&[]),
        summary: "The caller's principal, authentication method and role bindings.",
        doc: Doc::json(of::<WhoAmI>),
        handler: || get(auth::whoami),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/login",
        guard: Guard::Public,
        summary: "Password (and TOTP) login; returns a 12-hour session token once.",
        doc: Doc::json(of::<TokenCreated>)
            .body(of::<LoginRequest>)
            .status(201),
        handler: || post(auth::login),
    },
    RouteSpec {
        method: "PUT",
        path: "/api/v1/auth/password",
        guard: Guard::Caller(&[]),
        summary: "Set the caller's password.",
        doc: Doc::empty().body(of::<PasswordChange>),
        handler: || put(auth::set_password),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/mfa/enroll",
        guard: Guard::Caller(&[]),
        summary: "Start TOTP enrolment; returns the secret once.",
        doc: Doc::json(of::<MfaEnrollment>).body(of::<MfaEnrollRequest>),
        handler: || post(auth::mfa_enroll),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/mfa/confirm",
        guard: Guard::Caller(&[]),
        summary: "Confirm TOTP enrolment with a current code.",
        doc: Doc::json(of::<UserInfo>).body(of::<MfaCode>),
        handler: || post(auth::mfa_confirm),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/mfa/step-up",
        guard: Guard::Caller(&[]),
        summary: "Exchange your credential and a current TOTP code for a 15-minute MFA session token (kubectl's MFA).",
        doc: Doc::json(of::<TokenCreated>)
            .status(201)
            .body(of::<MfaCode>),
        handler: || post(auth::mfa_step_up),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/policy/check",
        guard: Guard::Caller(&[Action::MemberManage]),
        summary: "Explain the decision for a principal, action and path.",
        doc: Doc::json(of::<PolicyDecision>).body(of::<PolicyCheck>),
        handler: || post(bindings::policy_check),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/users",
        guard: Guard::Requires(&[Action::MemberManage]),
        summary: "List users and service accounts (?org=ORG).",
        doc: Doc::json(of::<UserList>).query(fields::<users::OrgQuery>),
        handler: || get(users::list_users),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/users",
        guard: Guard::Requires(&[Action::MemberManage]),
        summary: "Create a user or service account.",
        doc: Doc::json(of::<UserInfo>).body(of::<CreateUser>).status(201),
        handler: || post(users::create_user),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/users/{id}",
        guard: Guard::Caller(&[Action::MemberManage]),
        summary: "Show a user or service account.",
        doc: Doc::json(of::<UserInfo>),
        handler: || get(users::show_user),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/users/{id}/disable",
        guard: Guard::Requires(&[Action::MemberManage]),
        summary: "Disable a principal and revoke all its tokens and sessions.",
        doc: Doc::json(of::<Disabled>),
        handler: || post(users::disable_user),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/tokens",
        guard: Guard::Caller(&[Action::MemberManage]),
        summary: "List tokens (own, or ?principal=sa:NAME).",
        doc: Doc::json(of::<TokenList>).query(fields::<users::PrincipalQuery>),
        handler: || get(users::list_tokens),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/tokens",
        guard: Guard::Caller(&[Action::MemberManage]),
        summary: "Create an API token (for yourself or a service account); shown once.",
        doc: Doc::json(of::<TokenCreated>)
            .body(of::<CreateToken>)
            .status(201),
        handler: || post(users::create_token),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/tokens/{id}/revoke",
        guard: Guard::Caller(&[Action::MemberManage]),
        summary: "Revoke a token.",
        doc: Doc::json(of::<TokenInfo>),
        handler: || post(users::revoke_token),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/workload-tokens/{*service}",
        guard: Guard::Requires(&[Action::WorkloadIssue]),
        summary: "Issue a short-lived workload token (EdDSA JWT) for a service.",
        doc: Doc::json(of::<WorkloadToken>)
            .body(of::<WorkloadTokenRequest>)
            .status(201),
        handler: || post(users::workload_token),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/ssh-keys",
        guard: Guard::Caller(&[]),
        summary: "List the caller's SSH public keys.",
        doc: Doc::json(of::<SshKeyList>),
        handler: || get(ssh_keys::list_ssh_keys),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/ssh-keys",
        guard: Guard::Caller(&[]),
        summary: "Add an SSH public key (ed25519, ecdsa, rsa >= 3072).",
        doc: Doc::json(of::<SshKeyInfo>)
            .body(of::<SshKeyAdd>)
            .status(201),
        handler: || post(ssh_keys::add_ssh_key),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/ssh-keys/remove",
        guard: Guard::Caller(&[]),
        summary: "Remove one of the caller's SSH keys by fingerprint.",
        doc: Doc::empty().body(of::<ssh_keys::Fingerprint>),
        handler: || post(ssh_keys::remove_ssh_key),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/clusters/{name}/join-tokens",
        guard: Guard::Requires(&[Action::ClusterManage]),
        summary: "Create a single-use join token for a cluster (the cluster too, if new).",
        doc: Doc::json(of::<JoinToken>)
            .body(of::<JoinTokenRequest>)
            .status(201),
        handler: || post(clusters::join_token),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/agents/enroll",
        guard: Guard::Public,
        summary: "An agent redeems a join token and a CSR for its client certificate.",
        doc: Doc::json(of::<Enrolled>).body(of::<EnrollRequest>),
        handler: || post(clusters::enroll),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/clusters",
        guard: Guard::Requires(&[Action::ClusterManage]),
        summary: "Clusters, their agents' state and their environments.",
        doc: Doc::json(of::<ClusterList>),
        handler: || get(clusters::list),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/clusters/{name}",
        guard: Guard::Requires(&[Action::ClusterManage]),
        summary: "One cluster.",
        doc: Doc::json(of::<ClusterInfo>),
        handler: || get(clusters::show),
    },
    RouteSpec {
        method: "DELETE",
        path: "/api/v1/clusters/{name}",
        guard: Guard::Requires(&[Action::ClusterManage]),
        summary: "Remove a cluster: its certificate is refused from now on and its link ends.",
        doc: Doc::empty(),
        handler: || delete(clusters::remove),
    },
    RouteSpec {
        method: "PUT",
        path: "/api/v1/placements/{*env}",
        guard: Guard::Requires(&[Action::ClusterManage]),
        summary: "Place an environment's pods on a cluster.",
        doc: Doc::empty().body(of::<Placement>),
        handler: || put(clusters::place),
    },
    RouteSpec {
        method: "PUT",
        path: "/api/v1/clusters/{name}/issuer",
        guard: Guard::Requires(&[Action::ClusterManage]),
        summary: "Set a Kubernetes cluster's service-account issuer: its `iss`, the audience its tokens must include (default `warden`) and its JWKS (RS256 or ES256 keys).",
        doc: Doc::json(of::<IssuerInfo>).body(of::<IssuerSet>),
        handler: || put(service_accounts::set_issuer),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/clusters/{name}/issuer",
        guard: Guard::Requires(&[Action::ClusterManage]),
        summary: "A cluster's service-account issuer and its keys.",
        doc: Doc::json(of::<IssuerInfo>),
        handler: || get(service_accounts::show_issuer),
    },
    RouteSpec {
        method: "PUT",
        path: "/api/v1/sa-bindings/{*service}",
        guard: Guard::Requires(&[Action::WorkloadIssue]),
        summary: "Bind a cluster's Kubernetes service account to a service: its pods may exchange their service-account tokens for the service's workload token while the service's environment is placed on that cluster. Idempotent: an existing binding is answered as it stands.",
        doc: Doc::json(of::<SaBindingInfo>).body(of::<SaBindingRequest>),
        handler: || put(service_accounts::bind),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/sa-bindings",
        guard: Guard::Requires(&[Action::WorkloadIssue]),
        summary: "The service-account bindings of the services at or under ?scope=PATH.",
        doc: Doc::json(of::<SaBindingList>).query(fields::<service_accounts::ScopeQuery>),
        handler: || get(service_accounts::list),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/sa-binding-revoke/{*service}",
        guard: Guard::Requires(&[Action::WorkloadIssue]),
        summary: "Remove a service-account binding; the service account's next exchange is refused.",
        doc: Doc::empty().body(of::<SaBindingRequest>),
        handler: || post(service_accounts::unbind),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/workload-token-exchange",
        guard: Guard::Public,
        summary: "A pod's projected Kubernetes service-account token for a workload token (at most 1 h, never past the token's own expiry) of a service its service account is bound to on that cluster; refused failures are throttled per network.",
        doc: Doc::json(of::<WorkloadToken>)
            .body(of::<TokenExchange>)
            .status(201),
        handler: || post(service_accounts::exchange),
    },
    RouteSpec {
        method: "PUT",
        path: "/api/v1/workloads/{*service}",
        guard: Guard::Requires(&[Action::DeployRun]),
        summary: "Apply a service's workload (YAML spec); answers its pods.",
        doc: Doc::json(of::<PodList>).body(of::<WorkloadApply>),
        handler: || put(workloads::apply),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/workloads/{*service}",
        guard: Guard::Requires(&[Action::EnvRead]),
        summary: "A service's pods and their status.",
        doc: Doc::json(of::<PodList>),
        handler: || get(workloads::status),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/workload-control/{*service}",
        guard: Guard::Requires(&[Action::DeployRun]),
        summary: "Stop, start, restart (rolling) or delete a service's workload.",
        doc: Doc::empty().body(of::<WorkloadControl>),
        handler: || post(workloads::control),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/workload-scale/{*service}",
        guard: Guard::Requires(&[Action::DeployRun]),
        summary: "Change a service's replica count, keeping the rest of its spec.",
        doc: Doc::empty().body(of::<WorkloadScale>),
        handler: || post(workloads::scale),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/pods/{*scope}",
        guard: Guard::Requires(&[Action::EnvRead]),
        summary: "The pods of an environment or a service.",
        doc: Doc::json(of::<PodList>),
        handler: || get(workloads::pods),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/pod-logs/{*service}",
        guard: Guard::Requires(&[Action::PodLogs]),
        summary: "A pod's output as text, streamed (follow: until the pod is gone).",
        doc: Doc::text("text/plain").query(fields::<PodLogsQuery>),
        handler: || get(workloads::logs),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/roles/{org}",
        guard: Guard::Requires(&[Action::EnvRead]),
        summary: "List built-in and custom roles.",
        doc: Doc::json(of::<RoleList>),
        handler: || get(roles::list_roles),
    },
    RouteSpec {
        method: "PUT",
        path: "/api/v1/roles/{org}",
        guard: Guard::Requires(&[Action::RoleManage]),
        summary: "Create or replace a custom role from its YAML.",
        doc: Doc::json(of::<RoleInfo>).body(of::<RoleApply>),
        handler: || put(roles::apply_role),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/roles/{org}/{name}",
        guard: Guard::Requires(&[Action::EnvRead]),
        summary: "Show a role and its YAML.",
        doc: Doc::json(of::<RoleInfo>),
        handler: || get(roles::show_role),
    },
    RouteSpec {
        method: "DELETE",
        path: "/api/v1/roles/{org}/{name}",
        guard: Guard::Requires(&[Action::RoleManage]),
        summary: "Delete an unbound custom role.",
        doc: Doc::empty(),
        handler: || delete(roles::delete_role),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/bindings",
        guard: Guard::Requires(&[Action::MemberManage]),
        summary: "List role bindings (?org=ORG; none: at the root).",
        doc: Doc::json(of::<BindingList>).query(fields::<users::OrgQuery>),
        handler: || get(bindings::list_bindings),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/bindings",
        guard: Guard::Requires(&[Action::MemberManage, Action::OwnershipTransfer]),
        summary: "Grant a role at a scope (Owner needs ownership.transfer).",
        doc: Doc::json(of::<BindingInfo>)
            .body(of::<GrantRequest>)
            .status(201),
        handler: || post(bindings::grant),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/bindings/revoke",
        guard: Guard::Requires(&[Action::MemberManage, Action::OwnershipTransfer]),
        summary: "Revoke a role binding (Owner needs ownership.transfer).",
        doc: Doc::empty().body(of::<RevokeRequest>),
        handler: || post(bindings::revoke),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/audit-key",
        guard: Guard::Public,
        summary: "The audit checkpoint verifier key and its fingerprint (public).",
        doc: Doc::json(of::<AuditKey>),
        handler: || get(audit::key),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/audit/{log}/entries",
        guard: Guard::Requires(&[Action::AuditRead]),
        summary: "Entries of `system` or an organization's log (?from=SEQ&limit&actor&action&target&since_ms&until_ms).",
        doc: Doc::json(of::<AuditEntries>).query(fields::<audit::EntriesQuery>),
        handler: || get(audit::entries),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/audit/{log}/checkpoint",
        guard: Guard::Requires(&[Action::AuditRead]),
        summary: "The newest signed checkpoint (C2SP signed note).",
        doc: Doc::json(of::<AuditCheckpoint>),
        handler: || get(audit::checkpoint),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/audit/{log}/proof",
        guard: Guard::Requires(&[Action::AuditRead]),
        summary: "Inclusion proof of entry ?seq=N against the newest checkpoint.",
        doc: Doc::json(of::<AuditProof>).query(fields::<audit::SeqQuery>),
        handler: || get(audit::proof),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/audit/{log}/export",
        guard: Guard::Requires(&[Action::AuditExport]),
        summary: "Export bundle (tar) for offline verification (?since_ms&until_ms&format=jsonl|csv|ocsf).",
        doc: Doc::text("application/x-tar").query(fields::<audit::ExportQuery>),
        handler: || get(audit::export),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/audit/{log}/verify",
        guard: Guard::Requires(&[Action::AuditExport]),
        summary: "Verify the stored log against its signed checkpoints.",
        doc: Doc::json(of::<warden_tlog::verify::Transcript>),
        handler: || post(audit::verify),
    },
];

/// Builds the router from [`ROUTES`].
pub fn router(app: AppState) -> Router {
    ROUTES
        .iter()
        .fold(Router::new(), |r, spec| {
            let declared = Declared(spec.guard.actions());
            r.route(spec.path, (spec.handler)().layer(Extension(declared)))
        })
        .merge(kubernetes::routes())
        .fallback(|| async { ApiError::not_found("no such route; see /api/v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::http(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .with_state(app)
}

/// A JSON request body: size-limited (`LIMIT` bytes; routes anyone may
/// call without a token use [`PUBLIC_BODY_LIMIT`]), `application/json`,
/// every failure a JSON 4xx naming the problem. An empty body reads as
/// `{}`, so operations whose fields are all optional need none.
pub struct Body<T, const LIMIT: usize = BODY_LIMIT>(pub T);

/// Largest body of an unauthenticated route (init, unseal, login): enough
/// for a passphrase or a password, small enough that a flood of them
/// cannot grow memory.
pub const PUBLIC_BODY_LIMIT: usize = 8 * 1024;

impl<T: DeserializeOwned, S: Send + Sync, const LIMIT: usize> FromRequest<S> for Body<T, LIMIT> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers();
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let no_body = headers.get(header::TRANSFER_ENCODING).is_none()
            && headers
                .get(header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        if !json && !no_body {
            return Err(ApiError::http(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = read_limited(req.into_body(), LIMIT).await?;
        let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        serde_json::from_slice(bytes)
            .map(Body)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
    }
}

/// How much of an oversized body is still read, and for how long, before
/// its 413 goes out.
const DRAIN_BYTES: usize = 8 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads a request body of at most `limit` bytes. Past the limit the rest is
/// read and thrown away (up to [`DRAIN_BYTES`], within [`DRAIN_TIME`]) before
/// the 413 is sent: a server that answers and closes with unread bytes in
/// its socket makes the kernel reset the connection, and the client sees
/// the reset instead of the answer (RFC 9112 §9.6, "Tear-down").
async fn read_limited(mut body: axum::body::Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt;
    let unreadable = |_| ApiError::invalid("request body could not be read");
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(unreadable)?.into_data() else {
            continue;
        };
        if bytes.len() + data.len() <= limit {
            bytes.extend_from_slice(&data);
            continue;
        }
        let drain = async {
            let mut left = DRAIN_BYTES;
            while let Some(Ok(frame)) = body.frame().await {
                let n = frame.data_ref().map_or(0, |d| d.len());
                match left.checked_sub(n) {
                    Some(l) => left = l,
                    None => break,
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        return Err(ApiError::http(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds {limit} bytes"),
        ));
    }
    Ok(bytes)
}

pub(super) fn path_arg(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::invalid(format!("invalid path: {e}")))
}

pub(super) fn scope_arg(p: Result<Path<String>, PathRejection>) -> Result<ScopePath, ApiError> {
    Ok(ScopePath::parse(&path_arg(p)?)?)
}

/// A WebSocket close frame with `reason` cut to the 123 bytes a close
/// frame can carry (RFC 6455 §5.5: control frames hold at most 125 bytes,
/// two of them the code), at a character boundary: a longer reason would
/// make the frame a protocol error and the peer would lose it.
pub(super) fn close_frame(code: u16, reason: &str) -> axum::extract::ws::Message {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    axum::extract::ws::Message::Close(Some(axum::extract::ws::CloseFrame {
        code,
        reason: reason[..end].to_owned().into(),
    }))
}

/// How long one message to a watcher (a session join, a secret watch) may
/// take to go out: a watcher that stops reading is closed after this,
/// rather than holding what it was sent, its grant and its slot for ever.
pub(super) const WATCHER_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a watcher's close frame may take (it may not be reading).
pub(super) const WATCHER_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// How sending one message to a watcher went.
pub(super) enum Delivery {
    Done,
    /// The watcher's socket failed or closed.
    Gone,
    /// The watcher did not take it within [`WATCHER_SEND_TIMEOUT`].
    Stalled,
    /// The watcher's authority ended (why).
    Ended(String),
}

/// Sends `msg`, unless the watch's authority has ended, racing the send
/// against the authority's end and [`WATCHER_SEND_TIMEOUT`]: a watcher that
/// stops reading must not keep its watch, nor what it holds, past either.
pub(super) async fn send_watched<S>(
    sink: &mut S,
    grant: &mut warden_pipeline::SessionGrant,
    msg: axum::extract::ws::Message,
) -> Delivery
where
    S: futures::Sink<axum::extract::ws::Message> + Unpin,
{
    use futures::SinkExt;
    if let Some(reason) = grant.end_reason() {
        return Delivery::Ended(reason);
    }
    tokio::select! {
        sent = tokio::time::timeout(WATCHER_SEND_TIMEOUT, sink.send(msg)) => match sent {
            Ok(Ok(())) => Delivery::Done,
            Ok(Err(_)) => Delivery::Gone,
            Err(_) => Delivery::Stalled,
        },
        reason = grant.ended() => Delivery::Ended(reason),
    }
}

/// A pod name a wrapper gives for itself, checked for shape. It is the
/// wrapper's claim (the credential is what ties a request to a workload),
/// so it is taken only from a workload: a person's or service account's
/// is left out of the audit log (`None`; review 14, F6), not refused, as
/// a wrapper may run with an API token.
pub(super) fn pod_arg(principal: &str, pod: String) -> Result<Option<String>, ApiError> {
    if !principal.starts_with(warden_identity::workload::SUBJECT_PREFIX) {
        return Ok(None);
    }
    if warden_types::is_pod_name(&pod) {
        Ok(Some(pod))
    } else {
        Err(
            ApiError::invalid("a pod name is 1-253 characters of a-z, 0-9, '-' and '.'")
                .field("pod"),
        )
    }
}

/// The wire form of the versions a resolution served.
pub(super) fn wire_versions(
    versions: &warden_vault::Versions,
) -> std::collections::BTreeMap<String, ServedVersion> {
    versions
        .iter()
        .map(|(name, v)| {
            let v = ServedVersion {
                scope: v.scope.clone(),
                version: v.version,
            };
            (name.clone(), v)
        })
        .collect()
}

pub(super) fn query_arg<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::invalid(format!("invalid query: {e}")))
}

pub(super) fn wire(s: &str) -> Result<WireValue, ApiError> {
    warden_types::SecretValue::from_utf8(s.as_bytes())
        .map(WireValue)
        .ok_or_else(ApiError::internal)
}

pub(super) fn org_arg(p: Result<Path<String>, PathRejection>) -> Result<ScopePath, ApiError> {
    Ok(ScopePath::parse_kind(
        &path_arg(p)?,
        ScopeKind::Organization,
    )?)
}

pub(super) fn name_arg(s: &str, field: &'static str) -> Result<(), ApiError> {
    ScopePath::parse_kind(s, ScopeKind::Organization)
        .map(|_| ())
        .map_err(|_| {
            ApiError::invalid(
                "names are 1-63 lowercase letters, digits or '-', starting with a letter or digit",
            )
            .field(field)
        })
}

pub(super) fn org_param(s: &str) -> Result<ScopePath, ApiError> {
    ScopePath::parse_kind(s, ScopeKind::Organization).map_err(|e| ApiError::from(e).field("org"))
}

pub(super) fn now_secs() -> u64 {
    u64::try_from(warden_store::now_ms() / 1000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use axum::extract::ws::Message;

    #[test]
    fn close_reasons_fit_a_control_frame_at_a_character_boundary() {
        for (reason, want) in [
            ("short".to_owned(), 5),
            ("x".repeat(200), 123),
            // 'é' is two bytes: byte 123 would split the 62nd.
            ("é".repeat(100), 122),
        ] {
            let Message::Close(Some(frame)) = super::close_frame(1008, &reason) else {
                panic!("not a close frame");
            };
            assert_eq!(frame.reason.len(), want, "{reason}");
            assert!(reason.starts_with(frame.reason.as_str()));
        }
    }
}
