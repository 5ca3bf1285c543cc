//! JSON string escaping, exactly as `serde_json` escapes (`\"`, `\\`, `\b`,
//! `\f`, `\n`, `\r`, `\t`, other controls as `\u00XX`), for the writers that
//! build JSON text by hand on hot paths: siemquery's exports, the `parsed`
//! and `extra` columns of ingest, snapshot rows. Safe code: the scan for
//! the next byte to escape goes 16 bytes at a time through two words.

/// Where escaped text goes: a `String` or a byte buffer.
pub trait Sink {
    /// Appends text.
    fn text(&mut self, s: &str);
    /// Appends ASCII bytes.
    fn ascii(&mut self, b: &[u8]);
}

impl Sink for String {
    #[inline]
    fn text(&mut self, s: &str) {
        self.push_str(s);
    }

    #[inline]
    fn ascii(&mut self, b: &[u8]) {
        self.extend(b.iter().map(|&c| char::from(c)));
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn text(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }

    #[inline]
    fn ascii(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// What follows a backslash for a byte `serde_json` escapes (0: none; `u`: `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit set in each byte of `w` (little endian) that is below
/// 0x20, `"` or `\`; above the lowest such byte, bits may be set spuriously
/// (borrows), so only the lowest set bit is exact.
#[inline]
fn word_escapes(w: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    below_space | zero(w ^ (ONES * b'"' as u64)) | zero(w ^ (ONES * b'\\' as u64))
}

/// The first index from `i` on of a byte JSON escapes, or `b.len()`.
#[inline]
fn next_escape(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 16) {
        let (lo, hi) = chunk.split_at(8);
        let lo = word_escapes(u64::from_le_bytes(lo.try_into().unwrap_or_default()));
        let hi = word_escapes(u64::from_le_bytes(hi.try_into().unwrap_or_default()));
        if lo | hi != 0 {
            return i + if lo != 0 {
                (lo.trailing_zeros() / 8) as usize
            } else {
                8 + (hi.trailing_zeros() / 8) as usize
            };
        }
        i += 16;
    }
    if let Some(chunk) = b.get(i..i + 8) {
        let mask = word_escapes(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        if mask != 0 {
            return i + (mask.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if ESCAPE[usize::from(c)] != 0 {
            return i;
        }
        i += 1;
    }
    b.len()
}

/// Appends `s` as a JSON string, quotes included.
#[inline]
pub fn push_str<S: Sink>(out: &mut S, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.ascii(b"\"");
    let mut start = 0;
    loop {
        let i = next_escape(b, start);
        let Some(&c) = b.get(i) else { break };
        // `i` is an ASCII byte: both slices end on character boundaries.
        out.text(&s[start..i]);
        match ESCAPE[usize::from(c)] {
            b'u' => out.ascii(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 0xf)],
            ]),
            e => out.ascii(&[b'\\', e]),
        }
        start = i + 1;
    }
    out.text(&s[start..]);
    out.ascii(b"\"");
}

/// True if `serde_json` writes byte `c` as `\u00XX` (a control character
/// without a short escape).
pub fn escapes_as_u(c: u8) -> bool {
    ESCAPE[usize::from(c)] == b'u'
}

/// `s` as a JSON string, quotes included.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_str(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_serde_json_does() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("\u{7f}\u{80}é€😀\u{2028}");
        let cases = [
            String::new(),
            "plain".into(),
            all.clone(),
            format!("{}\"{}", "x".repeat(15), "y".repeat(17)),
            format!("{}\\", "z".repeat(8)),
            format!("{}\n{}\u{1}", "é".repeat(9), "a".repeat(30)),
            all.repeat(3),
        ];
        for s in cases {
            let want = serde_json::to_string(&s).unwrap();
            assert_eq!(string(&s), want);
            let mut v = Vec::new();
            push_str(&mut v, &s);
            assert_eq!(v, want.as_bytes());
        }
        // The first byte to escape at every offset of the 16- and 8-byte steps.
        for at in 0..40 {
            for c in ['"', '\\', '\u{0}', '\u{1f}'] {
                let mut s = "a".repeat(40);
                s.replace_range(at..at + 1, &c.to_string());
                assert_eq!(string(&s), serde_json::to_string(&s).unwrap(), "{at} {c:?}");
            }
        }
    }
}
