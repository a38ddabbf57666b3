//! `KubernetesRuntime` against the stand-in API server.
