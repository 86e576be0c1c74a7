//! One error type for the crate: every failure carries the Vulkan result it corresponds to and a
//! message saying what was asked and why it failed.

use std::fmt;
use std::os::fd::OwnedFd;

use ash::vk;

/// What went wrong. [`Error::result`] gives the Vulkan result (the driver's own, or the one the
/// Vulkan specification would have a checking driver return), `Display` the message.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A Vulkan command failed.
    Vulkan {
        /// The command, e.g. `vkImportSemaphoreWin32HandleKHR`.
        command: &'static str,
        /// What the driver returned.
        result: vk::Result,
        /// What the command was asked to do.
        context: String,
    },
    /// The device cannot do it: the handle type is not exportable or importable for this object
    /// kind, the extension it needs is not enabled, or the device has no timeline semaphores.
    /// Checked before any driver call.
    Unsupported(String),
    /// The request breaks a valid-usage rule of the Vulkan specification that this crate checks
    /// before calling the driver (a temporary import of a timeline semaphore, a name for a KMT
    /// handle type, a second NT-handle export, ...). Drivers do not have to check these, so the
    /// call never reaches them.
    InvalidUsage(String),
    /// The per-user broker that resolves names and KMT values could not be reached or started.
    Broker(String),
}

impl Error {
    /// The Vulkan result this error stands for: the driver's for [`Error::Vulkan`];
    /// `ERROR_FEATURE_NOT_PRESENT` for [`Error::Unsupported`]; `ERROR_VALIDATION_FAILED_EXT` for
    /// [`Error::InvalidUsage`] and `ERROR_INITIALIZATION_FAILED` for
    /// [`Error::Broker`].
    pub fn result(&self) -> vk::Result {
        match self {
            Error::Vulkan { result, .. } => *result,
            Error::Unsupported(_) => vk::Result::ERROR_FEATURE_NOT_PRESENT,
            Error::InvalidUsage(_) => vk::Result::ERROR_VALIDATION_FAILED_EXT,
            Error::Broker(_) => vk::Result::ERROR_INITIALIZATION_FAILED,
        }
    }

    pub(crate) fn vulkan(command: &'static str, result: vk::Result, context: impl Into<String>) -> Error {
        Error::Vulkan {
            command,
            result,
            context: context.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Vulkan {
                command,
                result,
                context,
            } if context.is_empty() => write!(f, "{command} failed: {result}"),
            Error::Vulkan {
                command,
                result,
                context,
            } => write!(f, "{command} ({context}) failed: {result}"),
            Error::Unsupported(m) => write!(f, "not supported: {m}"),
            Error::InvalidUsage(m) => write!(f, "invalid usage: {m}"),
            Error::Broker(m) => write!(f, "tether-broker: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed fd import: the error, and the fd, which stays the caller's (an fd import takes
/// ownership only when it succeeds). Converts into [`Error`] (closing the fd) for `?`.
#[derive(Debug)]
pub struct FdImportError {
    /// Why the import failed.
    pub error: Error,
    /// The fd that was to be imported, back to its owner.
    pub fd: OwnedFd,
}

impl FdImportError {
    /// The error and the fd.
    pub fn into_parts(self) -> (Error, OwnedFd) {
        (self.error, self.fd)
    }
}

impl fmt::Display for FdImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for FdImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<FdImportError> for Error {
    /// Keeps the error; the fd is closed.
    fn from(e: FdImportError) -> Error {
        e.error
    }
}
