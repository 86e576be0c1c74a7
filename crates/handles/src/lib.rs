//! The Win32 handle model on Unix (contracts 2–5 of DESIGN.md).
//!
//! * [`nt`]: an NT handle is an fd its holder owns ([`NtHandle`]); duplication, inheritance,
//!   passing fds over Unix sockets.
//! * [`kmt`]: a KMT handle is a global value ([`KmtHandle`]) resolved through the broker.
//! * [`name`]: UTF-16 object names ([`ObjectName`]) in one per-user namespace.
//! * [`export`]: what an exportable object remembers of its Win32 exports (attributes, the
//!   NT-export-once rule, its name and KMT registrations).
//! * [`protocol`]: the broker's wire protocol.
//! * [`broker`]: the broker server (the `tether-broker` binary's body).
//! * [`client`]: talking to (and starting) the per-user `tether-broker` ([`Broker`],
//!   [`SharedBroker`]).
//!
//! Nothing here knows about Vulkan: the ICD and the layer build on it.

use std::fmt;
use std::io;

pub mod broker;
pub mod client;
pub mod export;
pub mod kmt;
pub mod name;
pub mod nt;
pub mod protocol;

pub use client::{Broker, Registration, SharedBroker};
pub use export::{ExportError, Win32ExportAttributes, Win32Exports};
pub use kmt::KmtHandle;
pub use name::{NameError, ObjectName};
pub use nt::{BorrowedHandle, NtHandle, RawHandle};

/// Everything that can go wrong in this crate.
#[derive(Debug)]
pub enum HandleError {
    /// No object has that name or KMT value (or the registration is not this connection's).
    NotFound,
    /// The name is already registered.
    AlreadyExists,
    /// The name breaks the naming rules.
    InvalidName(NameError),
    /// The handle value is not an open fd (or is not a valid KMT value).
    InvalidHandle,
    /// The socket directory or the broker is not safe to use (wrong owner, mode, symlink,
    /// another user's broker).
    PermissionDenied(String),
    /// The broker could not be reached or started, or the connection to it broke.
    BrokerUnavailable(String),
    /// The registration was made on a connection that has since been lost (the broker died or
    /// the connection was replaced); it no longer exists. See [`SharedBroker`].
    BrokerRestarted,
    /// The broker sent something this client does not understand.
    Protocol(String),
    /// The broker refused the request for another reason.
    Broker {
        /// The broker's error code.
        code: protocol::ErrorCode,
        /// The broker's message.
        message: String,
    },
    /// An OS error.
    Io(io::Error),
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::NotFound => write!(f, "no such object"),
            HandleError::AlreadyExists => write!(f, "an object with that name already exists"),
            HandleError::InvalidName(e) => write!(f, "invalid object name: {e}"),
            HandleError::InvalidHandle => write!(f, "invalid handle"),
            HandleError::PermissionDenied(m) => write!(f, "permission denied: {m}"),
            HandleError::BrokerUnavailable(m) => write!(f, "tether-broker unavailable: {m}"),
            HandleError::BrokerRestarted => {
                write!(
                    f,
                    "the connection to tether-broker was lost; its registrations are gone"
                )
            }
            HandleError::Protocol(m) => write!(f, "tether-broker protocol error: {m}"),
            HandleError::Broker { code, message } => write!(f, "tether-broker refused ({code:?}): {message}"),
            HandleError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HandleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandleError::InvalidName(e) => Some(e),
            HandleError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<NameError> for HandleError {
    fn from(e: NameError) -> HandleError {
        HandleError::InvalidName(e)
    }
}

impl From<io::Error> for HandleError {
    fn from(e: io::Error) -> HandleError {
        HandleError::Io(e)
    }
}

impl From<rustix::io::Errno> for HandleError {
    fn from(e: rustix::io::Errno) -> HandleError {
        HandleError::Io(e.into())
    }
}

/// `Result` with [`HandleError`].
pub type Result<T, E = HandleError> = std::result::Result<T, E>;
