//! keyturn-operator: the Kubernetes glue around the pure lifecycle core. `main.rs` only wires
//! the command line to these modules.
#![forbid(unsafe_code)]

pub mod cli;
pub mod explain;
pub mod http;
pub mod leader;
pub mod logging;
pub mod metrics;
