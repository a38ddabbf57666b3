//! What a service runs: [`ServiceRef`] and [`WorkloadSpec`], parsed and
//! bounded at the edge.
//!
//! A spec holds no secret: values reach a pod only as its workload
//! credential file (see the crate docs), so a spec may be stored, logged and
//! shipped to an agent as it is.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use warden_types::{ScopeKind, ScopePath};

use crate::RuntimeError;

/// Largest YAML document [`WorkloadSpec::from_yaml`] reads.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;
/// Most elements in `command`.
pub const MAX_COMMAND_ELEMENTS: usize = 64;
/// Most elements in `args`.
pub const MAX_ARGS: usize = 256;
/// Longest single argument, in bytes.
pub const MAX_ARG_BYTES: usize = 4096;
/// Largest `command` or `args` list, in bytes (sum of its elements).
pub const MAX_ARGV_BYTES: usize = 64 * 1024;
/// Most environment variables in a spec.
pub const MAX_ENV_VARS: usize = 128;
/// Longest environment value, in bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 4096;
/// Largest environment, in bytes (names and values).
pub const MAX_ENV_BYTES: usize = 64 * 1024;
/// Most replicas of one service.
pub const MAX_REPLICAS: u32 = 64;
/// Largest `min_ready_seconds`.
pub const MAX_MIN_READY_SECONDS: u32 = 600;
/// Smallest memory limit (the pod's init and the workload must fit).
pub const MIN_MEMORY_BYTES: u64 = 16 * 1024 * 1024;
/// Largest memory limit.
pub const MAX_MEMORY_BYTES: u64 = 1 << 40;
/// Smallest CPU limit, in millicores.
pub const MIN_CPU_MILLIS: u32 = 10;
/// Largest CPU limit, in millicores (256 cores).
pub const MAX_CPU_MILLIS: u32 = 256_000;
/// Smallest pids limit (init, workload, an exec session and its helper).
pub const MIN_PIDS: u32 = 8;
/// Largest pids limit.
pub const MAX_PIDS: u32 = 4_194_304;
/// Longest image reference.
pub const MAX_IMAGE_BYTES: usize = 512;

/// A service: `org/project/env/service`, validated by
/// [`ScopePath::parse_kind`] with [`ScopeKind::Service`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef(ScopePath);

impl ServiceRef {
    /// Parses `org/project/env/service`.
    pub fn parse(s: &str) -> Result<Self, RuntimeError> {
        Ok(Self(ScopePath::parse_kind(s, ScopeKind::Service)?))
    }

    /// Wraps a path that must name a service.
    pub fn from_path(path: ScopePath) -> Result<Self, RuntimeError> {
        if path.kind() == ScopeKind::Service {
            Ok(Self(path))
        } else {
            Self::parse(path.as_str())
        }
    }

    /// The service's scope path.
    pub fn path(&self) -> &ScopePath {
        &self.0
    }

    /// `org/project/env/service`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The last segment: the service's own name.
    pub fn name(&self) -> &str {
        self.0.segments().last().unwrap_or_default()
    }

    /// The environment the service lives in.
    pub fn environment(&self) -> ScopePath {
        // A service path always has a parent.
        self.0.parent().unwrap_or_else(|| self.0.clone())
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceRef({})", self.as_str())
    }
}

impl Serialize for ServiceRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ServiceRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(de::Error::custom)
    }
}

/// What to do when a pod's workload exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Restart whatever the exit status (the default, as for a Deployment).
    #[default]
    #[serde(alias = "always")]
    Always,
    /// Restart only after a non-zero exit or a signal.
    #[serde(alias = "on-failure", alias = "on_failure")]
    OnFailure,
    /// Never restart; the pod ends Succeeded or Failed.
    #[serde(alias = "never")]
    Never,
}

/// How a pod's secrets (delivered by `warden-injector`) follow a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnChange {
    /// Each pod's wrapper restarts its command in place with the new
    /// values (the default): every pod at once, within a second.
    #[default]
    Restart,
    /// The pods keep the values they started with; the control plane rolls
    /// the service, one pod at a time, each new pod given the new values
    /// and running before the next old one stops, and reverts to the
    /// previous values if a new pod does not start.
    Rollout,
}

/// How `warden-injector` hands a pod's workload its secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Deliver {
    /// As environment variables (the default).
    #[default]
    Env,
    /// In a sealed memfd the workload inherits (`$WARDEN_SECRETS_FD`), so
    /// the values are not in its `/proc/PID/environ`.
    Fd,
}

/// How a pod's secrets are delivered and kept current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSpec {
    /// How the workload gets them.
    #[serde(default)]
    pub deliver: Deliver,
    /// What a rotation does to the pods.
    #[serde(default)]
    pub on_change: OnChange,
}

impl SecretsSpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The user and group a pod's processes run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id (also the only group: supplementary groups are cleared).
    pub gid: u32,
}

impl<'de> Deserialize<'de> for RunAs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            uid: u32,
            gid: Option<u32>,
        }
        let raw = Raw::deserialize(d)?;
        if raw.uid == u32::MAX || raw.gid == Some(u32::MAX) {
            return Err(de::Error::custom("uid and gid must be below 4294967295"));
        }
        Ok(Self {
            uid: raw.uid,
            gid: raw.gid.unwrap_or(raw.uid),
        })
    }
}

/// Resource limits, enforced by the pod's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit in bytes (YAML: a byte count or `64Mi`, `1Gi`, `500M`).
    #[serde(
        default,
        deserialize_with = "de_memory",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<u64>,
    /// CPU limit in millicores (YAML: `500m`, `0.5` or `2` cores).
    #[serde(
        default,
        deserialize_with = "de_cpu",
        serialize_with = "ser_cpu",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu: Option<u32>,
    /// Most processes (and threads) in the pod.
    #[serde(
        default,
        deserialize_with = "de_pids",
        skip_serializing_if = "Option::is_none"
    )]
    pub pids: Option<u32>,
}

/// A workload: what each pod of a service runs and how many pods there are.
///
/// Built only through [`WorkloadSpec::from_yaml`], [`WorkloadSpec::new`] and
/// its `with_*` methods, or deserialization, all of which enforce the limits
/// above; so a `WorkloadSpec` in hand is always within them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    #[serde(deserialize_with = "de_command")]
    command: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de_args",
        skip_serializing_if = "Vec::is_empty"
    )]
    args: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de_image",
        skip_serializing_if = "Option::is_none"
    )]
    image: Option<String>,
    #[serde(default = "one", deserialize_with = "de_replicas")]
    replicas: u32,
    #[serde(
        default,
        deserialize_with = "de_min_ready",
        skip_serializing_if = "is_zero"
    )]
    min_ready_seconds: u32,
    #[serde(
        default,
        deserialize_with = "de_env",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    env: BTreeMap<String, String>,
    #[serde(default)]
    resources: Resources,
    #[serde(default)]
    restart: RestartPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_as: Option<RunAs>,
    // Left out when default, so templates hashed before it existed keep
    // their hash.
    #[serde(default, skip_serializing_if = "SecretsSpec::is_default")]
    secrets: SecretsSpec,
}

fn one() -> u32 {
    1
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl WorkloadSpec {
    /// A spec running `argv` (the first element is the program), one
    /// replica, no limits, restart Always.
    pub fn new<I, S>(argv: I) -> Result<Self, RuntimeError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let command = check_command(argv.into_iter().map(Into::into).collect())
            .map_err(|m| RuntimeError::spec(format!("command: {m}")))?;
        Ok(Self {
            command,
            args: Vec::new(),
            image: None,
            replicas: 1,
            min_ready_seconds: 0,
            env: BTreeMap::new(),
            resources: Resources::default(),
            restart: RestartPolicy::Always,
            run_as: None,
            secrets: SecretsSpec::default(),
        })
    }

    /// Parses a YAML document. Errors name the field and its line.
    ///
    /// ```yaml
    /// command: ["/bin/sh", "-c", "exec my-server"]
    /// args: ["--port", "8080"]
    /// replicas: 2
    /// min_ready_seconds: 5
    /// env: { RUST_LOG: info, PORT: 8080 }
    /// resources: { memory: 128Mi, cpu: 500m, pids: 256 }
    /// restart: OnFailure
    /// run_as: { uid: 1000, gid: 1000 }
    /// secrets: { deliver: fd, on_change: rollout }
    /// ```
    pub fn from_yaml(text: &str) -> Result<Self, RuntimeError> {
        if text.len() > MAX_SPEC_BYTES {
            return Err(RuntimeError::spec(format!(
                "document is {} bytes; the limit is {MAX_SPEC_BYTES}",
                text.len()
            )));
        }
        check_flow_nesting(text)?;
        let spec: Self = serde_yaml_ng::from_str(text).map_err(|e| {
            let loc = e.location();
            // The location is reported in its own fields; the message starts
            // with the field's path (e.g. `resources.memory: ...`).
            let message = strip_location(&e.to_string());
            RuntimeError::InvalidSpec {
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
                message,
            }
        })?;
        // A rollout can only tell a pod that fails on its new secrets from
        // one that started if it waits for the workload to stay up
        // (review 14, F4): at once, the wrapper alone counts as started.
        if spec.secrets.on_change == OnChange::Rollout && spec.min_ready_seconds == 0 {
            return Err(RuntimeError::spec(
                "secrets: {on_change: rollout} needs min_ready_seconds of at least 1: a new pod \
                 counts as started only once its workload has run that long without exiting",
            ));
        }
        Ok(spec)
    }

    /// Sets the arguments appended to `command`.
    pub fn with_args<I, S>(mut self, args: I) -> Result<Self, RuntimeError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = check_argv(args.into_iter().map(Into::into).collect(), MAX_ARGS)
            .map_err(|m| RuntimeError::spec(format!("args: {m}")))?;
        Ok(self)
    }

    /// Sets the replica count.
    pub fn with_replicas(mut self, replicas: u32) -> Result<Self, RuntimeError> {
        self.replicas =
            check_replicas(replicas).map_err(|m| RuntimeError::spec(format!("replicas: {m}")))?;
        Ok(self)
    }

    /// Adds a (non-secret) environment variable.
    pub fn with_env(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, RuntimeError> {
        let mut env = std::mem::take(&mut self.env);
        env.insert(name.into(), value.into());
        self.env = check_env(env).map_err(|m| RuntimeError::spec(format!("env: {m}")))?;
        Ok(self)
    }

    /// Sets the memory limit in bytes.
    pub fn with_memory(mut self, bytes: u64) -> Result<Self, RuntimeError> {
        self.resources.memory = Some(
            check_memory(bytes)
                .map_err(|m| RuntimeError::spec(format!("resources.memory: {m}")))?,
        );
        Ok(self)
    }

    /// Sets the CPU limit in millicores.
    pub fn with_cpu_millis(mut self, millis: u32) -> Result<Self, RuntimeError> {
        self.resources.cpu =
            Some(check_cpu(millis).map_err(|m| RuntimeError::spec(format!("resources.cpu: {m}")))?);
        Ok(self)
    }

    /// Sets the pids limit.
    pub fn with_pids(mut self, pids: u32) -> Result<Self, RuntimeError> {
        self.resources.pids =
            Some(check_pids(pids).map_err(|m| RuntimeError::spec(format!("resources.pids: {m}")))?);
        Ok(self)
    }

    /// Sets the restart policy.
    pub fn with_restart(mut self, restart: RestartPolicy) -> Self {
        self.restart = restart;
        self
    }

    /// Runs the pod's processes as `uid:gid`.
    pub fn with_run_as(mut self, uid: u32, gid: u32) -> Self {
        self.run_as = Some(RunAs { uid, gid });
        self
    }

    /// Sets the container image (used by the Kubernetes backend; the local
    /// backend runs host binaries and ignores it).
    pub fn with_image(mut self, image: impl Into<String>) -> Result<Self, RuntimeError> {
        self.image =
            Some(check_image(image.into()).map_err(|m| RuntimeError::spec(format!("image: {m}")))?);
        Ok(self)
    }

    /// The program and its arguments: `command` followed by `args`.
    pub fn argv(&self) -> impl Iterator<Item = &str> {
        self.command.iter().chain(&self.args).map(String::as_str)
    }

    /// The image, if any.
    pub fn image(&self) -> Option<&str> {
        self.image.as_deref()
    }

    /// Desired pod count.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// How long a new pod's workload must have run, without exiting, to
    /// count as started in a rollout (Kubernetes' `minReadySeconds`); a pod
    /// that fails on its new configuration within it stalls the rollout.
    pub fn min_ready(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.min_ready_seconds))
    }

    /// The non-secret environment.
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// Resource limits.
    pub fn resources(&self) -> Resources {
        self.resources
    }

    /// Restart policy.
    pub fn restart(&self) -> RestartPolicy {
        self.restart
    }

    /// The user and group to run as, if set.
    pub fn run_as(&self) -> Option<RunAs> {
        self.run_as
    }

    /// How the pods' secrets follow a rotation.
    pub fn secrets(&self) -> SecretsSpec {
        self.secrets
    }

    /// A stable digest of everything that shapes a pod (all but `replicas`
    /// and `min_ready_seconds`): pods made from an older template are
    /// replaced on `apply`.
    pub fn template_hash(&self) -> String {
        let mut template = self.clone();
        template.replicas = 0;
        template.min_ready_seconds = 0;
        // Serializing plain strings, numbers and maps cannot fail.
        let bytes = serde_json::to_vec(&template).unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

// ---- validation shared by the builder and deserialization ----

/// Deepest `[`/`{` nesting a spec may have. A spec needs two or three; the
/// YAML parser's cost grows faster than linearly with flow nesting (a
/// 64 KiB document of `[` took seconds), so deeper ones are refused before
/// parsing.
pub const MAX_FLOW_NESTING: usize = 16;

/// Refuses flow collections nested deeper than [`MAX_FLOW_NESTING`],
/// naming the line. Brackets inside quoted scalars and comments do not
/// count.
fn check_flow_nesting(text: &str) -> Result<(), RuntimeError> {
    let (mut depth, mut line) = (0usize, 1usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut prev = '\n';
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            comment = false;
        } else if comment {
        } else if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else {
            match c {
                // Only where a scalar starts (`don't` is a plain scalar).
                '"' | '\'' if prev.is_whitespace() || "[{,:-".contains(prev) => quote = Some(c),
                '#' if prev.is_whitespace() => comment = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_NESTING {
                        return Err(RuntimeError::InvalidSpec {
                            line: Some(line),
                            column: None,
                            message: format!(
                                "collections nested deeper than {MAX_FLOW_NESTING} levels"
                            ),
                        });
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = c;
    }
    Ok(())
}

fn check_argv(argv: Vec<String>, max: usize) -> Result<Vec<String>, String> {
    if argv.len() > max {
        return Err(format!("{} elements; the limit is {max}", argv.len()));
    }
    let mut total = 0;
    for (i, a) in argv.iter().enumerate() {
        if a.len() > MAX_ARG_BYTES {
            return Err(format!(
                "element {i} is {} bytes; the limit is {MAX_ARG_BYTES}",
                a.len()
            ));
        }
        if a.contains('\0') {
            return Err(format!("element {i} contains a NUL byte"));
        }
        total += a.len();
    }
    if total > MAX_ARGV_BYTES {
        return Err(format!(
            "{total} bytes in all; the limit is {MAX_ARGV_BYTES}"
        ));
    }
    Ok(argv)
}

fn check_command(argv: Vec<String>) -> Result<Vec<String>, String> {
    let argv = check_argv(argv, MAX_COMMAND_ELEMENTS)?;
    match argv.first() {
        None => Err("must name a program".into()),
        Some(p) if p.is_empty() => Err("the program name is empty".into()),
        Some(_) => Ok(argv),
    }
}

fn check_replicas(n: u32) -> Result<u32, String> {
    if n > MAX_REPLICAS {
        Err(format!("{n} is above the limit of {MAX_REPLICAS}"))
    } else {
        Ok(n)
    }
}

fn check_min_ready(n: u32) -> Result<u32, String> {
    if n > MAX_MIN_READY_SECONDS {
        Err(format!("{n} is above the limit of {MAX_MIN_READY_SECONDS}"))
    } else {
        Ok(n)
    }
}

fn check_memory(n: u64) -> Result<u64, String> {
    if !(MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&n) {
        Err(format!(
            "{n} bytes is outside {MIN_MEMORY_BYTES}..={MAX_MEMORY_BYTES} (16Mi to 1Ti)"
        ))
    } else {
        Ok(n)
    }
}

fn check_cpu(m: u32) -> Result<u32, String> {
    if !(MIN_CPU_MILLIS..=MAX_CPU_MILLIS).contains(&m) {
        Err(format!(
            "{m}m is outside {MIN_CPU_MILLIS}m..={MAX_CPU_MILLIS}m"
        ))
    } else {
        Ok(m)
    }
}

fn check_pids(n: u32) -> Result<u32, String> {
    if !(MIN_PIDS..=MAX_PIDS).contains(&n) {
        Err(format!("{n} is outside {MIN_PIDS}..={MAX_PIDS}"))
    } else {
        Ok(n)
    }
}

fn check_image(s: String) -> Result<String, String> {
    if s.is_empty() || s.len() > MAX_IMAGE_BYTES {
        return Err(format!("must be 1 to {MAX_IMAGE_BYTES} bytes"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    Ok(s)
}

/// Whether `name` may be set in a pod's environment: a portable variable
/// name, not in the `WARDEN_` namespace the runtime sets itself.
pub(crate) fn valid_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn check_env(env: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    if env.len() > MAX_ENV_VARS {
        return Err(format!(
            "{} variables; the limit is {MAX_ENV_VARS}",
            env.len()
        ));
    }
    let mut total = 0;
    for (k, v) in &env {
        let shown: String = k.chars().take(64).collect();
        if !valid_env_name(k) {
            return Err(format!(
                "{shown:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*, at most 128)"
            ));
        }
        if k.starts_with("WARDEN_") {
            return Err(format!("{shown}: the WARDEN_ prefix is reserved"));
        }
        if v.len() > MAX_ENV_VALUE_BYTES {
            return Err(format!(
                "{shown}: the value is {} bytes; the limit is {MAX_ENV_VALUE_BYTES}",
                v.len()
            ));
        }
        if v.contains('\0') {
            return Err(format!("{shown}: the value contains a NUL byte"));
        }
        total += k.len() + v.len();
    }
    if total > MAX_ENV_BYTES {
        return Err(format!(
            "{total} bytes in all; the limit is {MAX_ENV_BYTES}"
        ));
    }
    Ok(env)
}

// ---- deserializers ----
//
// Validation runs inside the visitors: serde_yaml gives an error raised
// there the position and path (`resources.memory`) of the value itself;
// one raised after `deserialize` returns would point at the enclosing
// mapping instead.

/// A string or a list of strings (`command: /bin/app` or `command: [sh, -c]`),
/// checked by `check` before the visitor returns.
struct StringList {
    check: fn(Vec<String>) -> Result<Vec<String>, String>,
}

impl<'de> Visitor<'de> for StringList {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        (self.check)(vec![v.to_owned()]).map_err(E::custom)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element::<String>()? {
            // Bound memory while reading, before the limit check.
            if out.len() > MAX_ARGS {
                return Err(de::Error::custom(format!("more than {MAX_ARGS} elements")));
            }
            out.push(s);
        }
        (self.check)(out).map_err(de::Error::custom)
    }
}

fn de_command<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(StringList {
        check: check_command,
    })
}

fn de_args<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(StringList {
        check: |v| check_argv(v, MAX_ARGS),
    })
}

fn de_image<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an image reference")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            check_image(v.to_owned()).map_err(E::custom)
        }
    }
    d.deserialize_str(V).map(Some)
}

/// A non-negative integer checked by `check`.
struct Count {
    what: &'static str,
    check: fn(u32) -> Result<u32, String>,
}

impl Visitor<'_> for Count {
    type Value = u32;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.what)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        let n = u32::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))?;
        (self.check)(n).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom("must not be negative")),
        }
    }
}

fn de_replicas<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    d.deserialize_u64(Count {
        what: "a replica count",
        check: check_replicas,
    })
}

fn de_min_ready<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    d.deserialize_u64(Count {
        what: "a number of seconds",
        check: check_min_ready,
    })
}

fn de_pids<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    d.deserialize_u64(Count {
        what: "a process count",
        check: check_pids,
    })
    .map(Some)
}

/// A YAML scalar as text: strings, integers, floats and booleans are all
/// accepted as environment values (`PORT: 8080`).
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

fn de_env<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of variable names to values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, Scalar>()? {
                if out.len() >= MAX_ENV_VARS {
                    return Err(de::Error::custom(format!(
                        "more than {MAX_ENV_VARS} variables"
                    )));
                }
                if out.insert(k.clone(), v.0).is_some() {
                    return Err(de::Error::custom(format!("{k} is set twice")));
                }
            }
            check_env(out).map_err(de::Error::custom)
        }
    }
    d.deserialize_map(V)
}

/// Parses `64Mi`, `1Gi`, `500M`, `1024` (bytes).
pub(crate) fn parse_memory(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count such as 67108864, 64Mi or 1Gi"))?;
    let mult: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} (use Ki, Mi, Gi, Ti, K, M, G or T)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses `500m` (millicores), `0.5` or `2` (cores).
pub(crate) fn parse_cpu(s: &str) -> Result<u32, String> {
    let s = s.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m
            .parse::<u32>()
            .map_err(|_| format!("{s:?} is not a millicore count such as 500m"));
    }
    let cores: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a CPU quantity such as 500m, 0.5 or 2"))?;
    cores_to_millis(cores)
}

fn cores_to_millis(cores: f64) -> Result<u32, String> {
    let millis = (cores * 1000.0).round();
    if !millis.is_finite() || !(0.0..=f64::from(u32::MAX)).contains(&millis) {
        return Err(format!("{cores} cores is out of range"));
    }
    // In range and rounded, so the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(millis as u32)
}

struct MemoryQuantity;

impl Visitor<'_> for MemoryQuantity {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte count or a quantity such as 64Mi")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        check_memory(v).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        let v = u64::try_from(v).map_err(|_| E::custom("must not be negative"))?;
        self.visit_u64(v)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<u64, E> {
        Err(E::custom("must be a whole number of bytes or e.g. 64Mi"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse_memory(v).and_then(check_memory).map_err(E::custom)
    }
}

fn de_memory<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(MemoryQuantity).map(Some)
}

struct CpuQuantity;

impl Visitor<'_> for CpuQuantity {
    type Value = u32;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a CPU quantity such as 500m, 0.5 or 2")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        let millis = u32::try_from(v)
            .ok()
            .and_then(|n| n.checked_mul(1000))
            .ok_or_else(|| E::custom("too many cores"))?;
        check_cpu(millis).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        let v = u64::try_from(v).map_err(|_| E::custom("must not be negative"))?;
        self.visit_u64(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u32, E> {
        cores_to_millis(v).and_then(check_cpu).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
        parse_cpu(v).and_then(check_cpu).map_err(E::custom)
    }
}

fn de_cpu<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    d.deserialize_any(CpuQuantity).map(Some)
}

fn ser_cpu<S: Serializer>(cpu: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match cpu {
        Some(m) => s.serialize_str(&format!("{m}m")),
        None => s.serialize_none(),
    }
}

/// Removes serde_yaml's " at line L column C" from a message.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i)
            if msg[i + 9..]
                .chars()
                .all(|c| c.is_ascii_digit() || c == ' ' || c.is_ascii_lowercase()) =>
        {
            msg[..i].to_owned()
        }
        _ => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> (Option<usize>, String) {
        match WorkloadSpec::from_yaml(yaml).unwrap_err() {
            RuntimeError::InvalidSpec { line, message, .. } => (line, message),
            other => panic!("unexpected error {other:?}"),
        }
    }

    /// Deep flow nesting is refused before the parser sees it, with the
    /// line; brackets in quoted scalars and comments do not count, and an
    /// apostrophe inside a plain scalar does not hide what follows.
    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let deep = format!("command: {}{}\n", "[".repeat(32000), "]".repeat(32000));
        let (line, message) = err(&format!("replicas: 1\n{deep}"));
        assert_eq!(line, Some(2));
        assert!(message.contains("nested deeper"), "{message}");
        let hidden = format!("command: [don't, {}x{}]\n", "[".repeat(20), "]".repeat(20));
        assert!(err(&hidden).1.contains("nested deeper"));
        let quoted = format!(
            "command: [sh, -c, '{}', \"{}\"] # {}\n",
            "[".repeat(40),
            "{".repeat(40),
            "[".repeat(40)
        );
        assert!(WorkloadSpec::from_yaml(&quoted).is_ok());
    }

    #[test]
    fn full_spec_parses() {
        let spec = WorkloadSpec::from_yaml(
            "command: [/bin/sh, -c]\nargs: ['echo hi']\nreplicas: 3\nenv: {A: x, PORT: 8080, ON: true}\n\
             resources: {memory: 64Mi, cpu: 500m, pids: 64}\nrestart: OnFailure\nrun_as: {uid: 1000}\n\
             min_ready_seconds: 5\nsecrets: {deliver: fd, on_change: rollout}\n",
        )
        .unwrap();
        assert_eq!(spec.min_ready(), std::time::Duration::from_secs(5));
        assert_eq!(spec.secrets().on_change, OnChange::Rollout);
        assert_eq!(spec.secrets().deliver, Deliver::Fd);
        assert_eq!(
            spec.argv().collect::<Vec<_>>(),
            ["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(spec.replicas(), 3);
        assert_eq!(spec.env()["PORT"], "8080");
        assert_eq!(spec.env()["ON"], "true");
        assert_eq!(spec.resources().memory, Some(64 << 20));
        assert_eq!(spec.resources().cpu, Some(500));
        assert_eq!(spec.resources().pids, Some(64));
        assert_eq!(spec.restart(), RestartPolicy::OnFailure);
        assert_eq!(
            spec.run_as(),
            Some(RunAs {
                uid: 1000,
                gid: 1000
            })
        );
        // Round trip through JSON (the agent link and the state file).
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<WorkloadSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn command_may_be_a_string_and_cpu_may_be_cores() {
        let spec = WorkloadSpec::from_yaml("command: /bin/true\nresources: {cpu: 1.5}\n").unwrap();
        assert_eq!(spec.argv().collect::<Vec<_>>(), ["/bin/true"]);
        assert_eq!(spec.resources().cpu, Some(1500));
        assert_eq!(spec.replicas(), 1);
    }

    #[test]
    fn malformed_yaml_names_field_and_line() {
        let (line, msg) = err("command: [sleep, '1']\nreplicas: lots\n");
        assert_eq!(line, Some(2), "{msg}");
        assert!(msg.contains("replicas"), "{msg}");

        let (line, msg) = err("command: [sleep]\nresources:\n  memory: 12Qi\n");
        assert_eq!(line, Some(3), "{msg}");
        assert!(
            msg.contains("resources.memory") && msg.contains("unit"),
            "{msg}"
        );

        let (line, msg) = err("command: [sleep]\nrestart: Sometimes\n");
        assert_eq!(line, Some(2), "{msg}");
        assert!(msg.contains("restart"), "{msg}");

        let (line, msg) = err("command: [sleep]\nreplicaz: 2\n");
        assert_eq!(line, Some(2), "{msg}");
        assert!(msg.contains("replicaz"), "{msg}");

        let (_, msg) = err("replicas: 2\n");
        assert!(msg.contains("command"), "{msg}");

        let (line, msg) = err("command: []\n");
        assert_eq!(line, Some(1), "{msg}");
        assert!(msg.contains("command") && msg.contains("program"), "{msg}");

        let (line, msg) = err("command: [x]\nenv:\n  GOOD: 1\n  WARDEN_X: y\n");
        assert_eq!(line, Some(3), "{msg}");
        assert!(
            msg.contains("env: WARDEN_X") && msg.contains("reserved"),
            "{msg}"
        );

        let (line, msg) = err("command: [x]\nresources: {memory: 1Mi}\n");
        assert_eq!(line, Some(2), "{msg}");
        assert!(msg.contains("resources.memory"), "{msg}");

        let (line, msg) = err("command: [x]\nrun_as: {uid: -1}\n");
        assert_eq!(line, Some(2), "{msg}");
        assert!(msg.contains("run_as.uid"), "{msg}");
    }

    #[test]
    fn oversized_argv_and_env_are_refused() {
        let many: Vec<String> = (0..MAX_ARGS + 1).map(|i| i.to_string()).collect();
        let yaml = format!("command: [x]\nargs: {many:?}\n");
        let (_, msg) = err(&yaml);
        assert!(msg.contains("args"), "{msg}");

        let long = "a".repeat(MAX_ARG_BYTES + 1);
        assert!(WorkloadSpec::new([long.as_str()]).is_err());

        let mut yaml = String::from("command: [x]\nenv:\n");
        for i in 0..=MAX_ENV_VARS {
            yaml.push_str(&format!("  V{i}: x\n"));
        }
        let (_, msg) = err(&yaml);
        assert!(msg.contains("env") && msg.contains("variables"), "{msg}");

        let big = format!("command: [x]\nargs: ['{}']\n", "a".repeat(MAX_SPEC_BYTES));
        let (_, msg) = err(&big);
        assert!(msg.contains("limit"), "{msg}");

        assert!(
            WorkloadSpec::new(["x"])
                .unwrap()
                .with_replicas(MAX_REPLICAS + 1)
                .is_err()
        );
        assert!(
            WorkloadSpec::new(["x"])
                .unwrap()
                .with_env("A=B", "x")
                .is_err()
        );
        assert!(WorkloadSpec::new(["x"]).unwrap().with_pids(2).is_err());
    }

    #[test]
    fn template_hash_ignores_replicas_and_min_ready_only() {
        let a = WorkloadSpec::new(["sleep", "1"]).unwrap();
        let b = a.clone().with_replicas(5).unwrap();
        let c = a.clone().with_env("X", "1").unwrap();
        assert_eq!(a.template_hash(), b.template_hash());
        assert_ne!(a.template_hash(), c.template_hash());
        let spec = |extra: &str| {
            WorkloadSpec::from_yaml(&format!("command: [sleep, '1']\n{extra}"))
                .unwrap()
                .template_hash()
        };
        assert_eq!(spec(""), a.template_hash());
        assert_eq!(spec("min_ready_seconds: 30\n"), a.template_hash());
        // The default rotation leaves the hash of specs from before it.
        assert_eq!(spec("secrets: {on_change: restart}\n"), a.template_hash());
        assert_ne!(
            spec("secrets: {on_change: rollout}\nmin_ready_seconds: 1\n"),
            a.template_hash()
        );
        let (_, m) = err("command: [x]\nsecrets: {on_change: rollout}\n");
        assert!(m.contains("needs min_ready_seconds"), "{m}");
        let (_, m) = err("command: [x]\nmin_ready_seconds: 601\n");
        assert!(m.contains("above the limit of 600"), "{m}");
        let (_, m) = err("command: [x]\nsecrets: {on_change: sometimes}\n");
        assert!(m.contains("unknown variant"), "{m}");
    }

    #[test]
    fn service_refs_are_four_segments() {
        assert!(ServiceRef::parse("acme/shop/prod/api").is_ok());
        assert!(ServiceRef::parse("acme/shop/prod").is_err());
        assert!(ServiceRef::parse("acme/shop/prod/API").is_err());
        let s = ServiceRef::parse("acme/shop/prod/api").unwrap();
        assert_eq!(s.name(), "api");
        assert_eq!(s.environment().as_str(), "acme/shop/prod");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"acme/shop/prod/api\"");
        assert!(serde_json::from_str::<ServiceRef>("\"acme/../x/y\"").is_err());
    }
}
