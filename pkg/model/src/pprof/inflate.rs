//! Whole-buffer gunzip with libdeflate, the common case of a push.
//!
//! A push arrives whole and its gzip trailer states its size, so the stream
//! need not be inflated piece by piece: libdeflate inflates it in one call
//! into a buffer of that size, a third faster than zlib-rs through flate2's
//! stream (which also computes the CRC a second time). Anything else, a
//! stream of several members, trailing bytes or damaged data, is left to the
//! streaming path, so that errors keep its messages.

use std::cell::RefCell;
use std::ptr::NonNull;

use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_free_decompressor,
    libdeflate_gzip_decompress_ex, libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE,
    libdeflate_result_LIBDEFLATE_SUCCESS,
};

/// What the one-call inflate made of a payload.
#[derive(Debug, PartialEq)]
pub(super) enum Inflated {
    Whole(Vec<u8>),
    /// More than the limit.
    TooLarge,
    /// Not a lone, intact gzip member: the streaming path decides.
    Other,
}

/// A libdeflate decompressor (about 10 KB of tables), one per thread.
struct Decompressor(NonNull<libdeflate_decompressor>);

impl Decompressor {
    fn new() -> Option<Self> {
        // SAFETY: no arguments; a null return means out of memory.
        NonNull::new(unsafe { libdeflate_alloc_decompressor() }).map(Self)
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: allocated by `libdeflate_alloc_decompressor`, freed once.
        unsafe { libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// Inflates the gzip member `raw` into a buffer of `hint` bytes, doubled
/// while too small, never beyond `max + 1`.
pub(super) fn gunzip(raw: &[u8], hint: usize, max: usize) -> Inflated {
    DECOMPRESSOR.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Decompressor::new();
        }
        match slot {
            Some(d) => gunzip_with(d, raw, hint, max),
            None => Inflated::Other,
        }
    })
}

fn gunzip_with(d: &mut Decompressor, raw: &[u8], hint: usize, max: usize) -> Inflated {
    let limit = max.saturating_add(1);
    let mut capacity = hint.clamp(1, limit);
    loop {
        let mut out: Vec<u8> = Vec::with_capacity(capacity);
        let (mut read, mut written) = (0usize, 0usize);
        // SAFETY: the input is `raw` whole; the output is `out`'s spare
        // capacity, at least `capacity` bytes, of which libdeflate writes
        // at most that many and reports how many in `written`.
        let result = unsafe {
            libdeflate_gzip_decompress_ex(
                d.0.as_ptr(),
                raw.as_ptr().cast(),
                raw.len(),
                out.as_mut_ptr().cast(),
                capacity,
                &mut read,
                &mut written,
            )
        };
        #[allow(non_upper_case_globals)]
        match result {
            libdeflate_result_LIBDEFLATE_SUCCESS if read == raw.len() && written <= max => {
                // SAFETY: libdeflate initialized the first `written` bytes.
                unsafe { out.set_len(written) };
                return Inflated::Whole(out);
            }
            libdeflate_result_LIBDEFLATE_SUCCESS if read == raw.len() => return Inflated::TooLarge,
            libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE if capacity >= limit => {
                return Inflated::TooLarge;
            }
            libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => {
                capacity = capacity.saturating_mul(2).min(limit);
            }
            _ => return Inflated::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflates_one_member_whatever_the_hint() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let gz = gzip(&data);
        for hint in [0, 1, 1000, data.len(), data.len() + 1, 10 * data.len()] {
            assert_eq!(
                gunzip(&gz, hint, 1 << 30),
                Inflated::Whole(data.clone()),
                "{hint}"
            );
        }
        assert_eq!(gunzip(&gzip(&[]), 1, 10), Inflated::Whole(Vec::new()));
    }

    #[test]
    fn stops_at_the_limit() {
        let gz = gzip(&[7; 10_000]);
        assert_eq!(
            gunzip(&gz, 10_001, 10_000),
            Inflated::Whole(vec![7; 10_000])
        );
        for hint in [1, 9_999, 10_000, 100_000] {
            assert_eq!(gunzip(&gz, hint, 9_999), Inflated::TooLarge, "{hint}");
        }
    }

    #[test]
    fn leaves_members_trailing_bytes_and_damage_to_the_stream() {
        let one = gzip(b"profile");
        let two = [one.clone(), gzip(b"more")].concat();
        assert_eq!(gunzip(&two, 100, 1000), Inflated::Other);
        assert_eq!(
            gunzip(&[one.as_slice(), b"xx"].concat(), 100, 1000),
            Inflated::Other
        );
        assert_eq!(gunzip(&one[..one.len() - 3], 100, 1000), Inflated::Other);
        let mut bad_crc = one.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 1;
        assert_eq!(gunzip(&bad_crc, 100, 1000), Inflated::Other);
    }
}
