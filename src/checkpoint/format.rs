//! The bytes of one checkpoint: a fixed header (magic, format version, payload length,
//! CRC-32 of the payload) and the payload, the checkpoint serialised with postcard (a
//! compact binary serde format).
//!
//! ```text
//! offset 0   8 bytes  b"MOTIFCKP"
//!        8   4 bytes  format version, little endian
//!       12   8 bytes  payload length, little endian
//!       20   4 bytes  CRC-32 (IEEE) of the payload, little endian
//!       24   …        payload
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first bytes of every checkpoint file.
pub const MAGIC: &[u8; 8] = b"MOTIFCKP";

/// The format version this build writes and reads. Bump it with any change to what a
/// checkpoint holds.
pub const FORMAT_VERSION: u32 = 5;

const HEADER: usize = 24;

/// Why bytes are not a usable checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The bytes do not start with [`MAGIC`].
    #[error("not a motif checkpoint (no MOTIFCKP header)")]
    NotACheckpoint,
    /// Another format version.
    #[error("checkpoint format version {found}; this motif reads version {FORMAT_VERSION}")]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// Fewer or more bytes than the header announces.
    #[error("checkpoint is truncated or has trailing bytes: header says {expected} payload bytes, found {found}")]
    Length {
        /// Payload bytes the header announces.
        expected: u64,
        /// Payload bytes present.
        found: u64,
    },
    /// The payload does not match its checksum.
    #[error("checkpoint is corrupt: checksum {found:08x}, header says {expected:08x}")]
    Checksum {
        /// The checksum in the header.
        expected: u32,
        /// The checksum of the payload.
        found: u32,
    },
    /// The payload passed its checksum but does not decode (written by a different build
    /// of the same format version, or crafted).
    #[error("checkpoint payload does not decode: {0}")]
    Payload(String),
    /// Serialising failed (a bug: every state serialises).
    #[error("cannot serialise checkpoint: {0}")]
    Serialise(String),
}

/// The checkpoint file's bytes for `value`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FormatError> {
    encode_sized(value, 0)
}

/// [`encode`] into a buffer of `capacity` bytes to begin with (the size of the previous
/// checkpoint, say): a large state is then written once, not copied as the buffer grows.
pub fn encode_sized<T: Serialize>(value: &T, capacity: usize) -> Result<Vec<u8>, FormatError> {
    let mut bytes = Vec::with_capacity(capacity.max(HEADER + 64));
    bytes.extend_from_slice(&[0; HEADER]);
    let mut bytes =
        postcard::to_extend(value, bytes).map_err(|e| FormatError::Serialise(e.to_string()))?;
    let payload_len = (bytes.len() - HEADER) as u64;
    let crc = crc32fast::hash(&bytes[HEADER..]);
    bytes[..8].copy_from_slice(MAGIC);
    bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes[12..20].copy_from_slice(&payload_len.to_le_bytes());
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// The payload of `value` (what [`frame`] puts a header on).
pub fn encode_payload<T: Serialize>(value: &T) -> Result<Vec<u8>, FormatError> {
    postcard::to_allocvec(value).map_err(|e| FormatError::Serialise(e.to_string()))
}

/// A payload with its header: the bytes of a checkpoint file.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Checks the header and checksum of `bytes` and returns the payload.
pub fn payload(bytes: &[u8]) -> Result<&[u8], FormatError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(FormatError::NotACheckpoint);
    }
    let field = |at: usize, n: usize| bytes.get(at..at + n);
    let (Some(version), Some(len), Some(crc)) = (field(8, 4), field(12, 8), field(20, 4)) else {
        return Err(FormatError::Length {
            expected: 0,
            found: 0,
        });
    };
    let version = u32::from_le_bytes(version.try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err(FormatError::Version { found: version });
    }
    let expected = u64::from_le_bytes(len.try_into().unwrap_or_default());
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != expected {
        return Err(FormatError::Length {
            expected,
            found: payload.len() as u64,
        });
    }
    let expected = u32::from_le_bytes(crc.try_into().unwrap_or_default());
    let found = crc32fast::hash(payload);
    if found != expected {
        return Err(FormatError::Checksum { expected, found });
    }
    Ok(payload)
}

/// Reads a value from checkpoint bytes (header, checksum, payload).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FormatError> {
    decode_payload(payload(bytes)?)
}

/// Reads a value from a payload whose checksum has been checked.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FormatError> {
    let (value, rest) =
        postcard::take_from_bytes(payload).map_err(|e| FormatError::Payload(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FormatError::Payload(format!(
            "{} bytes after the checkpoint's end",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        id: u64,
        names: Vec<String>,
    }

    fn sample() -> Sample {
        Sample {
            id: 7,
            names: vec!["a".into(), "bé".into()],
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(bytes, frame(&encode_payload(&sample()).unwrap()));
        assert_eq!(bytes, encode_sized(&sample(), 1 << 20).unwrap());
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample());
    }

    #[test]
    fn every_truncation_and_every_flipped_bit_is_detected() {
        let bytes = encode(&sample()).unwrap();
        for n in 0..bytes.len() {
            assert!(decode::<Sample>(&bytes[..n]).is_err(), "truncated to {n}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode::<Sample>(&b).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(
            decode::<Sample>(b"{\"json\":1}"),
            Err(FormatError::NotACheckpoint)
        );
        let mut v = bytes.clone();
        v[8] = 9;
        assert_eq!(decode::<Sample>(&v), Err(FormatError::Version { found: 9 }));
        let mut c = bytes.clone();
        let last = c.len() - 1;
        c[last] ^= 0x40;
        assert!(matches!(
            decode::<Sample>(&c),
            Err(FormatError::Checksum { .. })
        ));
        let mut long = bytes;
        long.push(0);
        assert!(matches!(
            decode::<Sample>(&long),
            Err(FormatError::Length { .. })
        ));
    }
}
