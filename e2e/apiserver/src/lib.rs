//! An in-memory stand-in for the Kubernetes API server (REST, watch, discovery, fault
//! injection) that keyturn's e2e tests and the real operator binary talk to over HTTP.

pub mod error;
pub mod faults;
pub mod jsonpath;
pub mod openapi;
pub mod patch;
pub mod resources;
pub mod selector;
pub mod server;
pub mod store;
pub mod strategic;
pub mod table;

pub use server::{Config, Handle, start};
