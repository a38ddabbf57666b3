//! Derived views of entry lines for spreadsheets and SIEMs.
//!
//! Both are computed from `entries.jsonl` alone and deterministically, so a
//! verifier can recompute them and compare byte for byte.
//!
//! # CSV ([`to_csv`])
//!
//! RFC 4180 (CRLF line ends, fields quoted when needed), one header row,
//! then one row per entry with these columns:
//!
//! | column | from the entry |
//! |---|---|
//! | `seq` | `seq` |
//! | `time_utc` | `time_ns` as RFC 3339 UTC with nanoseconds, e.g. `2026-09-21T12:00:00.123456789Z` |
//! | `log` | `log` |
//! | `node` | `node` |
//! | `op_id` | `op_id` |
//! | `phase` | `phase` (`intent` or `outcome`) |
//! | `principal` | `actor.principal` |
//! | `method` | `actor.method` |
//! | `source_ip` | `actor.source_ip` |
//! | `action` | `action` |
//! | `target` | `target` |
//! | `effect` | `decision.effect` |
//! | `rule` | `decision.rule` |
//! | `status` | `status` |
//!
//! A missing or null value is an empty field.
//!
//! # OCSF ([`to_ocsf`])
//!
//! A JSON array of OCSF 1.3.0 events, one per line, each printed as
//! canonical JSON (sorted keys). The class is chosen by action:
//!
//! | action | class | activity |
//! |---|---|---|
//! | `auth.login*` | Authentication 3002 (category 3) | Logon 1 |
//! | `auth.password` | Account Change 3001 (category 3) | Password Change 3 |
//! | `binding.*`, `member.*`, `ownership.*` | Account Change 3001 | verb create/add/grant/bind/transfer → Attach Policy 7; delete/remove/revoke/unbind → Detach Policy 8; else Other 99 |
//! | `user.*`, `token.*`, `ssh_key.*`, `auth.mfa.*`, `role.*` | Account Change 3001 | create/add/enroll/issue → Create 1; delete/remove/revoke/destroy → Delete 6; else Other 99 |
//! | anything else | API Activity 6003 (category 6) | create/add/write/put/issue/import/init → Create 1; read/list/show/get/export/whoami/check → Read 2; update/rotate/rewrap/seal/unseal/undelete/restore/rollback/transfer/confirm/manage → Update 3; delete/remove/destroy/revoke/purge → Delete 4; else Other 99 |
//!
//! (The verb is the action's last dot-separated part.)
//!
//! Every event has `activity_id`, `category_uid`, `class_uid`,
//! `type_uid = class_uid × 100 + activity_id`, `severity_id`, `time`
//! (milliseconds), `status_id`, `metadata` (`version` "1.3.0", `product`
//! {`name`, `vendor_name`: "Warden"}, `uid` = `op_id`, `sequence` = `seq`,
//! `log_name` = `log`), `actor` (`user` {`uid`, `name`} = the principal,
//! and `authorizations` [{`decision`, `policy` {`name`}}] when the entry
//! carries a decision), `src_endpoint` (`ip`, or `name` "unknown"),
//! `message` (`action target`), and `unmapped` (the original entry).
//! Per class: Authentication adds `user` (the principal) and `service`
//! {`name` "Warden"}; Account Change adds `user` (the target); API Activity
//! adds `api` {`operation` = action, `service` {`name` "Warden"}} and
//! `resources` [{`name` = target, `type` = the action's first part}].
//!
//! `status_id`: an `intent` entry is Unknown 0 (its outcome follows); an
//! outcome whose `status` is `ok` is Success 1; any other status, or a
//! `deny` decision, is Failure 2 (`status_detail` keeps the status).
//! `severity_id` is Informational 1, or Low 2 for failures.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::canonical::write_canonical;

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.3.0";

/// The CSV header, in column order.
pub const CSV_COLUMNS: [&str; 14] = [
    "seq",
    "time_utc",
    "log",
    "node",
    "op_id",
    "phase",
    "principal",
    "method",
    "source_ip",
    "action",
    "target",
    "effect",
    "rule",
    "status",
];

/// Why a view could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// A line that is not an entry.
    #[error("line {line}: {reason}")]
    Entry {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The CSV writer failed.
    #[error("CSV: {0}")]
    Csv(String),
}

#[derive(Deserialize)]
struct Row<'a> {
    seq: u64,
    time_ns: u128,
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow, default)]
    node: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    op_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    phase: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    actor: Option<ActorRow<'a>>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(default)]
    target: Option<Value>,
    #[serde(borrow, default)]
    decision: Option<DecisionRow<'a>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ActorRow<'a> {
    #[serde(borrow, default)]
    principal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source_ip: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DecisionRow<'a> {
    #[serde(borrow, default)]
    effect: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    rule: Option<Cow<'a, str>>,
}

/// The non-empty lines of `entries` with their 1-based line numbers.
fn lines(entries: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    entries
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| (i + 1, l))
}

fn parse_row(line: usize, l: &[u8]) -> Result<Row<'_>, ExportError> {
    serde_json::from_slice::<Row<'_>>(l).map_err(|e| ExportError::Entry {
        line,
        reason: e.to_string(),
    })
}

/// A derived view made an entry at a time, for entries too many to hold:
/// [`ViewWriter::start`], then [`ViewWriter::line`] for each entry line in
/// order, then [`ViewWriter::end`]; the pieces concatenated are exactly
/// [`to_csv`] or [`to_ocsf`] of the lines.
#[derive(Debug, Clone)]
pub enum ViewWriter {
    /// The CSV view.
    Csv,
    /// The OCSF view (whether no event was written yet).
    Ocsf {
        /// No event written yet.
        first: bool,
    },
}

impl ViewWriter {
    /// The CSV view.
    pub fn csv() -> Self {
        Self::Csv
    }

    /// The OCSF view.
    pub fn ocsf() -> Self {
        Self::Ocsf { first: true }
    }

    /// What comes before the first entry.
    pub fn start(&self) -> Result<Vec<u8>, ExportError> {
        match self {
            Self::Csv => csv_record(CSV_COLUMNS),
            Self::Ocsf { .. } => Ok(b"[".to_vec()),
        }
    }

    /// The view of one entry line (without its newline); `line_no` is its
    /// 1-based line number, for errors.
    pub fn line(&mut self, line_no: usize, line: &[u8]) -> Result<Vec<u8>, ExportError> {
        let r = parse_row(line_no, line)?;
        match self {
            Self::Csv => csv_row(line_no, &r),
            Self::Ocsf { first } => {
                let original: Value =
                    serde_json::from_slice(line).map_err(|e| ExportError::Entry {
                        line: line_no,
                        reason: e.to_string(),
                    })?;
                let mut out = Vec::with_capacity(line.len() * 2);
                out.extend_from_slice(if *first { b"\n" } else { b",\n" });
                *first = false;
                write_canonical(&ocsf_event(&r, original), &mut out);
                Ok(out)
            }
        }
    }

    /// What comes after the last entry.
    pub fn end(&self) -> Vec<u8> {
        match self {
            Self::Csv => Vec::new(),
            Self::Ocsf { first: true } => b"]\n".to_vec(),
            Self::Ocsf { first: false } => b"\n]\n".to_vec(),
        }
    }

    /// The whole view of JSON-lines `entries`.
    fn all(mut self, entries: &[u8]) -> Result<Vec<u8>, ExportError> {
        let mut out = self.start()?;
        for (n, l) in lines(entries) {
            out.extend_from_slice(&self.line(n, l)?);
        }
        out.extend_from_slice(&self.end());
        Ok(out)
    }
}

/// One CSV record (RFC 4180, CRLF), as the `csv` writer quotes it.
fn csv_record<I, F>(fields: I) -> Result<Vec<u8>, ExportError>
where
    I: IntoIterator<Item = F>,
    F: AsRef<[u8]>,
{
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(fields)
        .map_err(|e| ExportError::Csv(e.to_string()))?;
    w.into_inner().map_err(|e| ExportError::Csv(e.to_string()))
}

fn opt<'a>(v: &'a Option<Cow<'a, str>>) -> &'a str {
    v.as_deref().unwrap_or("")
}

/// The CSV view of JSON-lines entries (columns in [`CSV_COLUMNS`]).
pub fn to_csv(entries: &[u8]) -> Result<Vec<u8>, ExportError> {
    ViewWriter::csv().all(entries)
}

fn csv_row(line: usize, r: &Row<'_>) -> Result<Vec<u8>, ExportError> {
    let time = rfc3339_nanos(r.time_ns).ok_or_else(|| ExportError::Entry {
        line,
        reason: format!("time_ns {} is past the year 9999", r.time_ns),
    })?;
    let seq = r.seq.to_string();
    let none = None;
    let (principal, method, ip) = match &r.actor {
        Some(a) => (&a.principal, &a.method, &a.source_ip),
        None => (&none, &none, &none),
    };
    let (effect, rule) = match &r.decision {
        Some(d) => (&d.effect, &d.rule),
        None => (&none, &none),
    };
    csv_record([
        seq.as_str(),
        time.as_str(),
        r.log.as_ref(),
        opt(&r.node),
        opt(&r.op_id),
        opt(&r.phase),
        opt(principal),
        opt(method),
        opt(ip),
        r.action.as_ref(),
        target_text(r.target.as_ref()).as_str(),
        opt(effect),
        opt(rule),
        opt(&r.status),
    ])
}

/// An entry's target as one line of text: a schema-4 target object
/// (`{"kind": "secret", "scope": "acme/shop", "name": "K", "version": 2}`)
/// reads `acme/shop#K@v2`; older entries' targets are text already.
///
/// | kind | text |
/// |---|---|
/// | `secret`, `secrets` | `SCOPE#NAME[@vN]`, `SCOPE#N1,N2` |
/// | `binding` | `SCOPE#ROLE@PRINCIPAL` |
/// | `role` | `ORG#role:NAME` |
/// | `principal` | the principal id |
/// | `session` | `SERVICE#session:ID[/POD]` |
/// | `log` | `LOG[@SEQ]` |
/// | `credential` | `credential:KIND` |
/// | others | `SCOPE[#KIND:NAME]`, or the kind alone |
pub fn target_text(target: Option<&Value>) -> String {
    let Some(t) = target else {
        return String::new();
    };
    if let Some(s) = t.as_str() {
        return s.to_owned();
    }
    let f = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("");
    let kind = f("kind");
    let version = t.get("version").and_then(Value::as_i64);
    match kind {
        "secret" => match version {
            Some(v) => format!("{}#{}@v{v}", f("scope"), f("name")),
            None => format!("{}#{}", f("scope"), f("name")),
        },
        "secrets" => {
            let names: Vec<&str> = t
                .get("names")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!("{}#{}", f("scope"), names.join(","))
        }
        "binding" => format!("{}#{}@{}", f("scope"), f("role"), f("principal")),
        "role" => format!("{}#role:{}", f("scope"), f("name")),
        "principal" => f("principal").to_owned(),
        "session" => match t.get("pod").and_then(Value::as_str) {
            Some(pod) => format!("{}#session:{}/{pod}", f("scope"), f("session")),
            None => format!("{}#session:{}", f("scope"), f("session")),
        },
        "log" => match version {
            Some(seq) => format!("{}@{seq}", f("name")),
            None => f("name").to_owned(),
        },
        "credential" => format!("credential:{}", f("name")),
        _ => match (f("scope"), f("name")) {
            ("", "") => kind.to_owned(),
            (scope, "") => scope.to_owned(),
            (scope, name) => format!("{scope}#{kind}:{name}"),
        },
    }
}

/// The OCSF class of an action: (class_uid, category_uid, activity_id).
pub fn ocsf_class(action: &str) -> (u32, u32, u32) {
    let verb = action.rsplit('.').next().unwrap_or(action);
    let has = |list: &[&str]| list.contains(&verb);
    let prefix = |p: &str| action.starts_with(p);
    if prefix("auth.login") {
        return (3002, 3, 1);
    }
    if action == "auth.password" {
        return (3001, 3, 3);
    }
    if prefix("binding.") || prefix("member.") || prefix("ownership.") {
        let a = if has(&["create", "add", "grant", "bind", "transfer"]) {
            7
        } else if has(&["delete", "remove", "revoke", "unbind"]) {
            8
        } else {
            99
        };
        return (3001, 3, a);
    }
    if ["user.", "token.", "ssh_key.", "auth.mfa.", "role."]
        .iter()
        .any(|p| prefix(p))
    {
        let a = if has(&["create", "add", "enroll", "issue"]) {
            1
        } else if has(&["delete", "remove", "revoke", "destroy"]) {
            6
        } else {
            99
        };
        return (3001, 3, a);
    }
    let a = if has(&["create", "add", "write", "put", "issue", "import", "init"]) {
        1
    } else if has(&["read", "list", "show", "get", "export", "whoami", "check"]) {
        2
    } else if has(&[
        "update", "rotate", "rewrap", "seal", "unseal", "undelete", "restore", "rollback",
        "transfer", "confirm", "manage",
    ]) {
        3
    } else if has(&["delete", "remove", "destroy", "revoke", "purge"]) {
        4
    } else {
        99
    };
    (6003, 6, a)
}

fn ocsf_event(r: &Row<'_>, original: Value) -> Value {
    let (class_uid, category_uid, activity_id) = ocsf_class(&r.action);
    let denied = r
        .decision
        .as_ref()
        .and_then(|d| d.effect.as_deref())
        .is_some_and(|e| e == "deny");
    let status_id = match (r.phase.as_deref(), r.status.as_deref()) {
        _ if denied => 2,
        (Some("intent"), _) => 0,
        (_, Some("ok")) => 1,
        (_, Some(_)) => 2,
        _ => 0,
    };
    let principal = r
        .actor
        .as_ref()
        .and_then(|a| a.principal.as_deref())
        .unwrap_or("unknown");
    let target = target_text(r.target.as_ref());
    let target = target.as_str();
    let mut actor = json!({ "user": { "uid": principal, "name": principal } });
    if let Some(d) = &r.decision {
        actor["authorizations"] = json!([{
            "decision": d.effect.as_deref().unwrap_or(""),
            "policy": { "name": d.rule.as_deref().unwrap_or("") },
        }]);
    }
    let src_endpoint = match r.actor.as_ref().and_then(|a| a.source_ip.as_deref()) {
        Some(ip) => json!({ "ip": ip }),
        None => json!({ "name": "unknown" }),
    };
    let mut e = json!({
        "activity_id": activity_id,
        "category_uid": category_uid,
        "class_uid": class_uid,
        "type_uid": u64::from(class_uid) * 100 + u64::from(activity_id),
        "severity_id": if status_id == 2 { 2 } else { 1 },
        "time": u64::try_from(r.time_ns / 1_000_000).unwrap_or(u64::MAX),
        "status_id": status_id,
        "message": format!("{} {}", r.action, target).trim_end(),
        "metadata": {
            "version": OCSF_VERSION,
            "product": { "name": "Warden", "vendor_name": "Warden" },
            "uid": r.op_id.as_deref().unwrap_or(""),
            "sequence": r.seq,
            "log_name": r.log.as_ref(),
        },
        "actor": actor,
        "src_endpoint": src_endpoint,
        "unmapped": original,
    });
    if let Some(s) = r.status.as_deref() {
        e["status_detail"] = json!(s);
    }
    match class_uid {
        3002 => {
            e["user"] = json!({ "uid": principal, "name": principal });
            e["service"] = json!({ "name": "Warden" });
        }
        3001 => {
            e["user"] = json!({ "uid": target, "name": target });
        }
        _ => {
            let kind = r.action.split('.').next().unwrap_or("");
            e["api"] = json!({ "operation": r.action.as_ref(), "service": { "name": "Warden" } });
            e["resources"] = json!([{ "name": target, "type": kind }]);
        }
    }
    e
}

/// The OCSF view of JSON-lines entries: a JSON array of OCSF 1.3.0 events
/// (see the module docs for the mapping).
pub fn to_ocsf(entries: &[u8]) -> Result<Vec<u8>, ExportError> {
    ViewWriter::ocsf().all(entries)
}

const DAYS_IN_MONTH: [u64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

fn is_leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

/// `time_ns` (since the Unix epoch) as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`,
/// or `None` past 9999-12-31. Walks years and months from 1970: no clock,
/// no calendar crate.
pub fn rfc3339_nanos(time_ns: u128) -> Option<String> {
    let secs = u64::try_from(time_ns / 1_000_000_000).ok()?;
    let nanos = (time_ns % 1_000_000_000) as u64;
    let mut days = secs / 86_400;
    let sod = secs % 86_400;
    let mut year = 1970u64;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
        if year > 9999 {
            return None;
        }
    }
    let mut month = 0usize;
    for (i, &len) in DAYS_IN_MONTH.iter().enumerate() {
        let len = if i == 1 && is_leap(year) { 29 } else { len };
        if days < len {
            month = i;
            break;
        }
        days -= len;
    }
    Some(format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        month + 1,
        days + 1,
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_targets_read_as_one_line() {
        let text = |v: Value| target_text(Some(&v));
        assert_eq!(
            text(json!({"kind": "secret", "scope": "acme/shop", "name": "K", "version": 2})),
            "acme/shop#K@v2"
        );
        assert_eq!(
            text(json!({"kind": "secrets", "scope": "acme/shop", "names": ["A", "B"]})),
            "acme/shop#A,B"
        );
        assert_eq!(
            text(
                json!({"kind": "binding", "scope": "acme", "role": "viewer", "principal": "sa:ci@acme"})
            ),
            "acme#viewer@sa:ci@acme"
        );
        assert_eq!(
            text(json!({"kind": "principal", "principal": "user:root"})),
            "user:root"
        );
        assert_eq!(
            text(json!({"kind": "role", "scope": "acme", "name": "ops"})),
            "acme#role:ops"
        );
        assert_eq!(
            text(json!({"kind": "log", "name": "acme", "version": 7})),
            "acme@7"
        );
        assert_eq!(text(json!({"kind": "vault"})), "vault");
        assert_eq!(
            text(json!({"kind": "pod", "scope": "acme/shop/dev/api", "name": "api-1"})),
            "acme/shop/dev/api#pod:api-1"
        );
        // Entries of older schemas carry text already.
        assert_eq!(text(json!("acme/shop#K")), "acme/shop#K");
        assert_eq!(target_text(None), "");
    }
    use proptest::prelude::*;

    const PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn line(seq: u64, action: &str, phase: &str, status: Option<&str>, effect: &str) -> String {
        let status = status.map_or("null".to_owned(), |s| format!("\"{s}\""));
        format!(
            r#"{{"action":"{action}","actor":{{"method":"token","principal":"user:ann","source_ip":"10.0.0.1","token_id":"tok_1","user_agent":null}},"decision":{{"effect":"{effect}","rule":"owner@/, \"quoted\""}},"log":"acme","node":"n1","op_id":"n1-1-{seq}","phase":"{phase}","prev":"{PREV}","schema":1,"seq":{seq},"status":{status},"target":"acme/shop/prod#K","time_ns":1790000000123456789}}"#
        )
    }

    fn sample() -> Vec<u8> {
        let actions = [
            ("secret.read", "intent", None, "allow"),
            ("secret.read", "outcome", Some("ok"), "allow"),
            ("secret.write", "outcome", Some("forbidden"), "deny"),
            (
                "auth.login",
                "outcome",
                Some("missing bearer token"),
                "allow",
            ),
            ("token.create", "outcome", Some("ok"), "allow"),
            ("token.revoke", "outcome", Some("ok"), "allow"),
            ("binding.create", "outcome", Some("ok"), "allow"),
            ("member.remove", "outcome", Some("ok"), "allow"),
            ("auth.password", "outcome", Some("ok"), "allow"),
            ("auth.mfa.enroll", "outcome", Some("ok"), "allow"),
            ("role.delete", "outcome", Some("ok"), "allow"),
            ("ownership.transfer", "outcome", Some("ok"), "allow"),
            ("user.show", "outcome", Some("ok"), "allow"),
            ("ssh_key.add", "outcome", Some("ok"), "allow"),
            ("sys.seal", "outcome", Some("ok"), "allow"),
            ("shell.exec", "intent", None, "allow"),
            ("secret.destroy", "outcome", Some("ok"), "allow"),
            ("key.rotate", "outcome", Some("ok"), "allow"),
        ];
        let mut out = String::new();
        for (i, (a, p, s, e)) in actions.iter().enumerate() {
            out.push_str(&line(i as u64, a, p, *s, e));
            out.push('\n');
        }
        out.into_bytes()
    }

    #[test]
    fn csv_has_fixed_columns_and_rfc4180_quoting() {
        let csv = String::from_utf8(to_csv(&sample()).unwrap()).unwrap();
        let mut rows = csv.split("\r\n");
        assert_eq!(rows.next().unwrap(), CSV_COLUMNS.join(","));
        let first = rows.next().unwrap();
        assert_eq!(
            first,
            "0,2026-09-21T14:13:20.123456789Z,acme,n1,n1-1-0,intent,user:ann,token,10.0.0.1,secret.read,acme/shop/prod#K,allow,\"owner@/, \"\"quoted\"\"\","
        );
        assert_eq!(csv.matches("\r\n").count(), 19);
        assert!(to_csv(b"{\"seq\":1}\n").is_err());
        assert_eq!(
            to_csv(b"").unwrap(),
            format!("{}\r\n", CSV_COLUMNS.join(",")).into_bytes()
        );
    }

    /// Required attributes per OCSF 1.3.0: the base event's, then each
    /// class's (Authentication and Account Change: `user`; API Activity:
    /// `actor`, `api`, `src_endpoint`; Authentication also needs `service`
    /// or `dst_endpoint`).
    #[test]
    fn every_event_has_its_required_attributes() {
        let out = to_ocsf(&sample()).unwrap();
        let events: Vec<Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(events.len(), 18);
        let mut classes = std::collections::BTreeSet::new();
        for e in &events {
            for k in [
                "activity_id",
                "category_uid",
                "class_uid",
                "type_uid",
                "severity_id",
                "time",
                "status_id",
                "metadata",
            ] {
                assert!(e.get(k).is_some(), "{k} missing in {e}");
            }
            let class = e["class_uid"].as_u64().unwrap();
            let activity = e["activity_id"].as_u64().unwrap();
            assert_eq!(e["type_uid"].as_u64().unwrap(), class * 100 + activity);
            assert_eq!(e["category_uid"].as_u64().unwrap(), class / 1000);
            assert_eq!(e["metadata"]["version"], "1.3.0");
            assert_eq!(e["metadata"]["product"]["name"], "Warden");
            assert_eq!(e["metadata"]["product"]["vendor_name"], "Warden");
            assert!(e["metadata"]["uid"].is_string());
            assert!(e["metadata"]["sequence"].is_u64());
            assert_eq!(e["time"].as_u64().unwrap(), 1_790_000_000_123);
            assert!(e["unmapped"]["prev"].is_string());
            let required: &[&str] = match class {
                3002 => &["user", "service"],
                3001 => &["user"],
                6003 => &["actor", "api", "src_endpoint"],
                other => panic!("unexpected class {other}"),
            };
            for k in required {
                assert!(e.get(*k).is_some(), "{k} missing in class {class}: {e}");
            }
            if class == 6003 {
                assert!(e["api"]["operation"].is_string());
            }
            classes.insert(class);
        }
        assert_eq!(classes.len(), 3);
        let by_action = |a: &str| {
            events
                .iter()
                .find(|e| e["unmapped"]["action"] == a)
                .unwrap()
                .clone()
        };
        assert_eq!(by_action("secret.write")["status_id"], 2);
        assert_eq!(by_action("auth.login")["class_uid"], 3002);
        assert_eq!(by_action("auth.login")["status_id"], 2);
        assert_eq!(by_action("token.revoke")["activity_id"], 6);
        assert_eq!(by_action("binding.create")["activity_id"], 7);
        assert_eq!(by_action("member.remove")["activity_id"], 8);
        assert_eq!(by_action("auth.password")["activity_id"], 3);
        assert_eq!(by_action("secret.destroy")["activity_id"], 4);
        assert_eq!(by_action("key.rotate")["activity_id"], 3);
        assert_eq!(by_action("shell.exec")["activity_id"], 99);
        assert_eq!(by_action("shell.exec")["status_id"], 0);
        assert_eq!(to_ocsf(b"").unwrap(), b"[]\n");
        // Stable bytes: the same entries give the same view.
        assert_eq!(to_ocsf(&sample()).unwrap(), out);
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339_nanos(0).unwrap(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_001).unwrap(),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339_nanos(253_402_300_799_999_999_999).unwrap(),
            "9999-12-31T23:59:59.999999999Z"
        );
        assert_eq!(rfc3339_nanos(253_402_300_800_000_000_000), None);
        assert_eq!(rfc3339_nanos(u128::MAX), None);
    }

    proptest! {
        #[test]
        fn times_agree_with_the_time_crate(ns in 0u128..253_402_300_800_000_000_000) {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128).unwrap();
            let want = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second(), t.nanosecond()
            );
            prop_assert_eq!(rfc3339_nanos(ns).unwrap(), want);
        }
    }
}
