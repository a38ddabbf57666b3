//! Roles: parsing role files (YAML) and their compiled form.
//!
//! Validation runs inside the `Deserialize` impls, so every error carries the
//! YAML location and the field path the parser was at.

use crate::action::{Action, Pattern};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::sync::Arc;
use warden_types::EnvMode;

/// The largest role file accepted, in bytes.
pub const MAX_ROLE_SOURCE_BYTES: usize = 64 * 1024;
/// The most rules a role may have.
pub const MAX_RULES: usize = 256;
/// The most permissions one rule may list.
pub const MAX_PERMISSIONS_PER_RULE: usize = 64;
/// The longest description accepted, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

/// Whether a rule grants or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// The rule grants its permissions.
    Allow,
    /// The rule refuses its permissions; a deny beats any allow.
    Deny,
}

impl Effect {
    /// `allow` or `deny`, as in role files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The modes in the order they are displayed.
const MODES: [EnvMode; 3] = [EnvMode::Development, EnvMode::Staging, EnvMode::Production];

pub(crate) fn mode_bit(m: EnvMode) -> u8 {
    match m {
        EnvMode::Development => 1,
        EnvMode::Staging => 2,
        EnvMode::Production => 4,
    }
}

/// A rule's `when` clause. The default (nothing set) always holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Condition {
    /// Bit set of allowed modes; 0 means "any mode, or none".
    modes: u8,
    mfa: Option<bool>,
}

impl Condition {
    /// Whether the condition holds for a resource of mode `mode` requested in
    /// a session with (`mfa = true`) or without MFA.
    ///
    /// An `env_mode` condition holds only for a resource that has a mode
    /// listed in it; a resource without a mode (an organization, a project,
    /// the root) never satisfies it.
    #[inline]
    pub fn holds(&self, mode: Option<EnvMode>, mfa: bool) -> bool {
        (self.modes == 0 || mode.is_some_and(|m| self.modes & mode_bit(m) != 0))
            && self.mfa.is_none_or(|want| want == mfa)
    }

    /// Whether there is no condition at all.
    pub fn is_always(&self) -> bool {
        self.modes == 0 && self.mfa.is_none()
    }

    /// The modes an `env_mode` condition lists (development, staging,
    /// production order), or `None` when the rule has no `env_mode`.
    pub fn env_modes(&self) -> Option<Vec<EnvMode>> {
        (self.modes != 0).then(|| {
            MODES
                .into_iter()
                .filter(|m| self.modes & mode_bit(*m) != 0)
                .collect()
        })
    }

    /// The `mfa` condition, if any: `Some(true)` only in MFA sessions,
    /// `Some(false)` only outside them.
    pub fn mfa(&self) -> Option<bool> {
        self.mfa
    }

    /// The condition in prose for deny reasons: "only when env_mode is
    /// development or staging", "only in an MFA session", or both.
    pub fn describe_requirement(&self) -> String {
        let mut out = String::with_capacity(48);
        self.push_requirement(&mut out);
        out
    }

    /// Appends [`Condition::describe_requirement`] to `out` (no formatting
    /// machinery: deny reasons are built on the request path).
    pub(crate) fn push_requirement(&self, out: &mut String) {
        if self.is_always() {
            out.push_str("always");
            return;
        }
        out.push_str("only ");
        if self.modes != 0 {
            out.push_str("when env_mode is ");
            let n = self.modes.count_ones();
            let mut written = 0;
            for m in MODES {
                if self.modes & mode_bit(m) != 0 {
                    if written > 0 {
                        out.push_str(if written + 1 == n { " or " } else { ", " });
                    }
                    out.push_str(m.as_str());
                    written += 1;
                }
            }
            if self.mfa.is_some() {
                out.push_str(" and ");
            }
        }
        match self.mfa {
            Some(true) => out.push_str("in an MFA session"),
            Some(false) => out.push_str("outside an MFA session"),
            None => {}
        }
    }
}

impl Condition {
    /// Writes the role-file form with `write_str` only (cheap into a
    /// `String` on the request path).
    pub(crate) fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        let mut sep = "";
        if self.modes != 0 {
            w.write_str("env_mode in [")?;
            let mut first = true;
            for m in MODES {
                if self.modes & mode_bit(m) != 0 {
                    if !first {
                        w.write_str(", ")?;
                    }
                    first = false;
                    w.write_str(m.as_str())?;
                }
            }
            w.write_str("]")?;
            sep = " and ";
        }
        if let Some(mfa) = self.mfa {
            w.write_str(sep)?;
            w.write_str(if mfa { "mfa is true" } else { "mfa is false" })?;
        }
        Ok(())
    }
}

/// Role-file syntax: `env_mode in [development, staging] and mfa is true`;
/// empty when there is no condition.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// One compiled rule of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub(crate) effect: Effect,
    /// Union of the patterns' masks.
    pub(crate) mask: u32,
    pub(crate) patterns: Box<[Pattern]>,
    pub(crate) when: Condition,
}

impl Rule {
    /// Allow or deny.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The permission patterns as written (`secret.read`, `secret.*`, `*`).
    pub fn permissions(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| p.text.as_str())
    }

    /// The actions the rule names, expanded from its patterns.
    pub fn actions(&self) -> impl Iterator<Item = Action> + '_ {
        Action::ALL.into_iter().filter(|a| self.mask & a.bit() != 0)
    }

    /// Whether the rule names `action`.
    pub fn matches(&self, action: Action) -> bool {
        self.mask & action.bit() != 0
    }

    /// The rule's condition.
    pub fn condition(&self) -> Condition {
        self.when
    }

    /// The first pattern that names `action` (the rule must match it).
    pub(crate) fn pattern_for(&self, action: Action) -> &str {
        self.patterns
            .iter()
            .find(|p| p.mask & action.bit() != 0)
            .map_or("", |p| p.text.as_str())
    }
}

/// `allow secret.read, secret.write when env_mode in [development, staging]`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.effect.as_str())?;
        for (i, p) in self.patterns.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            f.write_str(&p.text)?;
        }
        if !self.when.is_always() {
            write!(f, " when {}", self.when)?;
        }
        Ok(())
    }
}

/// How the shell sessions a role allows run: `session:` in a role file,
/// e.g. `session: {max_length: 8h, idle_timeout: 15m, record_input: true}`.
/// A session follows every role with a rule allowing it, combined
/// ([`SessionPolicy::and`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionPolicy {
    /// A session ends after this long (5 seconds to 24 hours; the
    /// gateway's own maximum applies otherwise, and always caps this).
    pub max_length: Option<std::time::Duration>,
    /// A session with neither input nor output for this long ends (5
    /// seconds to 24 hours).
    pub idle_timeout: Option<std::time::Duration>,
    /// Whether the session's input (keystrokes, piped stdin) is recorded
    /// besides its output.
    pub record_input: bool,
}

impl SessionPolicy {
    /// Both settings at once: the smaller of each limit (a role without one
    /// sets none), and input recorded if either asks for it.
    #[must_use]
    pub fn and(self, other: SessionPolicy) -> SessionPolicy {
        fn smaller(
            a: Option<std::time::Duration>,
            b: Option<std::time::Duration>,
        ) -> Option<std::time::Duration> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        SessionPolicy {
            max_length: smaller(self.max_length, other.max_length),
            idle_timeout: smaller(self.idle_timeout, other.idle_timeout),
            record_input: self.record_input || other.record_input,
        }
    }
}

/// The `session:` block of a role file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SessionFile {
    #[serde(default)]
    max_length: Option<SessionDuration<5>>,
    #[serde(default)]
    idle_timeout: Option<SessionDuration<5>>,
    #[serde(default)]
    record_input: bool,
}

/// A duration written `90s`, `15m` or `8h`, from `MIN` seconds to 24 hours.
struct SessionDuration<const MIN: u64>(std::time::Duration);

impl<'de, const MIN: u64> Deserialize<'de> for SessionDuration<MIN> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let secs = parse_duration(&text).filter(|s| (MIN..=86_400).contains(s));
        secs.map(|s| Self(std::time::Duration::from_secs(s)))
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "{:?} is not a duration from {MIN}s to 24h: write a number and s, m or h \
                     (90s, 15m, 8h)",
                    shown(&text)
                ))
            })
    }
}

/// `90s`, `15m`, `8h` in seconds.
fn parse_duration(text: &str) -> Option<u64> {
    let unit = match text.as_bytes().last()? {
        b's' => 1,
        b'm' => 60,
        b'h' => 3600,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// A compiled role: cheap to evaluate (bit masks), with its source kept for
/// display.
pub struct Role {
    name: Arc<str>,
    description: String,
    source: String,
    rules: Box<[Rule]>,
    session: SessionPolicy,
    /// Union of the allow rules' masks.
    pub(crate) allow_mask: u32,
    /// Union of the deny rules' masks.
    pub(crate) deny_mask: u32,
}

impl fmt::Debug for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Role")
            .field("name", &self.name)
            .field("rules", &self.permissions_summary())
            .finish_non_exhaustive()
    }
}

impl Role {
    /// Parses and validates a role file.
    ///
    /// Errors name the line, column and field (`rules[1].allow[0]`) where the
    /// parser was. Never panics, whatever the input.
    pub fn parse(yaml: &str) -> Result<Role, RoleError> {
        if yaml.len() > MAX_ROLE_SOURCE_BYTES {
            return Err(RoleError {
                line: None,
                column: None,
                field: None,
                message: format!(
                    "role file is {} bytes; the limit is {MAX_ROLE_SOURCE_BYTES} bytes (64 KiB)",
                    yaml.len()
                ),
            });
        }
        let file: RoleFile = serde_yaml_ng::from_str(yaml).map_err(RoleError::from_yaml)?;
        let rules = file.rules.0.into_boxed_slice();
        let mask_of = |effect| {
            rules
                .iter()
                .filter(|r| r.effect == effect)
                .fold(0, |m, r| m | r.mask)
        };
        let session = file.session;
        Ok(Role {
            allow_mask: mask_of(Effect::Allow),
            deny_mask: mask_of(Effect::Deny),
            name: Arc::from(file.name.0),
            description: file.description.0,
            source: yaml.to_owned(),
            rules,
            session: SessionPolicy {
                max_length: session.max_length.map(|d| d.0),
                idle_timeout: session.idle_timeout.map(|d| d.0),
                record_input: session.record_input,
            },
        })
    }

    /// A role with no rules (it grants nothing), for a built-in role that
    /// failed to load.
    pub(crate) fn empty(name: &str, description: String) -> Role {
        Role {
            name: Arc::from(name),
            description,
            source: String::new(),
            rules: Box::new([]),
            allow_mask: 0,
            deny_mask: 0,
            session: SessionPolicy::default(),
        }
    }

    /// How the shell sessions this role allows run.
    pub fn session_policy(&self) -> SessionPolicy {
        self.session
    }

    /// The role's name (`[a-z0-9][a-z0-9-]{0,62}`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as a shared string (cheap to clone into explanations).
    pub fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// The one-line description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The YAML text the role was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The rules, in file order (rule `n` of an explanation is `rules()[n - 1]`).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether any rule of the role is a deny rule. Binding such a role
    /// restricts its holder, which the management rules treat as acting on
    /// the holder (see [`crate::may_grant`]).
    pub fn has_deny_rules(&self) -> bool {
        self.deny_mask != 0
    }

    /// The actions this role's rules allow and deny (before deny beats
    /// allow) for a resource of `mode` in a session with or without MFA, as
    /// two masks. The role's bit-mask view of [`Condition::holds`], for the
    /// management rules, which compare whole permission sets.
    pub(crate) fn masks_for(&self, mode: Option<EnvMode>, mfa: bool) -> (u32, u32) {
        let (mut allow, mut deny) = (0, 0);
        for rule in self.rules.iter().filter(|r| r.when.holds(mode, mfa)) {
            match rule.effect {
                Effect::Allow => allow |= rule.mask,
                Effect::Deny => deny |= rule.mask,
            }
        }
        (allow, deny)
    }

    /// One line per rule, numbered as in explanations, e.g.
    /// `2: allow secret.read, shell.exec when env_mode in [development, staging]`.
    pub fn permissions_summary(&self) -> Vec<String> {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}: {r}", i + 1))
            .collect()
    }
}

/// Why a role file was rejected. Safe to show to whoever submitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleError {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The field path, e.g. `rules[1].allow[0]`, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl RoleError {
    fn from_yaml(err: serde_yaml_ng::Error) -> Self {
        let location = err.location();
        let mut text = err.to_string();
        if let Some(loc) = &location {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            // The location is reported in its own fields.
            text = text.replacen(&suffix, "", 1);
        }
        // serde_yaml_ng writes "PATH: MESSAGE" when it knows the path.
        let mut field = None;
        if let Some((path, message)) = text.split_once(": ")
            && !path.is_empty()
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']'))
        {
            field = Some(path.to_owned());
            text = message.to_owned();
        }
        RoleError {
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            field,
            message: text,
        }
    }
}

/// ``line 7, column 9, field `rules[1].allow[0]`: unknown permission ...``
impl fmt::Display for RoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(line) = self.line {
            write!(f, "line {line}")?;
            sep = ", ";
        }
        if let Some(column) = self.column {
            write!(f, "{sep}column {column}")?;
            sep = ", ";
        }
        if let Some(field) = &self.field {
            write!(f, "{sep}field `{field}`")?;
            sep = ", ";
        }
        if !sep.is_empty() {
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for RoleError {}

// ---------------------------------------------------------------------------
// The file format. Each type validates itself while being deserialized.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    name: RoleName,
    #[serde(default)]
    description: Description,
    rules: RuleList,
    #[serde(default)]
    session: SessionFile,
}

/// Whether `s` is a valid role name: `[a-z0-9][a-z0-9-]{0,62}`.
pub fn valid_role_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A visitor for a string scalar that validates it while the parser is on
/// it, so errors carry the scalar's location and field path.
struct Validated<T> {
    expecting: &'static str,
    check: fn(&str) -> Result<T, String>,
}

impl<'de, T> Visitor<'de> for Validated<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.check)(v).map_err(E::custom)
    }
}

struct RoleName(String);

impl<'de> Deserialize<'de> for RoleName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Validated {
            expecting: "a role name",
            check: |s| {
                if valid_role_name(s) {
                    Ok(RoleName(s.to_owned()))
                } else {
                    Err(format!(
                        "invalid role name `{}`: names are 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
                        shown(s)
                    ))
                }
            },
        })
    }
}

#[derive(Default)]
struct Description(String);

impl<'de> Deserialize<'de> for Description {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Validated {
            expecting: "a one-line description",
            check: |s| {
                if s.len() > MAX_DESCRIPTION_BYTES {
                    return Err(format!(
                        "description is {} bytes; the limit is {MAX_DESCRIPTION_BYTES}",
                        s.len()
                    ));
                }
                if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                    return Err("description must not contain control characters".to_owned());
                }
                Ok(Description(s.trim_end().to_owned()))
            },
        })
    }
}

struct RuleList(Vec<Rule>);

impl<'de> Deserialize<'de> for RuleList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RuleList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of rules")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RuleList, A::Error> {
                let mut rules = Vec::new();
                while let Some(RuleSpec(rule)) = seq.next_element()? {
                    if rules.len() == MAX_RULES {
                        return Err(de::Error::custom(format!(
                            "too many rules: a role has at most {MAX_RULES}"
                        )));
                    }
                    rules.push(rule);
                }
                if rules.is_empty() {
                    return Err(de::Error::custom("a role needs at least one rule"));
                }
                Ok(RuleList(rules))
            }
        }
        d.deserialize_seq(V)
    }
}

struct RuleSpec(Rule);

impl<'de> Deserialize<'de> for RuleSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Field {
            Allow,
            Deny,
            When,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RuleSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rule: a map with `allow` or `deny`, and optionally `when`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RuleSpec, A::Error> {
                let mut perms: Option<(Effect, PatternList)> = None;
                let mut when: Option<When> = None;
                while let Some(key) = map.next_key::<Field>()? {
                    match key {
                        Field::Allow | Field::Deny => {
                            let effect = if matches!(key, Field::Allow) {
                                Effect::Allow
                            } else {
                                Effect::Deny
                            };
                            if perms.is_some() {
                                return Err(de::Error::custom(
                                    "a rule has exactly one of `allow` or `deny`",
                                ));
                            }
                            perms = Some((effect, map.next_value()?));
                        }
                        Field::When => {
                            if when.is_some() {
                                return Err(de::Error::duplicate_field("when"));
                            }
                            when = Some(map.next_value()?);
                        }
                    }
                }
                let Some((effect, PatternList(patterns))) = perms else {
                    return Err(de::Error::custom(
                        "a rule needs `allow` or `deny` (a list of permissions)",
                    ));
                };
                let mask = patterns.iter().fold(0, |m, p| m | p.mask);
                Ok(RuleSpec(Rule {
                    effect,
                    mask,
                    patterns: patterns.into_boxed_slice(),
                    when: when.map_or_else(Condition::default, |w| w.0),
                }))
            }
        }
        d.deserialize_map(V)
    }
}

struct PatternList(Vec<Pattern>);

impl<'de> Deserialize<'de> for PatternList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PatternList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of permissions such as [secret.read, deploy.*]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PatternList, A::Error> {
                let mut out = Vec::new();
                while let Some(PatternSpec(p)) = seq.next_element()? {
                    if out.len() == MAX_PERMISSIONS_PER_RULE {
                        return Err(de::Error::custom(format!(
                            "too many permissions: a rule lists at most {MAX_PERMISSIONS_PER_RULE}"
                        )));
                    }
                    out.push(p);
                }
                if out.is_empty() {
                    return Err(de::Error::custom(
                        "the permission list is empty: name at least one permission",
                    ));
                }
                Ok(PatternList(out))
            }
        }
        d.deserialize_seq(V)
    }
}

struct PatternSpec(Pattern);

impl<'de> Deserialize<'de> for PatternSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Validated {
            expecting: "a permission such as secret.read, secret.* or *",
            check: |s| {
                Pattern::parse(s)
                    .map(PatternSpec)
                    .map_err(|e| e.to_string())
            },
        })
    }
}

struct When(Condition);

impl<'de> Deserialize<'de> for When {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Field {
            EnvMode,
            Mfa,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = When;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a condition: a map with `env_mode` and/or `mfa`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<When, A::Error> {
                let mut modes: Option<ModeList> = None;
                let mut mfa: Option<bool> = None;
                while let Some(key) = map.next_key::<Field>()? {
                    match key {
                        Field::EnvMode if modes.is_some() => {
                            return Err(de::Error::duplicate_field("env_mode"));
                        }
                        Field::EnvMode => modes = Some(map.next_value()?),
                        Field::Mfa if mfa.is_some() => {
                            return Err(de::Error::duplicate_field("mfa"));
                        }
                        Field::Mfa => mfa = Some(map.next_value()?),
                    }
                }
                if modes.is_none() && mfa.is_none() {
                    return Err(de::Error::custom(
                        "`when` needs `env_mode` and/or `mfa` (or leave it out)",
                    ));
                }
                Ok(When(Condition {
                    modes: modes.map_or(0, |m| m.0),
                    mfa,
                }))
            }
        }
        d.deserialize_map(V)
    }
}

struct ModeList(u8);

impl<'de> Deserialize<'de> for ModeList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ModeList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of environment modes (production, staging, development)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ModeList, A::Error> {
                let mut modes = 0u8;
                let mut n = 0usize;
                while let Some(ModeSpec(m)) = seq.next_element()? {
                    n += 1;
                    if n > MODES.len() {
                        return Err(de::Error::custom(
                            "env_mode lists at most the three modes, once each",
                        ));
                    }
                    modes |= mode_bit(m);
                }
                if modes == 0 {
                    return Err(de::Error::custom(
                        "env_mode is empty: list at least one of production, staging, development",
                    ));
                }
                Ok(ModeList(modes))
            }
        }
        d.deserialize_seq(V)
    }
}

struct ModeSpec(EnvMode);

impl<'de> Deserialize<'de> for ModeSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Validated {
            expecting: "an environment mode (production, staging, development)",
            check: |s| {
                s.parse::<EnvMode>().map(ModeSpec).map_err(|_| {
                    format!(
                        "unknown environment mode `{}` (known: production, staging, development)",
                        shown(s)
                    )
                })
            },
        })
    }
}
