//! The Kubernetes backend against a stand-in API server (`apiserver.rs`),
//! whose answers are checked with stock kubectl first (`kubectl.rs`), then
//! driven through `KubernetesRuntime` (`backend.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod apiserver;
mod backend;
mod framing;
mod kubectl;
mod rbac;
