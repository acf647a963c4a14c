//! pin-core — being written.
#![forbid(unsafe_code)]

pub mod actor;
pub mod audit;
pub mod command;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod contact;
pub mod error;
pub mod format;
pub mod hash;
pub mod machine;
pub mod memory;
pub mod notify;
pub mod policy;
pub mod secret;
pub mod self_service;
pub mod service;
pub mod store;
pub mod subject;
pub mod tax_code;
pub mod verify;

pub use actor::Actor;
pub use error::{Error, InputError, Refusal};
pub use policy::Policy;
pub use subject::{Level, Profile, Role};
pub use verify::VerifyOutcome;
