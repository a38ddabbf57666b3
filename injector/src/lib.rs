//! The injector (to be built by the injector issue): a tiny exec wrapper
//! that authenticates a workload, fetches its effective secrets over TLS and
//! places them in the child process's environment in memory only, plus the
//! Kubernetes mutating admission webhook that adds it to annotated pods.
//!
//! Architecture invariants: secrets never touch disk, the pod spec or etcd;
//! the injector talks to Warden only through the public API; it does not
//! link the vault's crypto or storage (checked by the tidy test in `tests/`).
