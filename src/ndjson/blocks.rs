//! Stage one of the validating skip: the line in 64-byte blocks, each turned into bit masks (quotes,
//! backslashes, control characters, whitespace) with SSE2 — part of every x86_64 CPU, so no runtime
//! detection — or a portable loop elsewhere; from those, which bytes are inside strings (the
//! simdjson technique: escaped characters from runs of backslashes, then a prefix XOR of the real
//! quotes), and the positions the grammar has to look at: every non-whitespace byte outside strings
//! and every opening quote. Inside strings it checks what needs no grammar: no control characters,
//! and every escape valid (`\uXXXX` surrogates paired). Stage two (the grammar) is in `json.rs`.

use super::json::{JsonError, escape};

/// Bit i describes byte i of a 64-byte block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Masks {
    pub quote: u64,
    pub backslash: u64,
    /// Bytes below 0x20.
    pub control: u64,
    /// Bytes up to 0x20: space and the control characters (whitespace, or an error).
    pub space_or_control: u64,
}

/// The masks of one block, portably (and as the reference the SSE2 version is tested against).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
pub fn classify_scalar(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (i, &c) in block.iter().enumerate() {
        let bit = 1u64 << i;
        m.quote |= u64::from(c == b'"') * bit;
        m.backslash |= u64::from(c == b'\\') * bit;
        m.control |= u64::from(c < 0x20) * bit;
        m.space_or_control |= u64::from(c <= 0x20) * bit;
    }
    m
}

/// For a block that starts inside a string: `None` if it has a quote or a control character,
/// else its backslashes (all of it is then string: only escapes to check). The long-text fast path.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn plain_text(block: &[u8; 64]) -> Option<u64> {
    // SAFETY: as for `classify`.
    unsafe { plain_text_sse2(block) }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn plain_text(block: &[u8; 64]) -> Option<u64> {
    let m = classify_scalar(block);
    if m.quote | m.control == 0 { Some(m.backslash) } else { None }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn plain_text_sse2(block: &[u8; 64]) -> Option<u64> {
    use std::arch::x86_64::*;
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let c1f = _mm_set1_epi8(0x1f);
    let mut any = _mm_setzero_si128();
    let mut bs = 0u64;
    for k in 0..4 {
        let word = |o: usize| i64::from_le_bytes(block[16 * k + o..16 * k + o + 8].try_into().expect("8 bytes"));
        let v = _mm_set_epi64x(word(8), word(0));
        any = _mm_or_si128(any, _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(_mm_max_epu8(v, c1f), c1f)));
        bs |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, backslash)) as u16) << (16 * k);
    }
    if _mm_movemask_epi8(any) == 0 { Some(bs) } else { None }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub fn classify(block: &[u8; 64]) -> Masks {
    // SAFETY: `classify_sse2` needs only SSE2, which this build enables for the whole program (the
    // cfg above; it is part of the x86_64 baseline), so every CPU that runs this binary has it.
    unsafe { classify_sse2(block) }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub fn classify(block: &[u8; 64]) -> Masks {
    classify_scalar(block)
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn classify_sse2(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    let mut m = Masks::default();
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let c1f = _mm_set1_epi8(0x1f);
    let c20 = _mm_set1_epi8(0x20);
    for k in 0..4 {
        let word = |o: usize| i64::from_le_bytes(block[16 * k + o..16 * k + o + 8].try_into().expect("8 bytes"));
        let v = _mm_set_epi64x(word(8), word(0));
        let bits = |x: __m128i| u64::from(_mm_movemask_epi8(x) as u16) << (16 * k);
        m.quote |= bits(_mm_cmpeq_epi8(v, quote));
        m.backslash |= bits(_mm_cmpeq_epi8(v, backslash));
        // Unsigned "at most": max(v, n) == n.
        m.control |= bits(_mm_cmpeq_epi8(_mm_max_epu8(v, c1f), c1f));
        m.space_or_control |= bits(_mm_cmpeq_epi8(_mm_max_epu8(v, c20), c20));
    }
    m
}

const ODD: u64 = 0xAAAA_AAAA_AAAA_AAAA;

/// XOR of all bits at or below each bit: 1 from an opening quote up to (not including) its closing one.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The positions stage two reads, block by block, as it asks for them.
pub struct Tokens<'a> {
    b: &'a [u8],
    /// Start of the block `bits` describes, and of the next one.
    base: usize,
    next: usize,
    bits: u64,
    /// All ones when the next block starts inside a string.
    in_string: u64,
    /// 1 when the next block's first byte is escaped.
    escaped_next: u64,
    /// Escapes are validated up to here (a surrogate pair covers the next backslash too).
    checked_to: usize,
    /// The last block had no positions: likely inside a long string, where the fast path pays.
    quiet: bool,
    /// A problem stage one found; tokens stop there.
    pub err: Option<JsonError>,
}

impl<'a> Tokens<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Tokens { b, base: 0, next: 0, bits: 0, in_string: 0, escaped_next: 0, checked_to: 0, quiet: false, err: None }
    }

    /// The next position to read, or `None` at the end of the line (or at a stage-one error).
    #[inline(always)]
    pub fn next(&mut self) -> Option<usize> {
        while self.bits == 0 {
            if !self.refill() {
                return None;
            }
        }
        let t = self.base + self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        Some(t)
    }

    /// The next position at or after `from` (skips the rest of a number or literal).
    #[inline(always)]
    pub fn next_from(&mut self, from: usize) -> Option<usize> {
        loop {
            let t = self.next()?;
            if t >= from {
                return Some(t);
            }
        }
    }

    #[inline(never)]
    fn refill(&mut self) -> bool {
        if self.err.is_some() {
            return false;
        }
        let b = self.b;
        if self.next >= b.len() {
            if self.in_string != 0 {
                self.err = Some(JsonError::Eof(b.len() + 1));
            }
            return false;
        }
        let base = self.next;
        let m = match b.get(base..base + 64) {
            Some(block) => {
                let block: &[u8; 64] = block.try_into().expect("64 bytes");
                if self.in_string != 0
                    && self.quiet
                    && let Some(backslash) = plain_text(block)
                {
                    // All string: no positions, only escapes to check.
                    self.base = base;
                    self.next = base + 64;
                    let (_, escapes) = self.escapes(backslash);
                    return self.check_escapes(base, escapes);
                }
                classify(block)
            }
            None => {
                // The last, partial block: padded with spaces, which are whitespace.
                let mut block = [b' '; 64];
                block[..b.len() - base].copy_from_slice(&b[base..]);
                classify(&block)
            }
        };
        self.base = base;
        self.next = base + 64;
        let (escaped, escapes) = self.escapes(m.backslash);
        let real_quotes = m.quote & !escaped;
        let inside = prefix_xor(real_quotes) ^ self.in_string;
        self.in_string = ((inside as i64) >> 63) as u64;
        let outside = !(inside | real_quotes);
        let bad_control = m.control & inside;
        let odd_space = m.control & outside;
        if bad_control != 0 {
            return self.fail(JsonError::Syntax(base + bad_control.trailing_zeros() as usize + 1));
        }
        if odd_space != 0 && !self.only_whitespace(base, odd_space) {
            return false;
        }
        if !self.check_escapes(base, escapes & inside) {
            return false;
        }
        self.bits = (outside & !m.space_or_control) | (real_quotes & inside);
        self.quiet = self.bits == 0;
        true
    }

    /// Escaped characters and escaping backslashes of a block, from its backslashes: the character
    /// after each backslash that starts an escape (simdjson's branch-free odd-run arithmetic).
    #[inline(always)]
    fn escapes(&mut self, backslash: u64) -> (u64, u64) {
        if backslash == 0 {
            return (std::mem::take(&mut self.escaped_next), 0);
        }
        let potential = backslash & !self.escaped_next;
        let codes = (((potential << 1) | ODD).wrapping_sub(potential)) ^ ODD;
        let escaped = codes ^ (backslash | self.escaped_next);
        let escapes = codes & backslash;
        self.escaped_next = escapes >> 63;
        (escaped, escapes)
    }

    /// Validates the escapes that start at the bits of `escapes` (inside strings).
    #[inline(always)]
    fn check_escapes(&mut self, base: usize, mut escapes: u64) -> bool {
        while escapes != 0 {
            let at = base + escapes.trailing_zeros() as usize;
            escapes &= escapes - 1;
            if at >= self.checked_to {
                match escape(self.b, at) {
                    Ok(end) => self.checked_to = end,
                    Err(e) => return self.fail(e),
                }
            }
        }
        true
    }

    /// Control characters outside strings must be `\t`, `\n` or `\r`.
    #[cold]
    fn only_whitespace(&mut self, base: usize, mut mask: u64) -> bool {
        while mask != 0 {
            let at = base + mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if at < self.b.len() && !matches!(self.b[at], b'\t' | b'\n' | b'\r') {
                self.err = Some(JsonError::Syntax(at + 1));
                return false;
            }
        }
        true
    }

    #[cold]
    fn fail(&mut self, e: JsonError) -> bool {
        self.err = Some(e);
        false
    }
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
            assert_eq!(classify(&block), classify_scalar(&block), "{block:?}");
        }
    }

    /// Reference: which bytes are escaped, walking byte by byte.
    fn escaped_reference(b: &[u8]) -> Vec<bool> {
        let mut out = vec![false; b.len()];
        let mut pending = false;
        for (i, &c) in b.iter().enumerate() {
            if pending {
                out[i] = true;
                pending = false;
            } else if c == b'\\' {
                pending = true;
            }
        }
        out
    }

    #[test]
    fn quotes_after_backslash_runs_across_blocks() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..5_000 {
            let len = rng.usize(1..300);
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.u8(..4) == 0 {
                        b'"'
                    } else if rng.bool() {
                        b'\\'
                    } else {
                        b'a'
                    }
                })
                .collect();
            let esc = escaped_reference(&b);
            // Walk the same way the blocks do and compare the real quotes found.
            let mut t = Tokens::new(&b);
            let mut found = Vec::new();
            while let Some(p) = {
                // Bypass escape validation: this test is about the masks.
                t.checked_to = usize::MAX;
                t.next()
            } {
                found.push(p);
            }
            let mut inside = false;
            let mut want = Vec::new();
            for (i, &c) in b.iter().enumerate() {
                if c == b'"' && !esc[i] {
                    if !inside {
                        want.push(i);
                    }
                    inside = !inside;
                } else if !inside {
                    want.push(i); // a non-whitespace byte outside strings
                }
            }
            assert_eq!(found, want, "{:?}", String::from_utf8_lossy(&b));
        }
    }
}
