//! keyturn's end-to-end harness: runs the real `keyturn-operator` binary against a cluster (the
//! in-memory API stand-in, or a real one named by `E2E_KUBECONFIG`) and the real backends; tests
//! assert only through the Kubernetes API, the operator's logs and metrics, and the backends.
#![forbid(unsafe_code)]
// Test support: a failed set-up step must fail the test at once, saying what failed.
#![allow(clippy::expect_used)]

mod canary;
mod cluster;
mod http;
mod managed;
mod names;
mod objects;
mod operator;
mod standin;
mod wait;

pub mod aws;
pub mod openbao;
pub mod postgres;

pub use canary::assert_no_canary;
pub use cluster::{Cluster, E2E_KUBECONFIG, TestNamespace};
pub use managed::MANAGED_SECRET_API_VERSION;
pub use names::{random_suffix, unique_name, workspace_root};
pub use objects::{FIELD_MANAGER, parse_yaml_documents};
pub use operator::{
    CRASH_POINT_ENV, OPERATOR_BIN, OperatorBuilder, OperatorProcess, RawOutput, operator_binary,
    spawn_raw,
};
pub use standin::{Fault, RecordedRequest, StandIn};
pub use wait::{DEFAULT_TIMEOUT, Probe, wait_for, wait_until};
