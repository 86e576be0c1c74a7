//! The broker wire protocol.
//!
//! One request or reply per message on a Unix `SOCK_SEQPACKET` socket (message boundaries kept by
//! the kernel); fds travel as SCM_RIGHTS ancillary data of the same message. A client sends one
//! request and reads its one reply before sending the next; replies come in request order.
//!
//! # Encoding
//!
//! ```text
//! byte 0      version (PROTOCOL_VERSION = 1)
//! byte 1      opcode
//! bytes 2..   the fields of that opcode, in order, with no padding and nothing after them:
//!               u32, u64   little-endian
//!               name       u16 count N (1..=260), then N UTF-16 code units, each u16 little-endian
//!               text       u16 byte length L (0..=1024), then L bytes of UTF-8
//! ```
//!
//! | opcode | message | fields | fds |
//! |---|---|---|---|
//! | 0x01 | `Ping` | — | 0 |
//! | 0x02 | `RegisterName` | kind u32, name | 1 |
//! | 0x03 | `OpenName` | name | 0 |
//! | 0x04 | `RegisterKmt` | kind u32 | 1 |
//! | 0x05 | `OpenKmt` | value u32 | 0 |
//! | 0x06 | `Unregister` | id u64 | 0 |
//! | 0x80 | `Ok` (to `Unregister`) | — | 0 |
//! | 0x81 | `Pong` | broker pid u32 | 0 |
//! | 0x82 | `Registered` | id u64 | 0 |
//! | 0x83 | `Kmt` | value u32, id u64 | 0 |
//! | 0x84 | `Opened` | kind u32 | 1 |
//! | 0xFF | `Error` | code u32, message text | 0 |
//!
//! A message is at most [`MAX_MESSAGE`] bytes. Decoding checks everything (version, opcode,
//! lengths, UTF-8, no trailing bytes) and never panics; names are validated separately (the
//! broker answers `Error { Invalid }` for a name that breaks the rules of [`crate::name`]).
//! `kind` is opaque to the broker: the registering client tags what the fd is with it.

use std::fmt;

use crate::name::MAX_NAME_LEN;

/// The protocol version byte.
pub const PROTOCOL_VERSION: u8 = 1;
/// The largest message, in bytes. Larger messages are refused (the broker drops the connection).
pub const MAX_MESSAGE: usize = 4096;
/// The longest error text, in bytes (longer texts are cut at a character boundary on encode).
pub const MAX_TEXT: usize = 1024;

/// A client's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Is the broker there? Reply: `Pong`.
    Ping,
    /// Registers the accompanying fd under a name. Reply: `Registered`.
    RegisterName {
        /// UTF-16 name as the application gave it.
        name: Vec<u16>,
        /// Opaque tag stored with the fd.
        kind: u32,
    },
    /// Opens a named registration. Reply: `Opened` with a new fd.
    OpenName {
        /// UTF-16 name.
        name: Vec<u16>,
    },
    /// Registers the accompanying fd under a new KMT value. Reply: `Kmt`.
    RegisterKmt {
        /// Opaque tag stored with the fd.
        kind: u32,
    },
    /// Opens a KMT registration. Reply: `Opened` with a new fd.
    OpenKmt {
        /// The KMT value.
        value: u32,
    },
    /// Removes one of this connection's registrations. Reply: `Ok`.
    Unregister {
        /// The id from `Registered` or `Kmt`.
        id: u64,
    },
}

/// Error codes of [`Reply::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// No such name, KMT value or registration.
    NotFound,
    /// The name is taken.
    AlreadyExists,
    /// The request is well-formed but invalid (a bad name, a missing fd).
    Invalid,
    /// Not allowed.
    PermissionDenied,
    /// The broker is out of resources (fds, memory, KMT values).
    Exhausted,
    /// Anything else.
    Internal,
    /// A code this version does not know.
    Other(u32),
}

impl ErrorCode {
    /// The wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            ErrorCode::NotFound => 1,
            ErrorCode::AlreadyExists => 2,
            ErrorCode::Invalid => 3,
            ErrorCode::PermissionDenied => 4,
            ErrorCode::Exhausted => 5,
            ErrorCode::Internal => 6,
            ErrorCode::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_u32(v: u32) -> ErrorCode {
        match v {
            1 => ErrorCode::NotFound,
            2 => ErrorCode::AlreadyExists,
            3 => ErrorCode::Invalid,
            4 => ErrorCode::PermissionDenied,
            5 => ErrorCode::Exhausted,
            6 => ErrorCode::Internal,
            v => ErrorCode::Other(v),
        }
    }
}

/// The broker's reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Done (to `Unregister`).
    Ok,
    /// To `Ping`.
    Pong {
        /// The broker's process id.
        pid: u32,
    },
    /// To `RegisterName`.
    Registered {
        /// The registration id, for `Unregister`.
        id: u64,
    },
    /// To `RegisterKmt`.
    Kmt {
        /// The new KMT value.
        value: u32,
        /// The registration id, for `Unregister`.
        id: u64,
    },
    /// To `OpenName` and `OpenKmt`; the message carries one fd.
    Opened {
        /// The kind the registration was made with.
        kind: u32,
    },
    /// The request failed.
    Error {
        /// Why.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// Why a message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Empty message.
    Empty,
    /// Over [`MAX_MESSAGE`] bytes.
    TooLarge(usize),
    /// Unknown version byte.
    Version(u8),
    /// Unknown opcode.
    Opcode(u8),
    /// The message ends inside a field.
    Truncated,
    /// Bytes after the last field.
    Trailing(usize),
    /// A name of 0 or more than 260 units, or a text of more than 1024 bytes.
    Length(usize),
    /// A text that is not UTF-8.
    Utf8,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty message"),
            DecodeError::TooLarge(n) => write!(f, "message of {n} bytes (at most {MAX_MESSAGE})"),
            DecodeError::Version(v) => write!(f, "unknown protocol version {v}"),
            DecodeError::Opcode(o) => write!(f, "unknown opcode {o:#04x}"),
            DecodeError::Truncated => write!(f, "truncated message"),
            DecodeError::Trailing(n) => write!(f, "{n} unexpected bytes after the message"),
            DecodeError::Length(n) => write!(f, "bad field length {n}"),
            DecodeError::Utf8 => write!(f, "text is not UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

mod op {
    pub const PING: u8 = 0x01;
    pub const REGISTER_NAME: u8 = 0x02;
    pub const OPEN_NAME: u8 = 0x03;
    pub const REGISTER_KMT: u8 = 0x04;
    pub const OPEN_KMT: u8 = 0x05;
    pub const UNREGISTER: u8 = 0x06;
    pub const OK: u8 = 0x80;
    pub const PONG: u8 = 0x81;
    pub const REGISTERED: u8 = 0x82;
    pub const KMT: u8 = 0x83;
    pub const OPENED: u8 = 0x84;
    pub const ERROR: u8 = 0xFF;
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(opcode: u8) -> Writer {
        Writer(vec![PROTOCOL_VERSION, opcode])
    }
    fn u32(mut self, v: u32) -> Writer {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Writer {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Names longer than the limit are encoded as they are (and refused by the decoder); the
    /// client validates names before sending. The count is clamped to u16 so the framing stays
    /// self-consistent even then.
    fn name(mut self, units: &[u16]) -> Writer {
        let units = &units[..units.len().min(usize::from(u16::MAX))];
        self.0.extend_from_slice(&(units.len() as u16).to_le_bytes());
        for u in units {
            self.0.extend_from_slice(&u.to_le_bytes());
        }
        self
    }
    fn text(mut self, s: &str) -> Writer {
        let mut end = s.len().min(MAX_TEXT);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.0.extend_from_slice(&(end as u16).to_le_bytes());
        self.0.extend_from_slice(&s.as_bytes()[..end]);
        self
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Checks size, version, and returns the opcode and a reader over the fields.
    fn open(msg: &'a [u8]) -> Result<(u8, Reader<'a>), DecodeError> {
        match msg {
            [] => Err(DecodeError::Empty),
            _ if msg.len() > MAX_MESSAGE => Err(DecodeError::TooLarge(msg.len())),
            [v, ..] if *v != PROTOCOL_VERSION => Err(DecodeError::Version(*v)),
            [_] => Err(DecodeError::Truncated),
            [_, opcode, rest @ ..] => Ok((*opcode, Reader(rest))),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn name(&mut self) -> Result<Vec<u16>, DecodeError> {
        let n = usize::from(self.u16()?);
        if n == 0 || n > MAX_NAME_LEN {
            return Err(DecodeError::Length(n));
        }
        let bytes = self.take(n * 2)?;
        Ok(bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect())
    }
    fn text(&mut self) -> Result<String, DecodeError> {
        let n = usize::from(self.u16()?);
        if n > MAX_TEXT {
            return Err(DecodeError::Length(n));
        }
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Utf8)
    }
    fn finish<T>(self, value: T) -> Result<T, DecodeError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(DecodeError::Trailing(self.0.len()))
        }
    }
}

impl Request {
    /// The encoded message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Ping => Writer::new(op::PING),
            Request::RegisterName { name, kind } => Writer::new(op::REGISTER_NAME).u32(*kind).name(name),
            Request::OpenName { name } => Writer::new(op::OPEN_NAME).name(name),
            Request::RegisterKmt { kind } => Writer::new(op::REGISTER_KMT).u32(*kind),
            Request::OpenKmt { value } => Writer::new(op::OPEN_KMT).u32(*value),
            Request::Unregister { id } => Writer::new(op::UNREGISTER).u64(*id),
        }
        .0
    }

    /// Decodes a message. Never panics.
    pub fn decode(msg: &[u8]) -> Result<Request, DecodeError> {
        let (opcode, mut r) = Reader::open(msg)?;
        let req = match opcode {
            op::PING => Request::Ping,
            op::REGISTER_NAME => {
                let kind = r.u32()?;
                Request::RegisterName { kind, name: r.name()? }
            }
            op::OPEN_NAME => Request::OpenName { name: r.name()? },
            op::REGISTER_KMT => Request::RegisterKmt { kind: r.u32()? },
            op::OPEN_KMT => Request::OpenKmt { value: r.u32()? },
            op::UNREGISTER => Request::Unregister { id: r.u64()? },
            other => return Err(DecodeError::Opcode(other)),
        };
        r.finish(req)
    }

    /// How many fds travel with this request.
    pub fn fd_count(&self) -> usize {
        match self {
            Request::RegisterName { .. } | Request::RegisterKmt { .. } => 1,
            _ => 0,
        }
    }
}

impl Reply {
    /// The encoded message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Ok => Writer::new(op::OK),
            Reply::Pong { pid } => Writer::new(op::PONG).u32(*pid),
            Reply::Registered { id } => Writer::new(op::REGISTERED).u64(*id),
            Reply::Kmt { value, id } => Writer::new(op::KMT).u32(*value).u64(*id),
            Reply::Opened { kind } => Writer::new(op::OPENED).u32(*kind),
            Reply::Error { code, message } => Writer::new(op::ERROR).u32(code.to_u32()).text(message),
        }
        .0
    }

    /// Decodes a message. Never panics.
    pub fn decode(msg: &[u8]) -> Result<Reply, DecodeError> {
        let (opcode, mut r) = Reader::open(msg)?;
        let reply = match opcode {
            op::OK => Reply::Ok,
            op::PONG => Reply::Pong { pid: r.u32()? },
            op::REGISTERED => Reply::Registered { id: r.u64()? },
            op::KMT => {
                let value = r.u32()?;
                Reply::Kmt { value, id: r.u64()? }
            }
            op::OPENED => Reply::Opened { kind: r.u32()? },
            op::ERROR => {
                let code = ErrorCode::from_u32(r.u32()?);
                Reply::Error {
                    code,
                    message: r.text()?,
                }
            }
            other => return Err(DecodeError::Opcode(other)),
        };
        r.finish(reply)
    }

    /// How many fds travel with this reply.
    pub fn fd_count(&self) -> usize {
        match self {
            Reply::Opened { .. } => 1,
            _ => 0,
        }
    }

    /// An error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests() -> Vec<Request> {
        vec![
            Request::Ping,
            Request::RegisterName {
                name: "Local\\a".encode_utf16().collect(),
                kind: 3,
            },
            Request::RegisterName {
                name: vec![0x61; MAX_NAME_LEN],
                kind: u32::MAX,
            },
            Request::OpenName {
                name: "Global\\é🦀".encode_utf16().collect(),
            },
            // The wire carries any units; the broker validates names.
            Request::OpenName {
                name: vec![0xD800, 0x5C, 0],
            },
            Request::RegisterKmt { kind: 0 },
            Request::OpenKmt { value: 0x4000_0002 },
            Request::Unregister { id: u64::MAX },
        ]
    }

    fn replies() -> Vec<Reply> {
        vec![
            Reply::Ok,
            Reply::Pong { pid: 1234 },
            Reply::Registered { id: 7 },
            Reply::Kmt {
                value: 0x4000_0006,
                id: 9,
            },
            Reply::Opened { kind: 42 },
            Reply::error(ErrorCode::NotFound, "no such name"),
            Reply::error(ErrorCode::Other(77), ""),
            Reply::error(ErrorCode::Internal, "é".repeat(600)),
        ]
    }

    #[test]
    fn round_trips() {
        for r in requests() {
            let bytes = r.encode();
            assert!(bytes.len() <= MAX_MESSAGE);
            assert_eq!(Request::decode(&bytes), Ok(r.clone()), "{r:?}");
            // A reply decoder refuses requests (disjoint opcodes).
            assert!(Reply::decode(&bytes).is_err());
        }
        for r in replies() {
            let bytes = r.encode();
            let back = Reply::decode(&bytes).unwrap();
            match (&r, &back) {
                // Long texts are cut at a character boundary.
                (Reply::Error { code: a, message: m }, Reply::Error { code: b, message: n }) => {
                    assert_eq!(a, b);
                    assert!(m.starts_with(n.as_str()) && n.len() <= MAX_TEXT);
                }
                _ => assert_eq!(back, r),
            }
            assert!(Request::decode(&bytes).is_err());
        }
        for code in 0..10 {
            assert_eq!(ErrorCode::from_u32(code).to_u32(), code);
        }
    }

    #[test]
    fn malformed() {
        assert_eq!(Request::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(Request::decode(&[2]), Err(DecodeError::Version(2)));
        assert_eq!(Request::decode(&[1]), Err(DecodeError::Truncated));
        assert_eq!(Request::decode(&[1, 0x42]), Err(DecodeError::Opcode(0x42)));
        assert_eq!(Request::decode(&[1, 1, 0]), Err(DecodeError::Trailing(1)));
        assert_eq!(Request::decode(&[1, 5, 1, 2, 3]), Err(DecodeError::Truncated));
        assert_eq!(Request::decode(&[1, 3, 0, 0]), Err(DecodeError::Length(0)));
        assert_eq!(Request::decode(&[1, 3, 5, 1, 0x61, 0]), Err(DecodeError::Length(261)));
        assert_eq!(Request::decode(&[1, 3, 2, 0, 0x61, 0]), Err(DecodeError::Truncated));
        assert_eq!(
            Reply::decode(&[1, 0xFF, 1, 0, 0, 0, 1, 0, 0xC0]),
            Err(DecodeError::Utf8)
        );
        assert_eq!(
            Reply::decode(&[1, 0xFF, 1, 0, 0, 0, 0x01, 0x08]),
            Err(DecodeError::Length(2049))
        );
        let mut big = Request::Ping.encode();
        big.resize(MAX_MESSAGE + 1, 0);
        assert_eq!(Request::decode(&big), Err(DecodeError::TooLarge(MAX_MESSAGE + 1)));
        for e in [
            DecodeError::Empty,
            DecodeError::Utf8,
            DecodeError::Opcode(9),
            DecodeError::Trailing(2),
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    /// SplitMix64: a tiny deterministic generator, so the fuzz test needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x7e7e_7e7e);
        let seeds: Vec<Vec<u8>> = requests()
            .iter()
            .map(Request::encode)
            .chain(replies().iter().map(Reply::encode))
            .collect();
        let mut accepted = 0;
        for i in 0..200_000 {
            let msg: Vec<u8> = if i % 2 == 0 {
                // Pure noise, biased towards the right version byte so opcodes get exercised.
                let len = rng.below(64);
                let mut m: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if len > 0 && rng.below(4) != 0 {
                    m[0] = PROTOCOL_VERSION;
                }
                m
            } else {
                // Mutations of valid messages: flip, truncate, extend.
                let mut m = seeds[rng.below(seeds.len())].clone();
                for _ in 0..=rng.below(3) {
                    match rng.below(3) {
                        0 if !m.is_empty() => {
                            let at = rng.below(m.len());
                            m[at] ^= 1 << rng.below(8);
                        }
                        1 => m.truncate(rng.below(m.len() + 1)),
                        _ => m.push(rng.next() as u8),
                    }
                }
                m
            };
            // Whatever decodes must re-encode to the same bytes (the encoding is canonical).
            if let Ok(r) = Request::decode(&msg) {
                assert_eq!(r.encode(), msg);
                accepted += 1;
            }
            if let Ok(r) = Reply::decode(&msg) {
                assert_eq!(r.encode(), msg);
                accepted += 1;
            }
        }
        assert!(accepted > 0);
        // Huge inputs are refused before anything else.
        let huge = vec![PROTOCOL_VERSION; 1 << 20];
        assert!(Request::decode(&huge).is_err() && Reply::decode(&huge).is_err());
    }
}
