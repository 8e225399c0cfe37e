//! keyturn-operator: the Kubernetes glue around the pure lifecycle core. `main.rs` only wires
//! the command line to these modules.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod audit_checkpoints;
pub mod audit_command;
pub mod cli;
pub mod consumers;
pub mod controller;
pub mod evidence;
pub mod explain;
pub mod http;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod reads;
pub mod run;
