//! The media packet wire format.
//!
//! A media packet is one datagram: a fixed 15-byte big-endian header followed
//! by the payload (the rest of the datagram, possibly empty).
//!
//! | bytes   | field            | type |
//! |---------|------------------|------|
//! | 0       | version (= 1)    | u8   |
//! | 1       | stream_id        | u8   |
//! | 2       | flags            | u8   |
//! | 3..7    | sequence         | u32  |
//! | 7..11   | timestamp        | u32  |
//! | 11..13  | fragment_index   | u16  |
//! | 13..15  | fragment_count   | u16  |
//!
//! Bit 0 of `flags` marks a keyframe; the other bits are carried through
//! untouched. The error messages are shared with the Python and Cython
//! implementations and must stay byte-for-byte identical.

use std::fmt;

/// The only wire-format version this codec speaks.
pub const VERSION: u8 = 1;

/// Size of the fixed header in bytes.
pub const HEADER_SIZE: usize = 15;

/// `flags` bit that marks a keyframe.
pub const FLAG_KEYFRAME: u8 = 0x01;

/// Why a packet cannot be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// The datagram is shorter than the header.
    Truncated { len: usize },
    /// The version byte is not [`VERSION`].
    UnsupportedVersion { version: u8 },
    /// `fragment_count` is 0.
    FragmentCountZero,
    /// `fragment_index >= fragment_count`.
    FragmentIndexOutOfRange { index: u16, count: u16 },
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PacketError::Truncated { len } => write!(
                f,
                "media packet truncated: {len} bytes, header needs {HEADER_SIZE}"
            ),
            PacketError::UnsupportedVersion { version } => write!(
                f,
                "unsupported media packet version {version} (expected {VERSION})"
            ),
            PacketError::FragmentCountZero => f.write_str("media packet fragment_count is 0"),
            PacketError::FragmentIndexOutOfRange { index, count } => write!(
                f,
                "media packet fragment_index {index} out of range for fragment_count {count}"
            ),
        }
    }
}

impl std::error::Error for PacketError {}

/// The fields of a media packet header (the version is implicit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PacketHeader {
    pub stream_id: u8,
    pub flags: u8,
    pub sequence: u32,
    pub timestamp: u32,
    pub fragment_index: u16,
    pub fragment_count: u16,
}

/// Check the fragment fields shared by encode and decode.
#[inline]
pub fn validate_fragment(fragment_index: u16, fragment_count: u16) -> Result<(), PacketError> {
    if fragment_count == 0 {
        return Err(PacketError::FragmentCountZero);
    }
    if fragment_index >= fragment_count {
        return Err(PacketError::FragmentIndexOutOfRange {
            index: fragment_index,
            count: fragment_count,
        });
    }
    Ok(())
}

impl PacketHeader {
    /// Whether the keyframe flag (bit 0 of `flags`) is set.
    #[inline]
    pub fn is_keyframe(&self) -> bool {
        self.flags & FLAG_KEYFRAME != 0
    }

    /// Check that the header can be put on the wire.
    #[inline]
    pub fn validate(&self) -> Result<(), PacketError> {
        validate_fragment(self.fragment_index, self.fragment_count)
    }

    /// Serialise the header (including the version byte) without validating.
    #[inline]
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let s = self.sequence.to_be_bytes();
        let t = self.timestamp.to_be_bytes();
        let i = self.fragment_index.to_be_bytes();
        let c = self.fragment_count.to_be_bytes();
        [
            VERSION,
            self.stream_id,
            self.flags,
            s[0],
            s[1],
            s[2],
            s[3],
            t[0],
            t[1],
            t[2],
            t[3],
            i[0],
            i[1],
            c[0],
            c[1],
        ]
    }

    /// Validate the header and write it into `buf`.
    #[inline]
    pub fn write_header(&self, buf: &mut [u8; HEADER_SIZE]) -> Result<(), PacketError> {
        self.validate()?;
        *buf = self.to_bytes();
        Ok(())
    }

    /// Parse a header from exactly [`HEADER_SIZE`] bytes, validating it.
    #[inline]
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Result<Self, PacketError> {
        if b[0] != VERSION {
            return Err(PacketError::UnsupportedVersion { version: b[0] });
        }
        let header = PacketHeader {
            stream_id: b[1],
            flags: b[2],
            sequence: u32::from_be_bytes([b[3], b[4], b[5], b[6]]),
            timestamp: u32::from_be_bytes([b[7], b[8], b[9], b[10]]),
            fragment_index: u16::from_be_bytes([b[11], b[12]]),
            fragment_count: u16::from_be_bytes([b[13], b[14]]),
        };
        header.validate()?;
        Ok(header)
    }
}

/// Split a datagram into its validated header and its payload.
#[inline]
pub fn decode(data: &[u8]) -> Result<(PacketHeader, &[u8]), PacketError> {
    let Some((head, payload)) = data.split_first_chunk::<HEADER_SIZE>() else {
        return Err(PacketError::Truncated { len: data.len() });
    };
    Ok((PacketHeader::from_bytes(head)?, payload))
}

/// Append the encoded packet (header then payload) to `out`.
///
/// Nothing is appended if the header is invalid.
#[inline]
pub fn encode_into(
    header: &PacketHeader,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PacketError> {
    header.validate()?;
    out.reserve(HEADER_SIZE + payload.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Encode a packet into a new vector.
pub fn encode(header: &PacketHeader, payload: &[u8]) -> Result<Vec<u8>, PacketError> {
    let mut out = Vec::with_capacity(HEADER_SIZE + payload.len());
    encode_into(header, payload, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> PacketHeader {
        PacketHeader {
            stream_id: 2,
            flags: 0x81,
            sequence: 0x0102_0304,
            timestamp: 0xA0B0_C0D0,
            fragment_index: 3,
            fragment_count: 0x0105,
        }
    }

    #[test]
    fn known_layout() {
        let bytes = encode(&header(), b"xyz").unwrap();
        assert_eq!(
            bytes,
            [1, 2, 0x81, 1, 2, 3, 4, 0xA0, 0xB0, 0xC0, 0xD0, 0, 3, 1, 5, b'x', b'y', b'z']
        );
        let (h, p) = decode(&bytes).unwrap();
        assert_eq!(h, header());
        assert_eq!(p, b"xyz");
        assert!(h.is_keyframe());
    }

    #[test]
    fn empty_payload() {
        let bytes = encode(&header(), b"").unwrap();
        assert_eq!(bytes.len(), HEADER_SIZE);
        let (h, p) = decode(&bytes).unwrap();
        assert_eq!(h, header());
        assert!(p.is_empty());
    }

    #[test]
    fn write_header_matches_encode() {
        let mut buf = [0u8; HEADER_SIZE];
        header().write_header(&mut buf).unwrap();
        assert_eq!(&buf[..], &encode(&header(), b"").unwrap()[..]);
    }

    #[test]
    fn error_messages() {
        let mut bytes = encode(&header(), b"").unwrap();
        assert_eq!(
            decode(&bytes[..14]).unwrap_err().to_string(),
            "media packet truncated: 14 bytes, header needs 15"
        );
        assert_eq!(
            decode(&[]).unwrap_err().to_string(),
            "media packet truncated: 0 bytes, header needs 15"
        );
        bytes[0] = 2;
        assert_eq!(
            decode(&bytes).unwrap_err().to_string(),
            "unsupported media packet version 2 (expected 1)"
        );
        bytes[0] = 1;
        bytes[13] = 0;
        bytes[14] = 0;
        assert_eq!(
            decode(&bytes).unwrap_err().to_string(),
            "media packet fragment_count is 0"
        );
        bytes[14] = 3;
        assert_eq!(
            decode(&bytes).unwrap_err().to_string(),
            "media packet fragment_index 3 out of range for fragment_count 3"
        );
    }

    #[test]
    fn encode_validates() {
        let mut h = header();
        h.fragment_count = 0;
        h.fragment_index = 0;
        let mut out = Vec::new();
        assert_eq!(
            encode_into(&h, b"abc", &mut out),
            Err(PacketError::FragmentCountZero)
        );
        assert!(out.is_empty());
        h.fragment_count = 4;
        h.fragment_index = 4;
        assert_eq!(
            encode(&h, b""),
            Err(PacketError::FragmentIndexOutOfRange { index: 4, count: 4 })
        );
        let mut buf = [0u8; HEADER_SIZE];
        assert!(h.write_header(&mut buf).is_err());
        assert_eq!(buf, [0u8; HEADER_SIZE]);
    }

    fn arb_header() -> impl Strategy<Value = PacketHeader> {
        (
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            1u16..=u16::MAX,
        )
            .prop_flat_map(|(stream_id, flags, sequence, timestamp, count)| {
                (0..count).prop_map(move |fragment_index| PacketHeader {
                    stream_id,
                    flags,
                    sequence,
                    timestamp,
                    fragment_index,
                    fragment_count: count,
                })
            })
    }

    proptest! {
        #[test]
        fn roundtrip(h in arb_header(), payload in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let bytes = encode(&h, &payload).unwrap();
            prop_assert_eq!(bytes.len(), HEADER_SIZE + payload.len());
            let (h2, p2) = decode(&bytes).unwrap();
            prop_assert_eq!(h2, h);
            prop_assert_eq!(p2, &payload[..]);
            prop_assert_eq!(h2.is_keyframe(), h.flags & 1 == 1);
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            match decode(&data) {
                Ok((h, p)) => {
                    // Whatever decodes re-encodes to the same bytes.
                    prop_assert_eq!(encode(&h, p).unwrap(), data);
                }
                Err(PacketError::Truncated { len }) => prop_assert!(len < HEADER_SIZE),
                Err(PacketError::UnsupportedVersion { version }) => prop_assert_ne!(version, VERSION),
                Err(PacketError::FragmentCountZero) => {}
                Err(PacketError::FragmentIndexOutOfRange { index, count }) => prop_assert!(index >= count),
            }
        }

        #[test]
        fn decode_valid_prefix(h in arb_header(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            // Arbitrary bytes after a valid header are the payload.
            let mut data = h.to_bytes().to_vec();
            data.extend_from_slice(&tail);
            let (h2, p) = decode(&data).unwrap();
            prop_assert_eq!(h2, h);
            prop_assert_eq!(p, &tail[..]);
        }
    }
}
