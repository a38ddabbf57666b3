//! Human-readable output (the `--output text` side of each command).

use warden_api::{
    BindingInfo, ClusterInfo, History, KeyStatus, PodList, PolicyDecision, RoleList, ScopeList,
    SecretHolders, SecretList, SshKeyList, SysStatus, TokenList, UserInfo, UserList, WhoAmI,
};

fn time(ms: i64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A time in ms as RFC 3339 (`2026-12-01T14:26:10Z`).
pub fn rfc3339(ms: i64) -> String {
    time(ms).replacen(' ', "T", 1)
}

/// A time in ms, or `none` when there is none.
pub fn time_or(ms: Option<i64>, none: &str) -> String {
    ms.map_or_else(|| none.to_owned(), time)
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn seal_status(s: &SysStatus) {
    println!("initialized: {}", s.initialized);
    println!("sealed:      {}", s.sealed);
    if let Some(m) = &s.method {
        println!("method:      {m}");
    }
    if s.sealed && s.method.as_deref() == Some("shamir") {
        println!("progress:    {}/{} shares", s.progress, s.threshold);
    }
}

pub fn scopes(list: &ScopeList) {
    if list.scopes.is_empty() {
        println!("(none)");
    }
    for s in &list.scopes {
        match &s.mode {
            Some(mode) => println!("{}  {mode}", s.path),
            None => println!("{}", s.path),
        }
    }
}

pub fn secrets(list: &SecretList) {
    if list.secrets.is_empty() {
        println!("(no secrets in {})", list.scope);
        return;
    }
    println!("{:<40} {:>7}  {:<21} STATE", "NAME", "VERSION", "UPDATED");
    for s in &list.secrets {
        println!(
            "{:<40} {:>7}  {:<21} {}",
            s.name,
            s.latest,
            time(s.updated_at),
            if s.latest_deleted {
                "deleted"
            } else {
                "active"
            }
        );
    }
}

pub fn history(h: &History) {
    println!("{:>7}  {:>4}  {:<21} STATE", "VERSION", "TERM", "CREATED");
    for v in &h.versions {
        let state = if v.destroyed_at.is_some() {
            "destroyed"
        } else if v.deleted_at.is_some() {
            "deleted"
        } else {
            "active"
        };
        println!(
            "{:>7}  {:>4}  {:<21} {state}",
            v.version,
            v.key_term,
            time(v.created_at)
        );
    }
}

pub fn holders(h: &SecretHolders) {
    let latest = h
        .latest
        .map_or_else(|| "none".to_owned(), |v| v.to_string());
    println!("{}/{}: latest version {latest}", h.scope, h.name);
    if h.holders.is_empty() {
        println!("no watching pod holds it");
        return;
    }
    println!(
        "{:<40} {:<30} {:>7}  {:<21} STATE",
        "SERVICE", "POD", "VERSION", "APPLIED"
    );
    for p in &h.holders {
        let state = if p.current { "current" } else { "stale" };
        println!(
            "{:<40} {:<30} {:>7}  {:<21} {state}",
            p.service,
            p.pod,
            p.version,
            time(p.applied_at)
        );
    }
    let stale = h.holders.iter().filter(|p| !p.current).count();
    println!(
        "{} of {} pods hold the latest version",
        h.holders.len() - stale,
        h.holders.len()
    );
}

pub fn key_status(k: &KeyStatus) {
    println!("{}: current key term {}", k.org, k.current_term);
    println!(
        "{:>4}  {:<21} {:>12} {:>9}",
        "TERM", "CREATED", "ENCRYPTIONS", "VERSIONS"
    );
    for t in &k.terms {
        println!(
            "{:>4}  {:<21} {:>12} {:>9}",
            t.term,
            time(t.created_at),
            t.encryptions,
            t.versions
        );
    }
}

pub fn whoami(w: &WhoAmI) {
    println!("principal: {}", w.principal);
    println!("method:    {}", w.method);
    println!("token:     {}", w.token_id);
    println!("MFA:       {}", yes_no(w.mfa));
    if w.bindings.is_empty() {
        println!("bindings:  (none)");
        return;
    }
    println!();
    println!("{:<24} SCOPE", "ROLE");
    for b in &w.bindings {
        println!("{:<24} {}", b.role, b.scope);
    }
}

pub fn bindings(list: &[BindingInfo]) {
    if list.is_empty() {
        println!("(no bindings)");
        return;
    }
    println!("{:<40} {:<24} SCOPE", "PRINCIPAL", "ROLE");
    for b in list {
        println!("{:<40} {:<24} {}", b.principal, b.role, b.scope);
    }
}

fn user_state(u: &UserInfo) -> &'static str {
    if u.disabled_at.is_some() {
        "disabled"
    } else {
        "active"
    }
}

pub fn users(list: &UserList) {
    if list.users.is_empty() {
        println!("(no users)");
        return;
    }
    println!(
        "{:<32} {:<8} {:<20} {:<8} {:<3}  {:<21} STATE",
        "ID", "KIND", "ORG", "PASSWORD", "MFA", "CREATED"
    );
    for u in &list.users {
        println!(
            "{:<32} {:<8} {:<20} {:<8} {:<3}  {:<21} {}",
            u.id,
            u.kind,
            u.org.as_deref().unwrap_or("/"),
            yes_no(u.password_set),
            yes_no(u.mfa_enabled),
            time(u.created_at),
            user_state(u)
        );
    }
}

pub fn user(u: &UserInfo) {
    println!("id:       {}", u.id);
    println!("kind:     {}", u.kind);
    println!(
        "org:      {}",
        u.org.as_deref().unwrap_or("/ (installation-wide)")
    );
    println!(
        "password: {}",
        if u.password_set { "set" } else { "not set" }
    );
    println!("MFA:      {}", yes_no(u.mfa_enabled));
    println!("created:  {}", time(u.created_at));
    match u.disabled_at {
        Some(t) => println!("state:    disabled since {}", time(t)),
        None => println!("state:    active"),
    }
}

pub fn tokens(list: &TokenList, now: i64) {
    if list.tokens.is_empty() {
        println!("(no tokens)");
        return;
    }
    println!(
        "{:<20} {:<20} {:<7} {:<21} {:<21} {:<21} STATE",
        "ID", "NAME", "KIND", "CREATED", "EXPIRES", "LAST-USED"
    );
    for t in &list.tokens {
        let state = if t.revoked_at.is_some() {
            "revoked"
        } else if t.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        println!(
            "{:<20} {:<20} {:<7} {:<21} {:<21} {:<21} {state}",
            t.id,
            t.name,
            t.kind,
            time(t.created_at),
            time_or(t.expires_at, "never"),
            time_or(t.last_used_at, "-"),
        );
    }
}

pub fn ssh_keys(list: &SshKeyList) {
    if list.keys.is_empty() {
        println!("(no SSH keys)");
        return;
    }
    println!(
        "{:<51} {:<20} {:<21} COMMENT",
        "FINGERPRINT", "ALGORITHM", "ADDED"
    );
    for k in &list.keys {
        println!(
            "{:<51} {:<20} {:<21} {}",
            k.fingerprint,
            k.algorithm,
            time(k.created_at),
            k.comment
        );
    }
}

pub fn pods(list: &PodList) {
    if list.pods.is_empty() {
        println!("(no pods on cluster {})", list.cluster);
        return;
    }
    println!(
        "{:<40} {:<12} {:<6} {:<9} {:<21} LAST EXIT",
        "POD", "PHASE", "READY", "RESTARTS", "STARTED"
    );
    for p in &list.pods {
        // Pod fields come from the cluster's agent: printed escaped.
        println!(
            "{:<40} {:<12} {:<6} {:<9} {:<21} {}",
            printable(&p.name),
            printable(&p.phase),
            yes_no(p.ready),
            p.restarts,
            time_or(p.started_at_ms.and_then(|t| i64::try_from(t).ok()), "-"),
            printable(p.last_exit.as_deref().unwrap_or("-"))
        );
    }
    // Isolation is the same for every pod of a node; said once, never hidden.
    let mut isolations: Vec<&str> = list.pods.iter().map(|p| p.isolation.as_str()).collect();
    isolations.dedup();
    for i in isolations {
        println!("isolation: {}", printable(i));
    }
}

pub fn clusters(list: &[ClusterInfo]) {
    if list.is_empty() {
        println!("(no clusters)");
        return;
    }
    println!(
        "{:<20} {:<10} {:<11} {:<9} {:<22} {:<21} {:>5}  ENVIRONMENTS",
        "CLUSTER", "STATE", "RUNTIME", "VERSION", "ADDRESS", "LAST SEEN", "PODS"
    );
    for c in list {
        // What an agent reports is printed escaped: it must not drive the
        // operator's terminal.
        let shown = |s: Option<&str>| printable(s.unwrap_or("-"));
        println!(
            "{:<20} {:<10} {:<11} {:<9} {:<22} {:<21} {:>5}  {}",
            c.name,
            if c.connected { "online" } else { "offline" },
            shown(c.runtime.as_deref()),
            shown(c.version.as_deref()),
            shown(c.address.as_deref()),
            time_or(c.last_seen_at, "never"),
            c.pods.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            c.environments.join(", ")
        );
    }
}

pub fn roles(list: &RoleList) {
    if list.roles.is_empty() {
        println!("(no roles)");
        return;
    }
    println!("{:<24} {:<8} DESCRIPTION", "NAME", "ORIGIN");
    for r in &list.roles {
        println!(
            "{:<24} {:<8} {}",
            r.name,
            if r.builtin { "built-in" } else { "custom" },
            r.description
        );
    }
}

pub fn policy_decision(d: &PolicyDecision) {
    println!("{}", if d.allowed { "ALLOW" } else { "DENY" });
    println!("{}", d.explanation);
    if let Some(m) = &d.mode {
        println!("mode:    {m}");
    }
    if let Some(r) = &d.role {
        println!("role:    {r}");
    }
    if let Some(b) = &d.binding {
        println!("binding: {b}");
    }
    if let Some(n) = d.rule {
        println!("rule:    {n}");
    }
    if let Some(s) = &d.session {
        let limit = |secs: Option<u64>| secs.map_or_else(|| "none".to_owned(), |s| format!("{s}s"));
        println!(
            "session: max_length {}, idle_timeout {}, record_input {}",
            limit(s.max_length_secs),
            limit(s.idle_timeout_secs),
            s.record_input
        );
    }
}

pub fn progress(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("rewrap {bar:40} {pos}/{len} versions ({eta} left)")
    {
        bar.set_style(style);
    }
    bar
}

/// A spinner on standard error (for downloads whose size is unknown).
pub fn spinner(message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Turns a spinner into a byte progress bar once the size is known.
pub fn download_bar(bar: &indicatif::ProgressBar, total: u64) {
    bar.set_length(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "downloading {bar:40} {bytes}/{total_bytes} ({eta} left)",
    ) {
        bar.set_style(style);
    }
}

/// `s` with control characters escaped, so that text from the server (an
/// audit entry's target, a user agent) cannot drive the terminal.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One audit entry on one line: seq, time (UTC), principal, action,
/// target, phase, and the status (outcomes) or decision (intents).
pub fn audit_entry(e: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| printable(v.as_str().unwrap_or("-"));
    let seq = e["seq"]
        .as_u64()
        .map_or_else(|| "?".to_owned(), |s| s.to_string());
    let when = e["time_ns"].as_u64().map_or_else(
        || "-".to_owned(),
        |ns| time(i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)),
    );
    let effect = e["decision"]["effect"].as_str();
    let result = match (e["status"].as_str(), effect) {
        (Some(status), Some("deny")) => format!("{} (deny)", printable(status)),
        (Some(status), _) => printable(status),
        (None, Some(effect)) => printable(effect),
        (None, None) => "-".to_owned(),
    };
    format!(
        "{seq:>6}  {when}  {:<24} {:<18} {} {} {result}",
        text(&e["actor"]["principal"]),
        text(&e["action"]),
        printable(&warden_tlog::export::target_text(Some(&e["target"]))),
        text(&e["phase"]),
    )
}

/// POSIX shell single-quoting.
pub fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// dotenv double-quoting with escapes for `\`, `"`, `$` and newlines.
pub fn dotenv_quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_values() {
        assert_eq!(shell_quote("a'b $(rm -rf /)"), r"'a'\''b $(rm -rf /)'");
        assert_eq!(dotenv_quote("a\"b\\c\n$HOME"), r#""a\"b\\c\n\$HOME""#);
    }

    #[test]
    fn audit_entries_fit_on_one_safe_line() {
        let e = serde_json::json!({
            "seq": 7,
            "time_ns": 1_763_795_000_123_456_789_u64,
            "actor": {"principal": "user:root"},
            "action": "secret.read",
            "target": {"kind": "secret", "scope": "acme/web/prod", "name": "K\u{1b}[31m"},
            "phase": "outcome",
            "status": "ok",
            "decision": {"effect": "allow", "rule": "owner"},
        });
        let line = audit_entry(&e);
        assert!(!line.contains('\u{1b}'), "{line}");
        assert!(!line.contains('\n'));
        for part in [
            "     7",
            "2025-11-22 07:03:20Z",
            "user:root",
            "secret.read",
            "acme/web/prod#K\\u{1b}[31m",
            "outcome",
            "ok",
        ] {
            assert!(line.contains(part), "{part} not in {line}");
        }
        let intent =
            serde_json::json!({"seq": 1, "phase": "intent", "decision": {"effect": "allow"}});
        assert!(audit_entry(&intent).ends_with(" intent allow"));
        let denied = serde_json::json!({"phase": "outcome", "status": "forbidden", "decision": {"effect": "deny"}});
        assert!(audit_entry(&denied).ends_with("forbidden (deny)"));
    }

    #[test]
    fn times_render_in_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00Z");
        assert_eq!(time(1_763_795_000_000), "2025-11-22 07:03:20Z");
        assert_eq!(time_or(None, "never"), "never");
        assert_eq!(time_or(Some(0), "never"), "1970-01-01 00:00:00Z");
    }
}
