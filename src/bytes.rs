//! Byte helpers read a word at a time, shared by the decoder (field names), the key hash and
//! the shard's key comparison.

/// The little-endian word of 8 bytes of `b` from `i` (which must have them).
#[inline]
pub(crate) fn word8(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

#[inline]
pub(crate) fn word4(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[i..i + 4]);
    u64::from(u32::from_le_bytes(w))
}

/// Up to eight bytes as a little-endian word padded with zeros (the first eight of a longer
/// slice), read with at most two loads: copying them into a zeroed word first would cost a
/// store-forwarding stall each time.
#[inline]
pub(crate) fn padded_word(b: &[u8]) -> u64 {
    let n = b.len();
    match n {
        8.. => word8(b, 0),
        // Two overlapping words: bytes n-4..4 land in the same place from both.
        4..=7 => word4(b, 0) | (word4(b, n - 4) << (8 * (n - 4))),
        1..=3 => {
            u64::from(b[0])
                | (u64::from(b[n / 2]) << (8 * (n / 2)))
                | (u64::from(b[n - 1]) << (8 * (n - 1)))
        }
        0 => 0,
    }
}

/// Byte equality, comparing short strings by word reads instead of calling `memcmp`.
#[inline]
pub(crate) fn short_str_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 4 {
        // Covers every byte of 0 to 3.
        return n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1]);
    }
    if n <= 8 {
        return word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4);
    }
    if n <= 16 {
        return word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8);
    }
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_padded_word_holds_its_bytes_then_zeros() {
        let bytes: Vec<u8> = (1..=9u8).map(|b| b.wrapping_mul(37)).collect();
        for n in 0..=8 {
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(padded_word(&bytes[..n]), u64::from_le_bytes(w), "{n} bytes");
        }
        assert_eq!(
            padded_word(&bytes),
            padded_word(&bytes[..8]),
            "first eight of nine"
        );
    }
}
