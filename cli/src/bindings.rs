//! Role bindings and what they allow: `warden grant`, `revoke`, `binding
//! list` and `policy check`.

use clap::{Args, Subcommand};
use hyper::Method as M;
use serde_json::{Value, json};
use warden_api::{BindingInfo, BindingList, PolicyDecision};
use warden_types::{NameError, ScopeKind};

use crate::ctx::Ctx;
use crate::error::{PolicyDenied, usage};
use crate::input::{name_arg, principal_arg, scope_path};
use crate::output;

/// Role bindings and policy checks (flattened into the top-level grammar).
#[derive(Debug, Subcommand)]
pub(crate) enum BindingsCmd {
    /// Bind a role to a principal at a scope.
    Grant(BindingArgs),
    /// Remove a role binding.
    Revoke {
        #[command(flatten)]
        binding: BindingArgs,
        /// Break-glass (root Owners only): revoke even where the rules
        /// refuse, e.g. a deny binding placed on yourself. Audited as such.
        #[arg(long)]
        break_glass: bool,
    },
    /// Role bindings.
    #[command(subcommand)]
    Binding(BindingCmd),
    /// Ask the policy engine.
    #[command(subcommand)]
    Policy(PolicyCmd),
}

/// PRINCIPAL ROLE SCOPE.
#[derive(Debug, Args)]
pub(crate) struct BindingArgs {
    /// `user:NAME`, `sa:NAME` (`NAME@ORG` for members of an organization),
    /// or a bare user name.
    #[arg(value_parser = principal_arg)]
    principal: String,
    /// Role name (built in: owner, admin, developer, viewer).
    role: String,
    /// `/`, ORG, ORG/PROJECT or ORG/PROJECT/ENV (and everything below).
    scope: String,
}

/// `warden binding`.
#[derive(Debug, Subcommand)]
pub(crate) enum BindingCmd {
    /// List role bindings.
    List {
        /// Only those in this organization.
        #[arg(long)]
        org: Option<String>,
    },
}

/// `warden policy`.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCmd {
    /// Would PRINCIPAL be allowed ACTION on PATH? Exit code 0 allow, 4 deny.
    Check {
        /// `user:NAME`, `sa:NAME`, or a bare user name.
        #[arg(value_parser = principal_arg)]
        principal: String,
        /// `resource.verb`, e.g. secret.read.
        action: String,
        /// `/` or ORG[/PROJECT[/ENV[/SERVICE]]].
        path: String,
    },
}

/// Checks a binding scope: `/`, ORG, ORG/PROJECT or ORG/PROJECT/ENV.
fn binding_scope(s: &str) -> anyhow::Result<String> {
    if s == "/" {
        return Ok(s.to_owned());
    }
    let p = scope_path(s, None)?;
    if p.kind() == ScopeKind::Service {
        return Err(NameError::Depth {
            path: s.chars().take(64).collect(),
            expected: "/, ORG, ORG/PROJECT or ORG/PROJECT/ENV",
        }
        .into());
    }
    Ok(p.to_string())
}

/// Checks a policy-check path: `/` or a scope path.
fn resource_path(s: &str) -> anyhow::Result<String> {
    if s == "/" {
        return Ok(s.to_owned());
    }
    Ok(scope_path(s, None)?.to_string())
}

/// Checks the shape of an action, `resource.verb` (the server knows the
/// list).
fn action_arg(s: &str) -> anyhow::Result<&str> {
    let ok = s.len() <= 64
        && s.split_once('.')
            .is_some_and(|(r, v)| !r.is_empty() && !v.is_empty())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c));
    if ok {
        Ok(s)
    } else {
        Err(usage(format!(
            "invalid action {:?}: actions are resource.verb, e.g. secret.read",
            s.chars().take(64).collect::<String>()
        )))
    }
}

/// `Ok` for an allow; a [`PolicyDenied`] (exit code 4) for a deny.
fn decision_result(d: &PolicyDecision) -> anyhow::Result<()> {
    if d.allowed {
        Ok(())
    } else {
        Err(PolicyDenied(d.explanation.clone()).into())
    }
}

/// The request body naming a binding.
fn binding_body(b: &BindingArgs) -> anyhow::Result<Value> {
    name_arg(&b.role)?;
    let scope = binding_scope(&b.scope)?;
    Ok(json!({"principal": b.principal, "role": b.role, "scope": scope}))
}

/// Runs a binding or policy command.
pub(crate) async fn run(ctx: &Ctx, command: BindingsCmd) -> anyhow::Result<()> {
    match command {
        BindingsCmd::Grant(b) => {
            let body = binding_body(&b)?;
            let (g, raw): (BindingInfo, _) =
                ctx.call(M::POST, "/api/v1/bindings", Some(body)).await?;
            ctx.print(&raw, || {
                println!("granted {} to {} at {}", g.role, g.principal, g.scope)
            })
        }
        BindingsCmd::Revoke {
            binding: b,
            break_glass,
        } => {
            let mut body = binding_body(&b)?;
            if break_glass {
                body["break_glass"] = json!(true);
            }
            ctx.call_empty(M::POST, "/api/v1/bindings/revoke", Some(body.clone()))
                .await?;
            ctx.print(&json!({"revoked": body}), || {
                println!("revoked {} from {} at {}", b.role, b.principal, b.scope)
            })
        }
        BindingsCmd::Binding(BindingCmd::List { org }) => {
            let url = match org {
                Some(o) => format!(
                    "/api/v1/bindings?org={}",
                    scope_path(&o, Some(ScopeKind::Organization))?
                ),
                None => "/api/v1/bindings".to_owned(),
            };
            let (list, raw): (BindingList, _) = ctx.call(M::GET, &url, None).await?;
            ctx.print(&raw, || output::bindings(&list.bindings))
        }
        BindingsCmd::Policy(PolicyCmd::Check {
            principal,
            action,
            path,
        }) => {
            let body = json!({
                "principal": principal,
                "action": action_arg(&action)?,
                "path": resource_path(&path)?,
            });
            let (d, raw): (PolicyDecision, _) = ctx
                .call(M::POST, "/api/v1/policy/check", Some(body))
                .await?;
            ctx.print(&raw, || output::policy_decision(&d))?;
            decision_result(&d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    #[test]
    fn bad_binding_scopes_and_actions_are_usage_errors() {
        let code = |r: anyhow::Result<()>| r.err().map(|e| exit_code(&e));
        assert_eq!(code(binding_scope("/").map(drop)), None);
        assert_eq!(code(binding_scope("acme/web/prod").map(drop)), None);
        assert_eq!(code(binding_scope("acme/web/prod/api").map(drop)), Some(2));
        assert_eq!(code(binding_scope("Acme").map(drop)), Some(2));
        assert_eq!(code(resource_path("acme/web/prod/api").map(drop)), None);
        assert_eq!(code(action_arg("secret.read").map(drop)), None);
        assert_eq!(code(action_arg("read").map(drop)), Some(2));
    }

    #[test]
    fn a_deny_exits_with_4_and_the_explanation() {
        let mut d = PolicyDecision {
            allowed: true,
            principal: "user:bob".into(),
            action: "secret.read".into(),
            path: "acme/web/prod".into(),
            mode: Some("production".into()),
            role: Some("viewer".into()),
            binding: Some("acme".into()),
            rule: Some(1),
            explanation: "allowed by viewer at acme".into(),
            session: None,
        };
        assert!(decision_result(&d).is_ok());
        d.allowed = false;
        d.explanation = "user:bob holds no binding at acme/web/prod".into();
        let err = decision_result(&d).unwrap_err();
        assert_eq!(exit_code(&err), 4);
        assert_eq!(
            err.to_string(),
            "user:bob holds no binding at acme/web/prod"
        );
    }
}
