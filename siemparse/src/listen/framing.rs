//! RFC 6587 framing of syslog over a TCP (or RFC 5425 TLS) stream, detected
//! per connection from its first bytes:
//! - octet counting (`MSG-LEN SP SYSLOG-MSG`, RFC 6587 3.4.1, the only
//!   framing of RFC 5425) when the stream starts with a non-zero digit and
//!   its digits end in a space;
//! - otherwise non-transparent framing with LF as the trailer (3.4.2; a CR
//!   before the LF is dropped).
//!
//! Memory stays bounded whatever the peer sends: a message longer than
//! `max` bytes is handed on in pieces of at most `max` bytes (stored as
//! several rows, as stdin does with overlong lines). An invalid frame header
//! on an octet-counted connection switches it to LF framing from that byte
//! on, so every byte is still stored (as lines) and the framer never waits
//! for a length that will not come.

use crate::lines::{LineSplitter, char_boundary, pieces};

/// MSG-LEN has at most this many digits (a length beyond 999,999,999 is garbage).
const MAX_LEN_DIGITS: usize = 9;

/// How the connection turned out to be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No byte seen yet.
    Unknown,
    OctetCounting,
    LineFeed,
}

/// Splits one connection's byte stream into messages.
pub struct Framer {
    max: usize,
    framing: Framing,
    /// LF framing (also after a bad octet-counting header).
    lines: LineSplitter,
    /// Octet counting: the digits of the header being read.
    header: Vec<u8>,
    /// Octet counting: bytes of the current message still to come (0: a
    /// header is next).
    due: usize,
    /// Octet counting: the part of the current message received so far.
    msg: Vec<u8>,
    /// The header of a bad frame switched the connection to LF framing.
    fell_back: bool,
}

impl Framer {
    /// A framer that hands on messages of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            framing: Framing::Unknown,
            lines: LineSplitter::with_max(max),
            header: Vec::new(),
            due: 0,
            msg: Vec::new(),
            fell_back: false,
        }
    }

    /// The framing detected so far.
    #[cfg(test)]
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// True once a bad octet-counting header made the connection LF-framed.
    pub fn fell_back(&self) -> bool {
        self.fell_back
    }

    /// Feeds received bytes; calls `on_msg` for each whole message (or piece
    /// of an overlong one), in order.
    pub fn feed(&mut self, mut data: &[u8], on_msg: &mut impl FnMut(&[u8])) {
        while !data.is_empty() {
            match self.framing {
                Framing::Unknown => {
                    self.framing = if matches!(data[0], b'1'..=b'9') {
                        Framing::OctetCounting
                    } else {
                        Framing::LineFeed
                    };
                }
                Framing::LineFeed => {
                    self.lines.feed(data, |line, _| on_msg(line));
                    return;
                }
                Framing::OctetCounting if self.due > 0 => {
                    let take = self.due.min(data.len());
                    let (part, rest) = data.split_at(take);
                    data = rest;
                    self.due -= take;
                    if self.due == 0 && self.msg.is_empty() {
                        pieces(trim_trailer(part), self.max, &mut *on_msg);
                        continue;
                    }
                    self.msg.extend_from_slice(part);
                    if self.due == 0 {
                        let msg = std::mem::take(&mut self.msg);
                        pieces(trim_trailer(&msg), self.max, &mut *on_msg);
                    } else {
                        self.emit_full_pieces(on_msg);
                    }
                }
                Framing::OctetCounting => data = self.read_header(data, on_msg),
            }
        }
    }

    /// Reads header bytes (`MSG-LEN SP`) from `data`; returns what follows.
    fn read_header<'a>(&mut self, data: &'a [u8], on_msg: &mut impl FnMut(&[u8])) -> &'a [u8] {
        for (i, &b) in data.iter().enumerate() {
            match b {
                // Some senders end each frame with a LF anyway; between
                // frames it carries nothing.
                b'\n' | b'\r' | b'\0' if self.header.is_empty() => {}
                b'0'..=b'9' if self.header.len() < MAX_LEN_DIGITS => {
                    if self.header.is_empty() && b == b'0' {
                        return self.fall_back(&data[i..], on_msg);
                    }
                    self.header.push(b);
                }
                b' ' if !self.header.is_empty() => {
                    self.due = std::str::from_utf8(&self.header)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    self.header.clear();
                    return &data[i + 1..];
                }
                _ => return self.fall_back(&data[i..], on_msg),
            }
        }
        &[]
    }

    /// Not a frame header: the rest of the connection is LF-framed,
    /// starting with the header bytes read so far.
    fn fall_back<'a>(&mut self, rest: &'a [u8], on_msg: &mut impl FnMut(&[u8])) -> &'a [u8] {
        self.framing = Framing::LineFeed;
        self.fell_back = true;
        let header = std::mem::take(&mut self.header);
        self.lines.feed(&header, |line, _| on_msg(line));
        rest
    }

    /// Hands on full pieces of an overlong message still arriving.
    fn emit_full_pieces(&mut self, on_msg: &mut impl FnMut(&[u8])) {
        while self.msg.len() > self.max {
            let rest = self.msg.split_off(char_boundary(&self.msg, self.max));
            let piece = std::mem::replace(&mut self.msg, rest);
            on_msg(&piece);
        }
    }

    /// The unfinished message at the end of the connection, if any: an
    /// unterminated line, or the part of a frame received.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.due = 0;
        let header = std::mem::take(&mut self.header);
        let msg = std::mem::take(&mut self.msg);
        let rest = [header, msg].concat();
        match self.lines.take_pending() {
            Some(line) => Some(line),
            None if !rest.is_empty() => Some(trim_trailer(&rest).to_vec()),
            None => None,
        }
    }

    /// Bytes held for an unfinished message.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.lines.pending_len() + self.msg.len() + self.header.len()
    }
}

/// An octet-counted message without the LF (or CR LF) some senders end it with.
fn trim_trailer(msg: &[u8]) -> &[u8] {
    let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
    msg.strip_suffix(b"\r").unwrap_or(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages of `chunks` fed in order, and the unfinished rest.
    fn frame(max: usize, chunks: &[&[u8]]) -> (Vec<String>, Option<String>, Framing) {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, &mut |m| {
                out.push(String::from_utf8_lossy(m).into_owned())
            });
        }
        let rest = f.finish().map(|r| String::from_utf8_lossy(&r).into_owned());
        (out, rest, f.framing())
    }

    /// `data` fed one byte at a time gives the same messages as in one piece.
    fn bytewise(max: usize, data: &[u8]) -> (Vec<String>, Option<String>, Framing) {
        let chunks: Vec<&[u8]> = data.chunks(1).collect();
        let one = frame(max, &[data]);
        assert_eq!(frame(max, &chunks), one, "bytewise");
        one
    }

    #[test]
    fn octet_counting_with_newlines_inside() {
        let data = b"11 <13>1 - a\nb22 <13>1 - x y z 12345678\n";
        let (msgs, rest, framing) = bytewise(1024, data);
        assert_eq!(framing, Framing::OctetCounting);
        assert_eq!(msgs, ["<13>1 - a\nb", "<13>1 - x y z 12345678"]);
        assert_eq!(rest, None);
    }

    #[test]
    fn lf_framing_from_the_first_byte() {
        let (msgs, rest, framing) =
            bytewise(1024, b"<13>Jan  1 00:00:00 h a: 1\r\n<13>x\n\npartial");
        assert_eq!(framing, Framing::LineFeed);
        assert_eq!(msgs, ["<13>Jan  1 00:00:00 h a: 1", "<13>x", ""]);
        assert_eq!(rest.as_deref(), Some("partial"));
    }

    #[test]
    fn a_line_starting_with_a_date_is_lf_framed() {
        let (msgs, _, framing) = bytewise(1024, b"2024-01-01T00:00:00Z h a: x\n");
        assert_eq!(framing, Framing::LineFeed);
        assert_eq!(msgs, ["2024-01-01T00:00:00Z h a: x"]);
    }

    #[test]
    fn a_bad_header_falls_back_to_lines_keeping_every_byte() {
        let mut f = Framer::new(1024);
        let mut out = Vec::new();
        f.feed(b"5 hello12bad\x01frame\nnext\n", &mut |m| {
            out.push(String::from_utf8_lossy(m).into_owned())
        });
        assert!(f.fell_back());
        assert_eq!(out, ["hello", "12bad\u{1}frame", "next"]);
    }

    #[test]
    fn lf_between_frames_is_skipped() {
        let (msgs, _, _) = bytewise(1024, b"3 abc\n3 def\r\n");
        assert_eq!(msgs, ["abc", "def"]);
    }

    #[test]
    fn overlong_frames_and_lines_come_in_pieces() {
        let (msgs, _, _) = bytewise(4, b"10 abcdefghij3 xyz");
        assert_eq!(msgs, ["abcd", "efgh", "ij", "xyz"]);
        let (msgs, _, _) = bytewise(4, b"<abcdefghij\n");
        assert_eq!(msgs, ["<abc", "defg", "hij"]);
    }

    #[test]
    fn memory_stays_bounded_for_an_endless_frame_or_line() {
        for start in [&b"999999999 "[..], b"<"] {
            let mut f = Framer::new(1024);
            let mut n = 0usize;
            f.feed(start, &mut |_| n += 1);
            let chunk = vec![b'x'; 100_000];
            for _ in 0..100 {
                f.feed(&chunk, &mut |m| {
                    assert!(m.len() <= 1024);
                    n += 1;
                });
                assert!(f.held() <= 1024, "{}", f.held());
            }
            assert!(n >= 9_000, "{n}");
        }
    }

    #[test]
    fn a_cut_frame_is_kept_at_the_end() {
        let (msgs, rest, _) = frame(1024, &[b"20 <13>1 - only part"]);
        assert!(msgs.is_empty());
        assert_eq!(rest.as_deref(), Some("<13>1 - only part"));
    }

    #[test]
    fn an_overlong_header_is_garbage_not_a_length() {
        let (msgs, _, _) = bytewise(1024, b"1234567890123 x\n");
        assert_eq!(msgs, ["1234567890123 x"]);
    }
}
