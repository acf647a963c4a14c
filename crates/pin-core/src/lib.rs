//! pin-core — being written.
#![forbid(unsafe_code)]

pub mod contact;
pub mod format;
pub mod hash;
pub mod secret;
pub mod tax_code;
