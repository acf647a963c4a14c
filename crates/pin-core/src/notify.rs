//! The delivery port.

use crate::command::{Delivery, Notice};

/// What a channel answered when it took a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receipt {
    /// Accepted for delivery.
    Sent,
    /// Delivered and confirmed (e.g. a PEC receipt, a sealed envelope handed over).
    Confirmed,
}

/// A delivery that did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The channel refused the message for good (unknown recipient, invalid number): the
    /// part is marked failed; recovery is a fresh issue (POL-3).
    #[error("delivery refused: {0}")]
    Refused(String),
    /// The channel is unavailable now: the part stays pending.
    #[error("delivery channel unavailable: {0}")]
    Unavailable(String),
}

/// Carries messages to people. Implementations must never log the secret of a delivery.
pub trait Notifier {
    /// Delivers one message.
    ///
    /// # Errors
    /// [`DeliveryError`] when the message was not delivered.
    fn deliver(&self, delivery: &Delivery) -> Result<Receipt, DeliveryError>;

    /// Sends a security notice (POL-6), which carries no secret. The default answers
    /// [`DeliveryError::Unavailable`]: a notifier that cannot carry notices says so, and the
    /// driver reports the notice as not sent.
    ///
    /// # Errors
    /// [`DeliveryError`] when the notice was not sent.
    fn notify(&self, notice: &Notice) -> Result<Receipt, DeliveryError> {
        let _ = notice;
        Err(DeliveryError::Unavailable(
            "this notifier does not carry security notices".to_owned(),
        ))
    }
}

/// Forwards every method of [`Notifier`], [`Notifier::notify`] included.
macro_rules! forward_notifier {
    ($($ty:ty),+) => {$(
        impl<N: Notifier + ?Sized> Notifier for $ty {
            fn deliver(&self, d: &Delivery) -> Result<Receipt, DeliveryError> {
                (**self).deliver(d)
            }
            fn notify(&self, n: &Notice) -> Result<Receipt, DeliveryError> {
                (**self).notify(n)
            }
        }
    )+};
}

forward_notifier!(&N, Box<N>, std::sync::Arc<N>);

/// A message kept by [`MemoryOutbox`].
pub struct OutboxMessage {
    /// The delivery, as the channel would have carried it.
    pub delivery: Delivery,
}

impl std::fmt::Debug for OutboxMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { delivery } = self;
        f.debug_struct("OutboxMessage")
            .field("delivery", delivery)
            .finish()
    }
}

/// A notifier that keeps every message in memory — the person's mailbox, phone and letter
/// box in one — for tests, examples and callers who deliver by their own means.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    messages: std::sync::Mutex<Vec<OutboxMessage>>,
    notices: std::sync::Mutex<Vec<Notice>>,
}

impl MemoryOutbox {
    /// An empty outbox.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes every message out of the outbox, oldest first.
    pub fn take(&self) -> Vec<OutboxMessage> {
        std::mem::take(
            &mut *self
                .messages
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Takes every security notice out of the outbox, oldest first (they are kept apart
    /// from the messages that carry a PIN).
    pub fn take_notices(&self) -> Vec<Notice> {
        std::mem::take(
            &mut *self
                .notices
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Notifier for MemoryOutbox {
    fn deliver(&self, d: &Delivery) -> Result<Receipt, DeliveryError> {
        let copy = Delivery {
            subject: d.subject.clone(),
            serial: d.serial,
            part: d.part,
            of: d.of,
            channel: d.channel,
            recipient: d.recipient.clone(),
            secret: d.secret.duplicate(),
            origin: d.origin,
        };
        self.messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(OutboxMessage { delivery: copy });
        Ok(Receipt::Sent)
    }

    fn notify(&self, n: &Notice) -> Result<Receipt, DeliveryError> {
        self.notices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(n.clone());
        Ok(Receipt::Sent)
    }
}
