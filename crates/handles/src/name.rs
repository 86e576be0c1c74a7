//! Object names (contract 4): UTF-16 `LPCWSTR` names in one per-user namespace.
//!
//! # Rules
//!
//! * An optional `Local\` or `Global\` prefix. The prefix is matched **case-insensitively**
//!   (`global\x` is `Global\x`), as the Windows object manager does for the `Local`/`Global`
//!   symbolic links; the rest of the name is **case-sensitive**, as Win32 object names are.
//!   Both prefixes, and no prefix, name the same per-user namespace here: `Local\foo`,
//!   `Global\foo` and `foo` are one object. No other prefix (`Session\1\`) exists; its backslash
//!   makes it invalid.
//! * The rest (the *key*) is non-empty and contains no backslash and no NUL.
//! * The whole name, prefix included and the terminating NUL excluded, is at most
//!   [`MAX_NAME_LEN`] (260, `MAX_PATH`) UTF-16 code units. Windows allows longer object names;
//!   a fixed bound keeps the broker's messages small and lets [`ObjectName::from_lpcwstr`] bound
//!   its scan.
//! * It is well-formed UTF-16: no lone surrogate. The key is kept as UTF-8.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// The longest name, in UTF-16 code units, prefix included, terminating NUL excluded.
pub const MAX_NAME_LEN: usize = 260;

/// The prefix a name was written with. All three name the same namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NamePrefix {
    /// No prefix.
    None,
    /// `Local\` (any case).
    Local,
    /// `Global\` (any case).
    Global,
}

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The pointer was NULL.
    Null,
    /// The name, or the part after its prefix, is empty.
    Empty,
    /// Longer than [`MAX_NAME_LEN`] code units (or no NUL within `MAX_NAME_LEN + 1` units of an
    /// `LPCWSTR`). `len` is the length seen, at least `MAX_NAME_LEN + 1`.
    TooLong {
        /// The length seen (for an `LPCWSTR`, the number of units scanned).
        len: usize,
    },
    /// A backslash after the prefix, at this code-unit index.
    Backslash {
        /// Index of the offending code unit.
        index: usize,
    },
    /// An embedded NUL, at this code-unit index (only a `&[u16]` can have one).
    Nul {
        /// Index of the offending code unit.
        index: usize,
    },
    /// A lone surrogate, at this code-unit index.
    LoneSurrogate {
        /// Index of the offending code unit.
        index: usize,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Null => write!(f, "the name pointer is NULL"),
            NameError::Empty => write!(f, "the name is empty"),
            NameError::TooLong { len } => {
                write!(
                    f,
                    "the name is too long ({len} UTF-16 units seen, at most {MAX_NAME_LEN} allowed)"
                )
            }
            NameError::Backslash { index } => write!(
                f,
                "the name contains a backslash at UTF-16 unit {index} (only a Local\\ or Global\\ prefix may have one)"
            ),
            NameError::Nul { index } => write!(f, "the name contains a NUL at UTF-16 unit {index}"),
            NameError::LoneSurrogate { index } => {
                write!(f, "the name is not valid UTF-16 (lone surrogate at unit {index})")
            }
        }
    }
}

impl std::error::Error for NameError {}

const LOCAL: &str = "Local\\";
const GLOBAL: &str = "Global\\";

/// A validated object name: the original UTF-16 and the canonical namespace key.
///
/// Equality and hashing use the key only, so `Local\a == Global\a == a`.
#[derive(Clone)]
pub struct ObjectName {
    original: Vec<u16>,
    prefix: NamePrefix,
    key: String,
}

/// Does `units` start with `prefix` (ASCII, compared case-insensitively)?
fn has_prefix(units: &[u16], prefix: &str) -> bool {
    units.len() >= prefix.len()
        && units
            .iter()
            .zip(prefix.bytes())
            .all(|(&u, b)| u < 0x80 && (u as u8).eq_ignore_ascii_case(&b))
}

impl ObjectName {
    /// Parses a name given as UTF-16 code units, without a terminating NUL.
    pub fn from_utf16(units: &[u16]) -> Result<ObjectName, NameError> {
        if units.is_empty() {
            return Err(NameError::Empty);
        }
        if units.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong { len: units.len() });
        }
        let (prefix, skip) = if has_prefix(units, LOCAL) {
            (NamePrefix::Local, LOCAL.len())
        } else if has_prefix(units, GLOBAL) {
            (NamePrefix::Global, GLOBAL.len())
        } else {
            (NamePrefix::None, 0)
        };
        let rest = &units[skip..];
        if rest.is_empty() {
            return Err(NameError::Empty);
        }
        if let Some(i) = rest.iter().position(|&u| u == u16::from(b'\\')) {
            return Err(NameError::Backslash { index: skip + i });
        }
        if let Some(i) = rest.iter().position(|&u| u == 0) {
            return Err(NameError::Nul { index: skip + i });
        }
        let mut key = String::with_capacity(rest.len());
        let mut index = skip;
        for c in char::decode_utf16(rest.iter().copied()) {
            match c {
                Ok(c) => {
                    key.push(c);
                    index += c.len_utf16();
                }
                Err(_) => return Err(NameError::LoneSurrogate { index }),
            }
        }
        Ok(ObjectName {
            original: units.to_vec(),
            prefix,
            key,
        })
    }

    /// Parses a NUL-terminated UTF-16 string (`LPCWSTR`).
    ///
    /// At most `MAX_NAME_LEN + 1` code units are read: a name whose NUL is not among them is
    /// [`NameError::TooLong`], so an unterminated buffer cannot make the scan run away.
    ///
    /// # Safety
    ///
    /// `ptr` is NULL, or it points to readable, aligned `u16`s up to and including the first NUL
    /// or `MAX_NAME_LEN + 1` units, whichever comes first.
    pub unsafe fn from_lpcwstr(ptr: *const u16) -> Result<ObjectName, NameError> {
        if ptr.is_null() {
            return Err(NameError::Null);
        }
        let mut len = 0;
        while len <= MAX_NAME_LEN {
            // SAFETY: the caller guarantees that units up to the first NUL, or the first
            // MAX_NAME_LEN + 1 units, are readable; `len` is below both bounds here.
            let unit = unsafe { ptr.add(len).read() };
            if unit == 0 {
                // SAFETY: the `len` units before the NUL were just read, so they are readable and
                // initialised; they are copied out before this function returns.
                let units = unsafe { std::slice::from_raw_parts(ptr, len) };
                return ObjectName::from_utf16(units);
            }
            len += 1;
        }
        Err(NameError::TooLong { len })
    }

    /// The canonical namespace key: the name without its prefix, as UTF-8.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The name as it was given (UTF-16, prefix included, no NUL).
    pub fn as_utf16(&self) -> &[u16] {
        &self.original
    }

    /// The prefix the name was given with.
    pub fn prefix(&self) -> NamePrefix {
        self.prefix
    }
}

impl FromStr for ObjectName {
    type Err = NameError;

    /// Parses a Rust string with the same rules (convenience for tests and tools).
    fn from_str(s: &str) -> Result<ObjectName, NameError> {
        let units: Vec<u16> = s.encode_utf16().collect();
        ObjectName::from_utf16(&units)
    }
}

impl fmt::Display for ObjectName {
    /// The original name (prefix included). It is valid UTF-16, so this is lossless.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in char::decode_utf16(self.original.iter().copied()) {
            fmt::Write::write_char(f, c.unwrap_or(char::REPLACEMENT_CHARACTER))?;
        }
        Ok(())
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl PartialEq for ObjectName {
    fn eq(&self, other: &ObjectName) -> bool {
        self.key == other.key
    }
}

impl Eq for ObjectName {}

impl Hash for ObjectName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    #[test]
    fn valid_names_and_prefixes() {
        let n: ObjectName = "foo".parse().unwrap();
        assert_eq!(n.key(), "foo");
        assert_eq!(n.prefix(), NamePrefix::None);
        let l: ObjectName = "Local\\foo".parse().unwrap();
        assert_eq!(l.key(), "foo");
        assert_eq!(l.prefix(), NamePrefix::Local);
        assert_eq!(l.to_string(), "Local\\foo");
        assert_eq!(format!("{l:?}"), "\"Local\\\\foo\"");
        let g: ObjectName = "gLoBaL\\foo".parse().unwrap();
        assert_eq!(g.prefix(), NamePrefix::Global);
        assert_eq!(g.key(), "foo");
        assert_eq!(n, l);
        assert_eq!(l, g);
        // The rest is case-sensitive.
        assert_ne!(n, "FOO".parse::<ObjectName>().unwrap());
        // Non-ASCII and astral characters survive.
        let u: ObjectName = "Local\\zaï-🦀".parse().unwrap();
        assert_eq!(u.key(), "zaï-🦀");
        assert_eq!(u.as_utf16(), &w("Local\\zaï-🦀")[..]);
        // A prefix-like word without its backslash is just a name.
        assert_eq!("Local".parse::<ObjectName>().unwrap().key(), "Local");
        assert_eq!("Globalx".parse::<ObjectName>().unwrap().prefix(), NamePrefix::None);
    }

    #[test]
    fn invalid_names() {
        assert_eq!(ObjectName::from_utf16(&[]), Err(NameError::Empty));
        assert_eq!("Local\\".parse::<ObjectName>(), Err(NameError::Empty));
        assert_eq!("global\\".parse::<ObjectName>(), Err(NameError::Empty));
        assert_eq!("a\\b".parse::<ObjectName>(), Err(NameError::Backslash { index: 1 }));
        assert_eq!(
            "Local\\a\\b".parse::<ObjectName>(),
            Err(NameError::Backslash { index: 7 })
        );
        assert_eq!(
            "Session\\1\\x".parse::<ObjectName>(),
            Err(NameError::Backslash { index: 7 })
        );
        assert_eq!("\\x".parse::<ObjectName>(), Err(NameError::Backslash { index: 0 }));
        assert_eq!(
            "Local\\Global\\x".parse::<ObjectName>(),
            Err(NameError::Backslash { index: 12 })
        );
        assert_eq!(
            ObjectName::from_utf16(&[0x61, 0, 0x62]),
            Err(NameError::Nul { index: 1 })
        );
        assert_eq!(
            ObjectName::from_utf16(&[0x61, 0xD800]),
            Err(NameError::LoneSurrogate { index: 1 })
        );
        assert_eq!(
            ObjectName::from_utf16(&[0xDC00, 0x61]),
            Err(NameError::LoneSurrogate { index: 0 })
        );
        assert_eq!(
            ObjectName::from_utf16(&[0x61, 0xD83E, 0xDD80, 0xD800, 0x62]),
            Err(NameError::LoneSurrogate { index: 3 })
        );
        let long = "x".repeat(MAX_NAME_LEN);
        assert!(long.parse::<ObjectName>().is_ok());
        let too_long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            too_long.parse::<ObjectName>(),
            Err(NameError::TooLong { len: MAX_NAME_LEN + 1 })
        );
        // The limit counts the prefix.
        let prefixed = format!("Local\\{}", "x".repeat(MAX_NAME_LEN - 6));
        assert!(prefixed.parse::<ObjectName>().is_ok());
        let prefixed = format!("Local\\{}", "x".repeat(MAX_NAME_LEN - 5));
        assert!(matches!(prefixed.parse::<ObjectName>(), Err(NameError::TooLong { .. })));
        for e in [
            NameError::Null,
            NameError::Empty,
            NameError::TooLong { len: 300 },
            NameError::Backslash { index: 1 },
            NameError::Nul { index: 1 },
            NameError::LoneSurrogate { index: 1 },
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn lpcwstr() {
        let mut buf = w("Global\\evt");
        buf.push(0);
        // SAFETY: `buf` is NUL-terminated.
        let n = unsafe { ObjectName::from_lpcwstr(buf.as_ptr()) }.unwrap();
        assert_eq!(n.key(), "evt");
        // SAFETY: NULL is allowed.
        let r = unsafe { ObjectName::from_lpcwstr(std::ptr::null()) };
        assert_eq!(r, Err(NameError::Null));
        let empty = [0u16];
        // SAFETY: NUL-terminated.
        let r = unsafe { ObjectName::from_lpcwstr(empty.as_ptr()) };
        assert_eq!(r, Err(NameError::Empty));
        // Exactly MAX_NAME_LEN units plus the NUL: accepted.
        let mut max = vec![u16::from(b'y'); MAX_NAME_LEN];
        max.push(0);
        // SAFETY: NUL-terminated.
        assert!(unsafe { ObjectName::from_lpcwstr(max.as_ptr()) }.is_ok());
        // An unterminated buffer of exactly MAX_NAME_LEN + 1 readable units: the scan stops at
        // the bound and never reads past the buffer (Miri/ASan would catch it otherwise).
        let unterminated = vec![u16::from(b'z'); MAX_NAME_LEN + 1];
        // SAFETY: MAX_NAME_LEN + 1 units are readable.
        let r = unsafe { ObjectName::from_lpcwstr(unterminated.as_ptr()) };
        assert_eq!(r, Err(NameError::TooLong { len: MAX_NAME_LEN + 1 }));
        let mut bad = [0x61u16, 0xDBFF, 0x62, 0];
        // SAFETY: NUL-terminated.
        let r = unsafe { ObjectName::from_lpcwstr(bad.as_ptr()) };
        assert_eq!(r, Err(NameError::LoneSurrogate { index: 1 }));
        bad[1] = u16::from(b'\\');
        // SAFETY: NUL-terminated.
        let r = unsafe { ObjectName::from_lpcwstr(bad.as_ptr()) };
        assert_eq!(r, Err(NameError::Backslash { index: 1 }));
    }
}
