//! The one error of this crate: starting the driver failed. Operations keep pin-core's
//! [`pin_core::Error`].

use std::convert::Infallible;

/// Why an [`AsyncPinService`](crate::AsyncPinService) could not be started.
///
/// `E` is the error of the constructor given to
/// [`AsyncPinService::open_with`](crate::AsyncPinService::open_with) (e.g. a store that
/// cannot be opened, or [`pin_core::Error`] from `PinService::new`); it is [`Infallible`]
/// for [`AsyncPinService::new`](crate::AsyncPinService::new), which takes a built service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError<E = Infallible> {
    /// The operating system refused to start one of the pool's threads.
    #[error("could not start the threads of the PIN service's pool: {0}")]
    Spawn(#[source] std::io::Error),
    /// The constructor of the service failed.
    #[error("could not open the PIN service: {0}")]
    Open(#[source] E),
}
