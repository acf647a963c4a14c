//! [`ChannelRouter`]: one notifier per channel.

use std::fmt;
use std::sync::Arc;

use pin_core::command::{Delivery, Notice};
use pin_core::notify::{DeliveryError, Notifier, Receipt};
use pin_core::subject::Channel;

/// A notifier that can be shared between the routes and threads of a router.
type Shared = Arc<dyn Notifier + Send + Sync>;

/// A [`Notifier`] that hands each message to the notifier of its channel: for example
/// e-mail and PEC to an [`crate::SmtpNotifier`], SMS to an SMS gateway, and the rest (post,
/// phone script, sealed envelope) to an outbox that people print or read out.
///
/// A channel with no route goes to the fallback ([`ChannelRouter::otherwise`]); with no
/// fallback either, its delivery is [`DeliveryError::Unavailable`] (the part stays pending:
/// it is the wiring, not the recipient, that is wrong).
///
/// ```
/// use pin_core::notify::MemoryOutbox;
/// use pin_core::subject::Channel;
/// use pin_smtp::ChannelRouter;
///
/// let router = ChannelRouter::new()
///     .route(&[Channel::Email, Channel::Pec], MemoryOutbox::new()) // an SmtpNotifier, say
///     .otherwise(MemoryOutbox::new());
/// assert!(router.has_route(Channel::Pec));
/// assert!(!router.has_route(Channel::Post)); // goes to the fallback
/// ```
#[derive(Default)]
pub struct ChannelRouter {
    routes: Vec<(Channel, Shared)>,
    fallback: Option<Shared>,
}

impl ChannelRouter {
    /// A router with no routes and no fallback.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `channels` to `notifier` (one instance shared by those channels), replacing
    /// their earlier routes.
    #[must_use]
    pub fn route(
        self,
        channels: &[Channel],
        notifier: impl Notifier + Send + Sync + 'static,
    ) -> Self {
        self.route_shared(channels, Arc::new(notifier))
    }

    /// As [`ChannelRouter::route`], with a notifier shared with others (e.g. the same
    /// notifier also used as the fallback).
    #[must_use]
    pub fn route_shared(mut self, channels: &[Channel], notifier: Shared) -> Self {
        self.routes.retain(|(c, _)| !channels.contains(c));
        self.routes
            .extend(channels.iter().map(|c| (*c, Arc::clone(&notifier))));
        self
    }

    /// Sends every channel without a route to `notifier`.
    #[must_use]
    pub fn otherwise(self, notifier: impl Notifier + Send + Sync + 'static) -> Self {
        self.otherwise_shared(Arc::new(notifier))
    }

    /// As [`ChannelRouter::otherwise`], with a shared notifier.
    #[must_use]
    pub fn otherwise_shared(mut self, notifier: Shared) -> Self {
        self.fallback = Some(notifier);
        self
    }

    /// Whether `channel` has a route of its own (rather than the fallback).
    #[must_use]
    pub fn has_route(&self, channel: Channel) -> bool {
        self.routes.iter().any(|(c, _)| *c == channel)
    }

    fn notifier_for(&self, channel: Channel) -> Option<&Shared> {
        self.routes
            .iter()
            .find(|(c, _)| *c == channel)
            .map(|(_, n)| n)
            .or(self.fallback.as_ref())
    }
}

impl fmt::Debug for ChannelRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { routes, fallback } = self;
        let channels: Vec<Channel> = routes.iter().map(|(c, _)| *c).collect();
        f.debug_struct("ChannelRouter")
            .field("routed", &channels)
            .field("fallback", &fallback.is_some())
            .finish()
    }
}

impl Notifier for ChannelRouter {
    fn notify(&self, notice: &Notice) -> Result<Receipt, DeliveryError> {
        match self.notifier_for(notice.channel) {
            Some(n) => n.notify(notice),
            None => Err(DeliveryError::Unavailable(format!(
                "no notifier is configured for the {:?} channel",
                notice.channel
            ))),
        }
    }

    fn deliver(&self, delivery: &Delivery) -> Result<Receipt, DeliveryError> {
        match self.notifier_for(delivery.channel) {
            Some(n) => n.deliver(delivery),
            None => Err(DeliveryError::Unavailable(format!(
                "no notifier is configured for the {:?} channel",
                delivery.channel
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;
    use pin_core::format::{PinFormat, parse_input};
    use pin_core::notify::MemoryOutbox;
    use pin_core::subject::Origin;
    use pin_core::tax_code::TaxCode;

    fn delivery(channel: Channel) -> Delivery {
        Delivery {
            subject: TaxCode::parse("RSSMRA85T10A562S").unwrap(),
            serial: 1,
            part: 1,
            of: 1,
            channel,
            recipient: "x".into(),
            secret: parse_input(PinFormat::NoipaDigits5, "48213").unwrap(),
            origin: Origin::Enrolment,
        }
    }

    #[test]
    fn each_channel_reaches_its_notifier() {
        let mail = Arc::new(MemoryOutbox::new());
        let rest = Arc::new(MemoryOutbox::new());
        let router = ChannelRouter::new()
            .route_shared(&[Channel::Email, Channel::Pec], mail.clone())
            .otherwise_shared(rest.clone());
        for c in [Channel::Email, Channel::Sms, Channel::Pec, Channel::Post] {
            router.deliver(&delivery(c)).unwrap();
        }
        let mail: Vec<Channel> = mail.take().iter().map(|m| m.delivery.channel).collect();
        let rest: Vec<Channel> = rest.take().iter().map(|m| m.delivery.channel).collect();
        assert_eq!(mail, [Channel::Email, Channel::Pec]);
        assert_eq!(rest, [Channel::Sms, Channel::Post]);
    }

    #[test]
    fn a_later_route_replaces_an_earlier_one() {
        let first = Arc::new(MemoryOutbox::new());
        let second = Arc::new(MemoryOutbox::new());
        let router = ChannelRouter::new()
            .route_shared(&[Channel::Sms], first.clone())
            .route_shared(&[Channel::Sms], second.clone());
        router.deliver(&delivery(Channel::Sms)).unwrap();
        assert_eq!((first.take().len(), second.take().len()), (0, 1));
    }

    #[test]
    fn an_unrouted_channel_without_fallback_stays_pending() {
        let router = ChannelRouter::new().route(&[Channel::Email], MemoryOutbox::new());
        let e = router.deliver(&delivery(Channel::Phone)).unwrap_err();
        assert!(matches!(e, DeliveryError::Unavailable(_)), "{e}");
        assert!(!format!("{router:?}").contains("48213"));
    }
}
