//! Unit tests of the management rules: the review's findings, each
//! reproduced as it was reported and named after what broke, and the rules
//! kept from the server's earlier checks.

use super::*;
use crate::builtin_role;
use std::sync::Arc;

fn role(yaml: &str) -> Arc<Role> {
    Arc::new(Role::parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")))
}

fn builtin(name: &str) -> Arc<Role> {
    builtin_role(name).unwrap()
}

fn bind(role: &Arc<Role>, at: &str) -> Binding {
    Binding {
        role: Arc::clone(role),
        scope: at.parse().unwrap(),
    }
}

fn actor(id: &str, bindings: Vec<Binding>, mfa: bool) -> Principal {
    Principal {
        id: id.into(),
        bindings,
        mfa,
    }
}

fn member(id: &str, home: Option<&str>, bindings: Vec<Binding>) -> Member {
    Member {
        id: id.into(),
        home: home.map(str::to_owned),
        bindings,
    }
}

/// The member record of an actor (its own bindings).
fn as_member(p: &Principal, home: Option<&str>) -> Member {
    member(&p.id, home, p.bindings.clone())
}

fn org(s: &str) -> ScopePath {
    ScopePath::parse(s).unwrap()
}

#[track_caller]
fn refused(r: Result<Sanction, ManageDenial>) -> ManageDenial {
    match r {
        Err(d) => {
            assert!(!d.reason.is_empty());
            d
        }
        Ok(a) => panic!("should be refused, was allowed ({a:?})"),
    }
}

#[track_caller]
fn forbidden(r: Result<Sanction, ManageDenial>) -> ManageDenial {
    let d = refused(r);
    assert!(
        !d.not_found,
        "should be forbidden, is not found: {}",
        d.reason
    );
    d
}

#[track_caller]
fn not_found(r: Result<Sanction, ManageDenial>, id: &str) -> ManageDenial {
    let d = refused(r);
    assert!(d.not_found, "should read as not found: {}", d.reason);
    assert_eq!(d, ManageDenial::principal_not_found(id));
    d
}

#[track_caller]
fn by_rules(r: Result<Sanction, ManageDenial>) {
    match r {
        Ok(Sanction::ByRules) => {}
        Ok(a) => panic!("allowed, but {a:?}"),
        Err(d) => panic!("should be allowed: {}", d.reason),
    }
}

const LOCKOUT: &str = "name: lockout\nrules:\n  - deny: ['*']\n";

/// Denies reading production secrets; allows listing, so that dropping the
/// deny leaves a role that still allows something.
const GUARD: &str = "\
name: guard
rules:
  - allow: [env.read]
  - deny: [secret.read]
    when:
      env_mode: [production]
";
const GUARD_WEAKER: &str = "name: guard\nrules:\n  - allow: [env.read]\n";

/// Everything `admin` allows, only in an MFA session.
const ADMIN_MFA: &str = "\
name: admin-mfa
rules:
  - allow: [secret.*, shell.exec, deploy.*, audit.*, env.*, member.manage, role.manage, key.rotate, workload.issue]
    when:
      mfa: true
";

// ---------------------------------------------------------------------------
// Finding 1: deny-only roles lock Owners and root out.

#[test]
fn deny_only_role_cannot_lock_out_owner() {
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    let owner = member(
        "user:olga",
        Some("acme"),
        vec![bind(&builtin("owner"), "acme")],
    );
    let lockout = role(LOCKOUT);
    for at in ["acme", "acme/shop", "acme/shop/prod"] {
        let d = forbidden(may_grant(&admin, &owner, &bind(&lockout, at)));
        assert!(
            d.reason.contains("needs managing user:olga")
                && d.reason.contains("ownership.transfer"),
            "{}",
            d.reason
        );
    }
    // Nor by editing a role the Owner holds into a deny.
    let held = role("name: ci\nrules:\n  - allow: [env.read]\n");
    let owner = member(
        "user:olga",
        Some("acme"),
        vec![bind(&builtin("owner"), "acme"), bind(&held, "acme/shop")],
    );
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    let to_deny = role("name: ci\nrules:\n  - deny: ['*']\n");
    forbidden(may_apply_role(
        &admin,
        &org("acme"),
        Some(&held),
        &to_deny,
        std::slice::from_ref(&owner),
    ));
    // The Admin still restricts whom it manages.
    let dev = member(
        "user:dev",
        Some("acme"),
        vec![bind(&builtin("developer"), "acme")],
    );
    by_rules(may_grant(&admin, &dev, &bind(&lockout, "acme/shop")));
}

#[test]
fn deny_only_role_cannot_lock_out_root() {
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    let lockout = role(LOCKOUT);
    // user:root lives at the root and holds nothing in acme: the Admin
    // cannot even learn it exists.
    let root = member("user:root", None, vec![bind(&builtin("owner"), "/")]);
    not_found(
        may_grant(&admin, &root, &bind(&lockout, "acme")),
        "user:root",
    );
    // Seen through a binding in acme, or homed there: its root binding
    // counts, and an Admin cannot grant `owner` at `/`.
    for root in [
        member(
            "user:root",
            None,
            vec![
                bind(&builtin("owner"), "/"),
                bind(&builtin("viewer"), "acme"),
            ],
        ),
        member(
            "user:root",
            Some("acme"),
            vec![bind(&builtin("owner"), "/")],
        ),
    ] {
        let d = forbidden(may_grant(&admin, &root, &bind(&lockout, "acme")));
        assert_eq!(d.scope, Some(Scope::Root), "{}", d.reason);
    }
}

#[test]
fn root_owner_breaks_glass_out_of_a_deny_it_is_under() {
    let lockout = role(LOCKOUT);
    let root = actor(
        "user:root",
        vec![bind(&builtin("owner"), "/"), bind(&lockout, "acme")],
        false,
    );
    let me = as_member(&root, None);
    // By the rules a deny is never lifted by whom it restricts...
    // (here the lockout also denies it member.manage in acme)
    let d = forbidden(may_revoke(&root, &me, &bind(&lockout, "acme"), false));
    assert!(d.reason.contains("role `lockout`"), "{}", d.reason);
    // ...but a root Owner may always break glass.
    assert_eq!(
        may_revoke(&root, &me, &bind(&lockout, "acme"), true),
        Ok(Sanction::ByBreakGlass)
    );
    // Also on someone else's binding the rules refuse (member.manage in acme
    // is denied to the root Owner by the lockout).
    let dev = member(
        "user:dev",
        Some("acme"),
        vec![bind(&builtin("developer"), "acme")],
    );
    let b = bind(&builtin("developer"), "acme");
    forbidden(may_revoke(&root, &dev, &b, false));
    assert_eq!(
        may_revoke(&root, &dev, &b, true),
        Ok(Sanction::ByBreakGlass)
    );
    // Break-glass is asked for, not implied: allowed by the rules stays so.
    let clean = actor("user:root", vec![bind(&builtin("owner"), "/")], false);
    assert_eq!(may_revoke(&clean, &dev, &b, true), Ok(Sanction::ByRules));
    // Nobody else breaks glass, and asking says why it failed.
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "/")], false);
    let owner = member(
        "user:olga",
        Some("acme"),
        vec![bind(&builtin("owner"), "acme")],
    );
    let d = forbidden(may_revoke(
        &admin,
        &owner,
        &bind(&builtin("owner"), "acme"),
        true,
    ));
    assert!(
        d.reason
            .ends_with("reserved to holders of the built-in owner role at /"),
        "{}",
        d.reason
    );
    // A custom role that merely calls itself `owner` is no root Owner.
    let fake = role("name: owner\nrules:\n  - allow: ['*']\n  - deny: [secret.read]\n");
    assert!(!is_root_owner(&[bind(&fake, "/")]));
    assert!(!is_root_owner(&[bind(&builtin("owner"), "acme")]));
    assert!(is_root_owner(&[bind(&builtin("owner"), "/")]));
}

#[test]
fn org_level_bindings_never_touch_root_authority() {
    let lockout = role(LOCKOUT);
    let root = actor(
        "user:root",
        vec![bind(&builtin("owner"), "/"), bind(&lockout, "acme")],
        false,
    );
    for mfa in [false, true] {
        let root = with_mfa(&root, mfa);
        for action in Action::ALL {
            assert!(
                authorize(&root, action, &Resource::root()).is_allow(),
                "{action}"
            );
        }
    }
    // Granting in another organization is unaffected.
    let bob = member("user:bob", Some("beta"), vec![]);
    by_rules(may_grant(&root, &bob, &bind(&builtin("owner"), "beta")));
    // A root binding confers powers inside acme too, where the root Owner is
    // denied everything: refused, naming acme (not `/`) ...
    let d = forbidden(may_grant(&root, &bob, &bind(&builtin("viewer"), "/")));
    assert_eq!(d.scope, Some("acme".parse().unwrap()), "{}", d.reason);
    assert!(d.reason.contains("lockout"), "{}", d.reason);
    // ... until break-glass lifts the deny.
    let root = actor("user:root", vec![bind(&builtin("owner"), "/")], false);
    by_rules(may_grant(&root, &bob, &bind(&builtin("viewer"), "/")));
    // Deny rules cannot be bound at `/`, so root authority stays whole.
    let d = forbidden(may_grant(&root, &bob, &bind(&lockout, "/")));
    assert_eq!(d.scope, Some(Scope::Root));
}

// ---------------------------------------------------------------------------
// Finding 2: deny rules do not bind those they restrict.

#[test]
fn deny_holder_cannot_revoke_its_own_deny() {
    let guard = role(GUARD);
    let admin = actor(
        "user:ann",
        vec![bind(&builtin("admin"), "acme"), bind(&guard, "acme")],
        false,
    );
    let d = forbidden(may_revoke(
        &admin,
        &as_member(&admin, Some("acme")),
        &bind(&guard, "acme"),
        false,
    ));
    assert!(
        d.reason
            .contains("never lifted by the principal it restricts"),
        "{}",
        d.reason
    );
}

#[test]
fn role_manager_cannot_drop_a_deny_it_is_under() {
    let guard = role(GUARD);
    let weaker = role(GUARD_WEAKER);
    let admin = actor(
        "user:ann",
        vec![bind(&builtin("admin"), "acme"), bind(&guard, "acme/shop")],
        false,
    );
    let holders = [as_member(&admin, Some("acme"))];
    let d = forbidden(may_apply_role(
        &admin,
        &org("acme"),
        Some(&guard),
        &weaker,
        &holders,
    ));
    assert!(d.reason.contains("restrict you"), "{}", d.reason);
    forbidden(may_delete_role(&admin, &org("acme"), &guard, &holders));
    // Even if the server forgot to list it among the holders.
    forbidden(may_apply_role(
        &admin,
        &org("acme"),
        Some(&guard),
        &weaker,
        &[],
    ));
    // Narrowing the deny's condition weakens it too.
    let narrower = role(
        "name: guard\nrules:\n  - allow: [env.read]\n  - deny: [secret.read]\n    when: {env_mode: [production], mfa: false}\n",
    );
    forbidden(may_apply_role(
        &admin,
        &org("acme"),
        Some(&guard),
        &narrower,
        &holders,
    ));
    // Adding to it does not.
    let stronger = role(
        "name: guard\nrules:\n  - allow: [env.read]\n  - deny: [secret.read, secret.write]\n    when: {env_mode: [production]}\n",
    );
    by_rules(may_apply_role(
        &admin,
        &org("acme"),
        Some(&guard),
        &stronger,
        &holders,
    ));
}

#[test]
fn role_manager_cannot_lift_a_deny_on_principals_it_does_not_manage() {
    let guard = role(GUARD);
    let weaker = role(GUARD_WEAKER);
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    let owner = member(
        "user:olga",
        Some("acme"),
        vec![bind(&builtin("owner"), "acme"), bind(&guard, "acme/shop")],
    );
    let holders = [owner.clone()];
    let d = forbidden(may_apply_role(
        &admin,
        &org("acme"),
        Some(&guard),
        &weaker,
        &holders,
    ));
    assert!(
        d.reason.contains("needs managing user:olga"),
        "{}",
        d.reason
    );
    forbidden(may_delete_role(&admin, &org("acme"), &guard, &holders));
    forbidden(may_revoke(
        &admin,
        &owner,
        &bind(&guard, "acme/shop"),
        false,
    ));
}

#[test]
fn manager_may_lift_a_deny_on_someone_it_manages() {
    let guard = role(GUARD);
    let weaker = role(GUARD_WEAKER);
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    let dev = member(
        "user:dev",
        Some("acme"),
        vec![
            bind(&builtin("developer"), "acme"),
            bind(&guard, "acme/shop"),
        ],
    );
    let holders = [dev.clone()];
    by_rules(may_revoke(&admin, &dev, &bind(&guard, "acme/shop"), false));
    by_rules(may_apply_role(
        &admin,
        &org("acme"),
        Some(&guard),
        &weaker,
        &holders,
    ));
    by_rules(may_delete_role(&admin, &org("acme"), &guard, &holders));
    // An unbound role is the actor's to change.
    by_rules(may_delete_role(&admin, &org("acme"), &guard, &[]));
}

// ---------------------------------------------------------------------------
// Finding 3: MFA laundering.

#[test]
fn mfa_gated_admin_cannot_launder_through_service_account() {
    let admin_mfa = role(ADMIN_MFA);
    let alice = actor("user:alice", vec![bind(&admin_mfa, "acme")], true);
    let sa = member("sa:ci", Some("acme"), vec![]);
    // In an MFA session she may manage members...
    assert!(
        authorize(
            &alice,
            Action::MemberManage,
            &Resource::at(org("acme"), None)
        )
        .is_allow()
    );
    // ...but not grant admin work without the MFA condition.
    let d = forbidden(may_grant(&alice, &sa, &bind(&builtin("admin"), "acme")));
    assert!(d.reason.contains("outside an MFA session"), "{}", d.reason);
    assert!(d.reason.contains("only in an MFA session"), "{}", d.reason);
    // With the same condition she may.
    by_rules(may_grant(&alice, &sa, &bind(&admin_mfa, "acme")));
    // Nor mint a token for an account that already holds it.
    let sa = member(
        "sa:ci",
        Some("acme"),
        vec![bind(&builtin("admin"), "acme/shop")],
    );
    forbidden(may_act_for(&alice, &sa));
    // Nor drop the condition from a role the account holds.
    let ci = role("name: ci\nrules:\n  - allow: [secret.read]\n    when: {mfa: true}\n");
    let ci_laundered = role("name: ci\nrules:\n  - allow: [secret.read]\n");
    let sa = member("sa:ci", Some("acme"), vec![bind(&ci, "acme/shop")]);
    forbidden(may_apply_role(
        &alice,
        &org("acme"),
        Some(&ci),
        &ci_laundered,
        std::slice::from_ref(&sa),
    ));
    // Outside an MFA session she manages nothing at all.
    let alice = with_mfa(&alice, false);
    forbidden(may_grant(&alice, &sa, &bind(&builtin("viewer"), "acme")));
}

// ---------------------------------------------------------------------------
// Finding 4: cross-tenant interference.

#[test]
fn other_tenants_binding_does_not_stop_home_admins() {
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    // Beta's admin made acme's member an owner in beta.
    let sam = member(
        "user:sam",
        Some("acme"),
        vec![
            bind(&builtin("developer"), "acme"),
            bind(&builtin("owner"), "beta"),
        ],
    );
    by_rules(may_act_for(&admin, &sam));
    // A refusal about sam names nothing of beta.
    let sam = member(
        "user:sam",
        Some("acme"),
        vec![
            bind(&builtin("owner"), "acme/shop"),
            bind(&builtin("owner"), "beta"),
        ],
    );
    let d = forbidden(may_act_for(&admin, &sam));
    assert!(!d.reason.contains("beta"), "{}", d.reason);
    assert!(d.reason.contains("acme/shop"), "{}", d.reason);
}

/// Disabling a member stays possible, but taking on its powers (a token)
/// is not when another tenant granted it some: they would pass to the
/// home admin. The refusal names nothing of the other tenant.
#[test]
fn home_admin_cannot_take_on_powers_another_tenant_granted() {
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    let bot = member(
        "sa:bot@acme",
        Some("acme"),
        vec![
            bind(&builtin("viewer"), "acme"),
            bind(&builtin("admin"), "beta"),
        ],
    );
    by_rules(may_act_for(&admin, &bot));
    let d = forbidden(may_act_as(&admin, &bot));
    assert!(!d.reason.contains("beta") && !d.not_found, "{}", d.reason);
    let home_only = member(
        "sa:bot@acme",
        Some("acme"),
        vec![bind(&builtin("viewer"), "acme")],
    );
    by_rules(may_act_as(&admin, &home_only));
}

#[test]
fn cross_tenant_refusals_read_as_not_found() {
    let beta_admin = actor("user:bea", vec![bind(&builtin("admin"), "beta")], false);
    let sam = member(
        "user:sam",
        Some("acme"),
        vec![
            bind(&builtin("developer"), "acme"),
            bind(&builtin("viewer"), "beta"),
        ],
    );
    let ghost = member("user:sam", None, vec![]);
    // Sam is listed in beta, so beta's admin knows of him...
    assert!(visible_to(&beta_admin, &sam));
    assert!(!visible_to(&beta_admin, &ghost));
    // ...and may manage beta's binding...
    by_rules(may_revoke(
        &beta_admin,
        &sam,
        &bind(&builtin("viewer"), "beta"),
        false,
    ));
    // ...but acting for him is acting in acme: the same answer as for a
    // name that does not exist.
    let real = not_found(may_act_for(&beta_admin, &sam), "user:sam");
    let missing = not_found(may_act_for(&beta_admin, &ghost), "user:sam");
    assert_eq!(real, missing);
    // Acme's other members are unknown to beta's admin, existing or not.
    let olga = member(
        "user:olga",
        Some("acme"),
        vec![bind(&builtin("developer"), "acme")],
    );
    not_found(
        may_grant(&beta_admin, &olga, &bind(&builtin("viewer"), "beta")),
        "user:olga",
    );
    not_found(may_act_for(&beta_admin, &olga), "user:olga");
    // Scopes in acme read like the pipeline's absent scopes.
    let d = refused(may_grant(
        &beta_admin,
        &olga,
        &bind(&builtin("viewer"), "acme/shop"),
    ));
    assert!(d.not_found);
    assert_eq!(d.reason, "project acme/shop not found");
    let d = refused(may_apply_role(
        &beta_admin,
        &org("acme"),
        None,
        &role(GUARD),
        &[],
    ));
    assert!(d.not_found);
    assert_eq!(d.reason, "organization acme not found");
}

#[test]
fn org_admin_cannot_act_for_root_owner_homed_in_its_org() {
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    let root = member(
        "user:root",
        Some("acme"),
        vec![bind(&builtin("owner"), "/")],
    );
    let d = forbidden(may_act_for(&admin, &root));
    assert_eq!(d.scope, Some(Scope::Root), "{}", d.reason);
    // Homed at the root, it is not even visible.
    let root = member("user:root", None, vec![bind(&builtin("owner"), "/")]);
    not_found(may_act_for(&admin, &root), "user:root");
}

#[test]
fn acting_for_oneself_and_for_managed_accounts() {
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    by_rules(may_act_for(&admin, &as_member(&admin, Some("acme"))));
    let sa = member(
        "sa:ci",
        Some("acme"),
        vec![bind(&builtin("developer"), "acme/shop")],
    );
    by_rules(may_act_for(&admin, &sa));
    // A developer cannot act for anyone else.
    let dev = actor("user:dev", vec![bind(&builtin("developer"), "acme")], false);
    let d = forbidden(may_act_for(&dev, &sa));
    assert!(
        d.reason.starts_with("acting for sa:ci needs member.manage"),
        "{}",
        d.reason
    );
}

// ---------------------------------------------------------------------------
// Rules kept from the server's earlier checks.

#[test]
fn granting_owner_needs_ownership_transfer() {
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    let bob = member("user:bob", Some("acme"), vec![]);
    let d = forbidden(may_grant(
        &admin,
        &bob,
        &bind(&builtin("owner"), "acme/shop"),
    ));
    assert_eq!(
        d.reason,
        "granting role `owner` at acme/shop needs ownership.transfer there: \
         no role binding grants ownership.transfer on acme/shop"
    );
    let owner = actor("user:olga", vec![bind(&builtin("owner"), "acme")], false);
    by_rules(may_grant(
        &owner,
        &bob,
        &bind(&builtin("owner"), "acme/shop"),
    ));
}

#[test]
fn granter_must_hold_everything_the_role_allows() {
    let lead =
        role("name: lead\nrules:\n  - allow: [member.manage, secret.list, env.read, audit.read]\n");
    let ann = actor("user:ann", vec![bind(&lead, "acme")], false);
    let bob = member("user:bob", Some("acme"), vec![]);
    let d = forbidden(may_grant(&ann, &bob, &bind(&builtin("developer"), "acme")));
    assert!(
        d.reason.starts_with("role `developer` allows "),
        "{}",
        d.reason
    );
    assert!(
        d.reason.ends_with("you can only grant what you hold"),
        "{}",
        d.reason
    );
    by_rules(may_grant(
        &ann,
        &bob,
        &bind(&builtin("viewer"), "acme/shop"),
    ));
}

#[test]
fn a_deny_the_granter_is_under_cannot_be_escaped_by_granting() {
    let no_prod = role(
        "name: no-prod\nrules:\n  - deny: [secret.read]\n    when: {env_mode: [production]}\n",
    );
    let ann = actor(
        "user:ann",
        vec![
            bind(&builtin("admin"), "acme"),
            bind(&no_prod, "acme/shop/prod"),
        ],
        false,
    );
    let sa = member("sa:ci", Some("acme"), vec![]);
    let d = forbidden(may_grant(&ann, &sa, &bind(&builtin("admin"), "acme")));
    assert_eq!(d.scope, Some("acme/shop/prod".parse().unwrap()));
    assert!(d.rule.is_some(), "the deciding deny rule is ann's own");
    assert!(d.reason.contains("role `no-prod`"), "{}", d.reason);
    // Elsewhere the deny does not reach.
    by_rules(may_grant(&ann, &sa, &bind(&builtin("admin"), "acme/web")));
}

#[test]
fn applying_a_role_needs_role_manage_and_holding_old_and_new() {
    let dev = actor("user:dev", vec![bind(&builtin("developer"), "acme")], false);
    let viewerish = role("name: ci\nrules:\n  - allow: [env.read]\n");
    let d = forbidden(may_apply_role(&dev, &org("acme"), None, &viewerish, &[]));
    assert!(
        d.reason
            .starts_with("managing the roles of acme needs role.manage there: "),
        "{}",
        d.reason
    );
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    by_rules(may_apply_role(&admin, &org("acme"), None, &viewerish, &[]));
    let mighty = role("name: ci\nrules:\n  - allow: [ownership.transfer]\n");
    let d = forbidden(may_apply_role(&admin, &org("acme"), None, &mighty, &[]));
    assert!(
        d.reason.contains("would allow ownership.transfer"),
        "{}",
        d.reason
    );
    let d = forbidden(may_apply_role(
        &admin,
        &org("acme"),
        Some(&mighty),
        &viewerish,
        &[],
    ));
    assert!(
        d.reason.contains("now allows ownership.transfer"),
        "{}",
        d.reason
    );
    forbidden(may_delete_role(&admin, &org("acme"), &mighty, &[]));
    // Roles belong to organizations.
    let owner = actor("user:olga", vec![bind(&builtin("owner"), "acme")], false);
    forbidden(may_apply_role(
        &owner,
        &org("acme/shop"),
        None,
        &viewerish,
        &[],
    ));
    // And keep their name.
    let other = role("name: cd\nrules:\n  - allow: [env.read]\n");
    forbidden(may_apply_role(
        &owner,
        &org("acme"),
        Some(&viewerish),
        &other,
        &[],
    ));
}

#[test]
fn widening_a_role_needs_no_power_over_its_holders() {
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    let ci = role("name: ci\nrules:\n  - allow: [env.read]\n");
    let wider = role("name: ci\nrules:\n  - allow: [env.read, secret.list]\n");
    let owner = member(
        "user:olga",
        Some("acme"),
        vec![bind(&builtin("owner"), "acme"), bind(&ci, "acme")],
    );
    let holders = [owner];
    by_rules(may_apply_role(
        &admin,
        &org("acme"),
        Some(&ci),
        &wider,
        &holders,
    ));
    // Narrowing takes from the Owner.
    forbidden(may_apply_role(
        &admin,
        &org("acme"),
        Some(&wider),
        &ci,
        &holders,
    ));
}

#[test]
fn revoking_needs_what_granting_needs() {
    let admin = actor("user:ann", vec![bind(&builtin("admin"), "acme")], false);
    let dev = member(
        "user:dev",
        Some("acme"),
        vec![bind(&builtin("developer"), "acme")],
    );
    by_rules(may_revoke(
        &admin,
        &dev,
        &bind(&builtin("developer"), "acme"),
        false,
    ));
    // An Owner's binding, even a harmless one below its ownership.
    let owner = member(
        "user:olga",
        Some("acme"),
        vec![
            bind(&builtin("owner"), "acme"),
            bind(&builtin("viewer"), "acme/shop"),
        ],
    );
    forbidden(may_revoke(
        &admin,
        &owner,
        &bind(&builtin("viewer"), "acme/shop"),
        false,
    ));
    // A developer revokes nothing, not even its own binding.
    let devp = actor("user:dev", vec![bind(&builtin("developer"), "acme")], false);
    forbidden(may_revoke(
        &devp,
        &dev,
        &bind(&builtin("developer"), "acme"),
        false,
    ));
}

#[test]
fn keeps_a_root_owner_counts_the_others() {
    let root = member("user:root", None, vec![bind(&builtin("owner"), "/")]);
    let ops = member("user:ops", None, vec![bind(&builtin("owner"), "/")]);
    let org_owner = member(
        "user:olga",
        Some("acme"),
        vec![bind(&builtin("owner"), "acme")],
    );
    assert!(!keeps_a_root_owner([&root, &org_owner], "user:root"));
    assert!(keeps_a_root_owner([&root, &ops, &org_owner], "user:root"));
    assert!(keeps_a_root_owner([&root, &org_owner], "user:olga"));
}

/// `powers` is `authorize` for every action at once: the management rules
/// and the request path must never disagree.
#[test]
fn powers_agree_with_authorize() {
    let customs = [
        role(LOCKOUT),
        role(GUARD),
        role(ADMIN_MFA),
        role(
            "name: mix\nrules:\n  - allow: ['*']\n    when: {env_mode: [staging, production], mfa: false}\n  - deny: [secret.*, sys.seal]\n    when: {mfa: true}\n  - allow: [sys.seal]\n",
        ),
    ];
    let roles: Vec<Arc<Role>> = crate::builtin_roles()
        .iter()
        .cloned()
        .chain(customs)
        .collect();
    let scopes = [
        "/",
        "acme",
        "acme/shop",
        "acme/shop/prod",
        "acme/shop/prod/api",
        "beta",
    ];
    // Every pair of bindings over those scopes.
    for (i, a) in roles.iter().enumerate() {
        for b in &roles[i..] {
            for sa in scopes {
                for sb in scopes {
                    let bindings = vec![bind(a, sa), bind(b, sb)];
                    for at in scopes {
                        let at: Scope = at.parse().unwrap();
                        for &mode in &ANY_MODE {
                            for mfa in [false, true] {
                                let p = actor("user:p", bindings.clone(), mfa);
                                let resource = Resource {
                                    scope: at.clone(),
                                    mode,
                                };
                                let mask = powers(&bindings, &at, mode, mfa);
                                for action in Action::ALL {
                                    assert_eq!(
                                        mask & action.bit() != 0,
                                        authorize(&p, action, &resource).is_allow(),
                                        "{action} at {at} {mode:?} mfa={mfa} with {bindings:?}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn powers_held_only_inside_environments_are_not_held_above_them() {
    // Ann may transfer ownership in every environment of acme, but not on
    // acme itself or its projects, which have no mode.
    let env_owner = role(
        "name: env-owner\nrules:\n  - allow: [member.manage]\n  - allow: [ownership.transfer]\n    when: {env_mode: [development, staging, production]}\n",
    );
    let ann = actor("user:ann", vec![bind(&env_owner, "acme")], false);
    let bob = member("user:bob", Some("acme"), vec![]);
    let transfer = role("name: transfer\nrules:\n  - allow: [ownership.transfer]\n");
    let d = forbidden(may_grant(&ann, &bob, &bind(&transfer, "acme")));
    assert_eq!(d.scope, Some("acme".parse().unwrap()), "{}", d.reason);
    assert!(
        d.reason
            .starts_with("role `transfer` allows ownership.transfer at acme outside"),
        "{}",
        d.reason
    );
    // At an environment every resource has a mode, and she holds it there.
    by_rules(may_grant(&ann, &bob, &bind(&transfer, "acme/shop/prod")));
}
