//! Keyturn's rotators: the [`Rotator`] trait (create → set → test → finish → retire, each step
//! idempotent and keyed by the rotation id) and its implementations. No Kubernetes client here:
//! the controller hands in resolved configuration and persists what the steps return.

pub mod aws;
pub mod credential;
pub mod error;
pub mod factory;
pub mod postgres;
pub mod rotator;
pub mod vault;

pub use credential::{Credential, CredentialId, SecretValue, generate_password};
pub use error::{ErrorCategory, RotatorError};
pub use factory::{RotatorDriver, RotatorRegistry, SecretSource, build_rotator};
pub use rotator::{RotationContext, Rotator};
