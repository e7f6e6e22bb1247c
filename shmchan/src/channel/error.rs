//! Per-operation send errors that hand the unsent message back.

use std::fmt;

use crate::Error;

/// Why [`Sender::try_send`](super::Sender::try_send) did not send; carries the message back.
///
/// Converts into [`Error`] (`Full` becomes [`Error::WouldBlock`]) so `?` works in functions
/// returning [`crate::Result`].
///
/// # Examples
///
/// ```
/// use shmchan::channel::TrySendError;
///
/// let (tx, _rx) = shmchan::channel::<u32>(1)?;
/// tx.try_send(1).unwrap();
/// match tx.try_send(2) {
///     Err(TrySendError::Full(m)) => assert_eq!(m, 2),
///     other => panic!("expected Full, got {other:?}"),
/// }
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug)]
pub enum TrySendError<T> {
    /// The ring is full (the receiver is slower); try again later.
    Full(T),
    /// The receiver dropped its end or its process died.
    Disconnected(T),
    /// Another failure, such as [`Error::Corrupted`] indices.
    Failed(Error),
}

/// Why [`Sender::send_timeout`](super::Sender::send_timeout) did not send; carries the message
/// back.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmchan::channel::SendTimeoutError;
///
/// let (tx, _rx) = shmchan::channel::<u32>(1)?;
/// tx.send(1)?;
/// let e = tx.send_timeout(2, Duration::from_millis(1)).unwrap_err();
/// assert!(matches!(e, SendTimeoutError::Timeout(2)));
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug)]
pub enum SendTimeoutError<T> {
    /// The ring stayed full until the deadline.
    Timeout(T),
    /// The receiver dropped its end or its process died.
    Disconnected(T),
    /// Another failure, such as [`Error::Corrupted`] indices.
    Failed(Error),
}

impl<T> TrySendError<T> {
    /// The message that was not sent, if the error carries it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::channel::TrySendError;
    ///
    /// assert_eq!(TrySendError::Full(7u8).into_inner(), Some(7));
    /// ```
    pub fn into_inner(self) -> Option<T> {
        match self {
            TrySendError::Full(m) | TrySendError::Disconnected(m) => Some(m),
            TrySendError::Failed(_) => None,
        }
    }
}

impl<T> SendTimeoutError<T> {
    /// The message that was not sent, if the error carries it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::channel::SendTimeoutError;
    ///
    /// assert_eq!(SendTimeoutError::Timeout(7u8).into_inner(), Some(7));
    /// ```
    pub fn into_inner(self) -> Option<T> {
        match self {
            SendTimeoutError::Timeout(m) | SendTimeoutError::Disconnected(m) => Some(m),
            SendTimeoutError::Failed(_) => None,
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the channel is full; retry later or use `send`"),
            TrySendError::Disconnected(_) => fmt::Display::fmt(&Error::Disconnected, f),
            TrySendError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str(
                "timed out waiting for space in the channel (the receiver is slow or stopped)",
            ),
            SendTimeoutError::Disconnected(_) => fmt::Display::fmt(&Error::Disconnected, f),
            SendTimeoutError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for TrySendError<T> {}
impl<T: fmt::Debug> std::error::Error for SendTimeoutError<T> {}

impl<T> From<TrySendError<T>> for Error {
    fn from(e: TrySendError<T>) -> Error {
        match e {
            TrySendError::Full(_) => Error::WouldBlock {
                what: "send on a full channel",
            },
            TrySendError::Disconnected(_) => Error::Disconnected,
            TrySendError::Failed(e) => e,
        }
    }
}

impl<T> From<SendTimeoutError<T>> for Error {
    fn from(e: SendTimeoutError<T>) -> Error {
        match e {
            SendTimeoutError::Timeout(_) => Error::Timeout {
                what: "space in the channel".into(),
                holder_pid: None,
            },
            SendTimeoutError::Disconnected(_) => Error::Disconnected,
            SendTimeoutError::Failed(e) => e,
        }
    }
}
