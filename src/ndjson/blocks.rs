//! The long-string fast path of the validating skip: where a string runs on past 16 bytes, 64 bytes at
//! a time with SSE2 — part of every x86_64 CPU, so no runtime detection — or a portable loop elsewhere,
//! find the first byte that ends a plain run: a quote, a backslash or a control character.

/// Bit i set when byte i of the block is `"`, `\` or below 0x20 (the portable version, and the
/// reference the SSE2 one is tested against).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
pub fn specials_scalar(block: &[u8; 64]) -> u64 {
    block.iter().enumerate().fold(0, |m, (i, &c)| m | u64::from(c == b'"' || c == b'\\' || c < 0x20) << i)
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub fn specials(block: &[u8; 64]) -> u64 {
    // SAFETY: `specials_sse2` needs only SSE2, which this build enables for the whole program (the
    // cfg above; it is part of the x86_64 baseline), so every CPU that runs this binary has it.
    unsafe { specials_sse2(block) }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub fn specials(block: &[u8; 64]) -> u64 {
    specials_scalar(block)
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn specials_sse2(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::*;
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let c1f = _mm_set1_epi8(0x1f);
    let mut m = 0u64;
    for k in 0..4 {
        let word = |o: usize| i64::from_le_bytes(block[16 * k + o..16 * k + o + 8].try_into().expect("8 bytes"));
        let v = _mm_set_epi64x(word(8), word(0));
        // Unsigned "at most 0x1f": max(v, 0x1f) == 0x1f.
        let special = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
            _mm_cmpeq_epi8(_mm_max_epu8(v, c1f), c1f),
        );
        m |= u64::from(_mm_movemask_epi8(special) as u16) << (16 * k);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_masks_equal_the_scalar_ones() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = b"\"\\ \t\n\r\x01\x1f\x20\x21\x7f\x80\xff{}[]:,a0";
        for _ in 0..20_000 {
            let mut block = [0u8; 64];
            for c in &mut block {
                *c = if rng.bool() { alphabet[rng.usize(..alphabet.len())] } else { rng.u8(..) };
            }
            assert_eq!(specials(&block), specials_scalar(&block), "{block:?}");
        }
    }
}
