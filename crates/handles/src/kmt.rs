//! KMT handles (contract 3): global share values, valid while the object they name lives,
//! never closed, resolved by any process of the same user through the broker.

use std::fmt;
use std::num::NonZeroU32;

use crate::nt::RawHandle;

/// The first KMT value a broker hands out; later ones step by [`KMT_STEP`] (like Windows, whose
/// global share handles are multiples of 4 with the low bits set to 2).
pub const KMT_FIRST: u32 = 0x4000_0002;
/// The distance between two consecutive KMT values.
pub const KMT_STEP: u32 = 4;

/// A KMT (global share) handle value. Never zero; it owns nothing and is never closed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KmtHandle(NonZeroU32);

impl KmtHandle {
    /// A KMT handle from its value; `None` for zero.
    pub const fn new(value: u32) -> Option<KmtHandle> {
        match NonZeroU32::new(value) {
            Some(v) => Some(KmtHandle(v)),
            None => None,
        }
    }

    /// The value.
    pub const fn get(self) -> u32 {
        self.0.get()
    }

    /// A KMT handle from a Vulkan `HANDLE` value: `None` unless it is in `1..=u32::MAX`.
    /// (Whether the broker knows the value is another question: see `Broker::open_kmt`.)
    pub fn from_raw_handle(handle: RawHandle) -> Option<KmtHandle> {
        u32::try_from(handle).ok().and_then(KmtHandle::new)
    }

    /// The Vulkan `HANDLE` value (zero-extended).
    pub fn as_raw_handle(self) -> RawHandle {
        // A u32 always fits in a 64-bit isize; on 32-bit targets the wrap matches Windows,
        // where a HANDLE is pointer-sized and KMT values are 32-bit.
        self.get() as RawHandle
    }
}

impl fmt::Display for KmtHandle {
    /// `0x40000002`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.get())
    }
}

impl fmt::Debug for KmtHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KmtHandle({self})")
    }
}

impl From<KmtHandle> for u32 {
    fn from(k: KmtHandle) -> u32 {
        k.get()
    }
}

impl TryFrom<u32> for KmtHandle {
    type Error = crate::HandleError;

    fn try_from(value: u32) -> Result<KmtHandle, crate::HandleError> {
        KmtHandle::new(value).ok_or(crate::HandleError::InvalidHandle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert!(KmtHandle::new(0).is_none());
        let k = KmtHandle::new(KMT_FIRST).unwrap();
        assert_eq!(k.to_string(), "0x40000002");
        assert_eq!(format!("{k:?}"), "KmtHandle(0x40000002)");
        assert_eq!(KmtHandle::new(6).unwrap().to_string(), "0x00000006");
        assert_eq!(k.as_raw_handle(), 0x4000_0002);
        assert_eq!(KmtHandle::from_raw_handle(0x4000_0002), Some(k));
        assert_eq!(KmtHandle::from_raw_handle(0), None);
        assert_eq!(KmtHandle::from_raw_handle(-1), None);
        assert_eq!(KmtHandle::from_raw_handle(1 << 40), None);
        assert_eq!(
            KmtHandle::from_raw_handle(u32::MAX as isize).map(KmtHandle::get),
            Some(u32::MAX)
        );
        assert_eq!(u32::from(k), KMT_FIRST);
        assert!(KmtHandle::try_from(0u32).is_err());
    }
}
