//! Splitting a byte stream into lines: whole lines only, `\r\n` or `\n`,
//! overlong lines cut into pieces so memory stays bounded.

/// A line longer than this is stored as several rows of at most this many bytes.
pub const MAX_LINE_BYTES: usize = 8 << 20;

/// Carries a partial line from one read to the next.
pub struct LineSplitter {
    pending: Vec<u8>,
    /// Longest row: a longer line is cut into pieces of at most this many bytes.
    max: usize,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::with_max(MAX_LINE_BYTES)
    }
}

impl LineSplitter {
    /// A splitter that cuts lines longer than `max` bytes (at least 4).
    pub fn with_max(max: usize) -> Self {
        Self {
            pending: Vec::new(),
            max: max.max(4),
        }
    }

    /// Feeds `chunk`; calls `on_line(line, end)` for every complete line, where
    /// `end` is the chunk position just after the line's terminator.
    pub fn feed(&mut self, chunk: &[u8], mut on_line: impl FnMut(&[u8], usize)) {
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &chunk[start..]) {
            let end = start + nl;
            if self.pending.is_empty() {
                pieces(trim_cr(&chunk[start..end]), self.max, |p| {
                    on_line(p, end + 1)
                });
            } else {
                self.pending.extend_from_slice(&chunk[start..end]);
                let line = std::mem::take(&mut self.pending);
                pieces(trim_cr(&line), self.max, |p| on_line(p, end + 1));
            }
            start = end + 1;
        }
        self.pending.extend_from_slice(&chunk[start..]);
        while self.pending.len() > self.max {
            let rest = self
                .pending
                .split_off(char_boundary(&self.pending, self.max));
            let piece = std::mem::replace(&mut self.pending, rest);
            // The piece's bytes are consumed but the line is not over: report
            // the end as the chunk's end minus what is still pending.
            on_line(&piece, chunk.len() - self.pending.len().min(chunk.len()));
        }
    }

    /// Bytes of an unfinished line held back.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Takes the unfinished last line (at the end of an input that will not grow).
    pub fn take_pending(&mut self) -> Option<Vec<u8>> {
        if self.pending.is_empty() {
            None
        } else {
            let mut line = std::mem::take(&mut self.pending);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            Some(line)
        }
    }

    /// Forgets a partial line (the file was truncated under it).
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

/// Calls `on_piece` with `line` cut into pieces of at most `max` bytes
/// (between UTF-8 characters where possible); an empty line is one piece.
pub fn pieces(mut line: &[u8], max: usize, mut on_piece: impl FnMut(&[u8])) {
    while line.len() > max {
        let (piece, rest) = line.split_at(char_boundary(line, max));
        on_piece(piece);
        line = rest;
    }
    on_piece(line);
}

/// `at`, or up to 3 bytes before it so that a UTF-8 character is not cut.
pub fn char_boundary(bytes: &[u8], at: usize) -> usize {
    (at.saturating_sub(3)..=at)
        .rev()
        .find(|&i| bytes.get(i).is_none_or(|b| b & 0xC0 != 0x80))
        .unwrap_or(at)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> (Vec<String>, Option<Vec<u8>>) {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l, _| out.push(String::from_utf8_lossy(l).into_owned()));
        }
        (out, s.take_pending())
    }

    #[test]
    fn joins_across_chunks_and_keeps_empty_lines() {
        let (lines, rest) = split(&[b"a\r\nb", b"c\n\nd"]);
        assert_eq!(lines, ["a", "bc", ""]);
        assert_eq!(rest.as_deref(), Some(&b"d"[..]));
    }

    #[test]
    fn ends_point_after_terminators() {
        let mut s = LineSplitter::default();
        let mut ends = Vec::new();
        s.feed(b"ab\ncd\nef", |_, e| ends.push(e));
        assert_eq!(ends, [3, 6]);
        assert_eq!(s.pending_len(), 2);
    }

    #[test]
    fn overlong_lines_split_between_characters() {
        let mut big = vec![b'x'; MAX_LINE_BYTES - 1];
        big.extend_from_slice("é".as_bytes());
        let mut s = LineSplitter::default();
        let mut pieces = Vec::new();
        let mut check = |l: &[u8], _| pieces.push(String::from_utf8(l.to_vec()).is_ok());
        s.feed(&big, &mut check);
        s.feed(b"\n", &mut check);
        assert_eq!(pieces, [true, true]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_one_row() {
        let mut s = LineSplitter::with_max(4);
        let mut out = Vec::new();
        s.feed(b"abcd", |l, _| out.push(l.to_vec()));
        s.feed(b"\n", |l, _| out.push(l.to_vec()));
        assert_eq!(out, [&b"abcd"[..]]);
    }

    #[test]
    fn a_small_limit_cuts_whole_lines_too() {
        let mut s = LineSplitter::with_max(4);
        let mut out = Vec::new();
        s.feed(b"abcdefghij\nxy", |l, _| out.push(l.to_vec()));
        s.feed(b"zuvw\n", |l, _| out.push(l.to_vec()));
        assert_eq!(out, [&b"abcd"[..], b"efgh", b"ij", b"xyzu", b"vw"]);
    }

    #[test]
    fn overlong_lines_are_split_not_dropped() {
        let big = vec![b'x'; MAX_LINE_BYTES + 10];
        let mut s = LineSplitter::default();
        let mut sizes = Vec::new();
        s.feed(&big, |l, _| sizes.push(l.len()));
        s.feed(b"\n", |l, _| sizes.push(l.len()));
        assert_eq!(sizes, [MAX_LINE_BYTES, 10]);
    }
}
