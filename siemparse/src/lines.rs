//! Splitting a byte stream into lines: whole lines only, `\r\n` or `\n`,
//! overlong lines cut into pieces so memory stays bounded.

/// A line longer than this is stored as several rows of at most this many bytes.
pub const MAX_LINE_BYTES: usize = 8 << 20;

/// Carries a partial line from one read to the next.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds `chunk`; calls `on_line(line, end)` for every complete line, where
    /// `end` is the chunk position just after the line's terminator.
    pub fn feed(&mut self, chunk: &[u8], mut on_line: impl FnMut(&[u8], usize)) {
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &chunk[start..]) {
            let end = start + nl;
            if self.pending.is_empty() {
                on_line(trim_cr(&chunk[start..end]), end + 1);
            } else {
                self.pending.extend_from_slice(&chunk[start..end]);
                let line = std::mem::take(&mut self.pending);
                on_line(trim_cr(&line), end + 1);
            }
            start = end + 1;
        }
        self.pending.extend_from_slice(&chunk[start..]);
        while self.pending.len() >= MAX_LINE_BYTES {
            let rest = self
                .pending
                .split_off(char_boundary(&self.pending, MAX_LINE_BYTES));
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

/// `at`, or up to 3 bytes before it so that a UTF-8 character is not cut.
fn char_boundary(bytes: &[u8], at: usize) -> usize {
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
    fn overlong_lines_are_split_not_dropped() {
        let big = vec![b'x'; MAX_LINE_BYTES + 10];
        let mut s = LineSplitter::default();
        let mut sizes = Vec::new();
        s.feed(&big, |l, _| sizes.push(l.len()));
        s.feed(b"\n", |l, _| sizes.push(l.len()));
        assert_eq!(sizes, [MAX_LINE_BYTES, 10]);
    }
}
