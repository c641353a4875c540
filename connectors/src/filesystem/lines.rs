//! Reading a file (or one byte range of it) in chunks of whole lines.
//!
//! The file is read into one large buffer and chunks are handed out as slices of it, so a
//! line is copied once, by the kernel. A byte range `[start, end)` owns the lines that *start*
//! in it: a reader positioned inside a line first skips to the next line ([`LineReader::skip_line`]),
//! and it stops at the first line starting at or after `end`, reading that line's tail past
//! `end` if needed. Blank lines are skipped (and counted).

use std::io::Read;

/// Size of the read buffer (less for less data); it grows for a line that does not fit.
const BUFFER: u64 = 4 << 20;

/// Reads whole lines of `R` from a byte offset up to an end offset.
pub struct LineReader<R> {
    inner: R,
    buffer: Vec<u8>,
    /// First unread byte in `buffer`.
    start: usize,
    /// End of the bytes read into `buffer`.
    filled: usize,
    eof: bool,
    /// File offset of `buffer[start]`.
    offset: u64,
    /// Lines starting at or after this offset belong to someone else.
    end: u64,
    /// Chunks with blank lines, without them.
    filtered: Vec<u8>,
}

/// A chunk of lines: each ends in `\n`; `lines` holds each record's line number.
pub struct Chunk<'a> {
    pub bytes: &'a [u8],
    pub lines: Vec<u64>,
}

impl<R: Read> LineReader<R> {
    /// Reads from `inner`, which is positioned at file offset `offset`, up to `end`; about
    /// `expected` bytes are there to read.
    pub fn new(inner: R, offset: u64, end: u64, expected: u64) -> Self {
        LineReader {
            inner,
            buffer: vec![0; expected.clamp(64, BUFFER) as usize],
            start: 0,
            filled: 0,
            eof: false,
            offset,
            end,
            filtered: Vec::new(),
        }
    }

    /// File offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads more bytes into the buffer (compacting or growing it); false at end of file.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.filled == self.buffer.len() {
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.filled, 0);
                self.filled -= self.start;
                self.start = 0;
            } else {
                self.buffer.resize(self.buffer.len() * 2, 0);
            }
        }
        let read = self.inner.read(&mut self.buffer[self.filled..])?;
        self.filled += read;
        self.eof = read == 0;
        Ok(read > 0)
    }

    /// Skips through the next `\n` (the rest of a line that started before this reader's
    /// range); returns the bytes skipped.
    pub fn skip_line(&mut self) -> std::io::Result<u64> {
        let mut skipped = 0;
        loop {
            let buffered = &self.buffer[self.start..self.filled];
            if let Some(newline) = memchr::memchr(b'\n', buffered) {
                skipped += newline as u64 + 1;
                self.start += newline + 1;
                self.offset += newline as u64 + 1;
                return Ok(skipped);
            }
            skipped += buffered.len() as u64;
            self.offset += buffered.len() as u64;
            self.start = self.filled;
            if !self.fill()? {
                return Ok(skipped);
            }
        }
    }

    /// Up to `max` non-blank lines starting before the end offset, or `None` when there are
    /// no more. `line` counts every line read, blank ones included.
    pub fn next_chunk(&mut self, max: usize, line: &mut u64) -> std::io::Result<Option<Chunk<'_>>> {
        let mut lines = Vec::with_capacity(max);
        let mut blank = false;
        // Where the next line starts, relative to `self.start`.
        let mut next = 0;
        'read: loop {
            let buffered = &self.buffer[self.start..self.filled];
            let from = next;
            for newline in memchr::memchr_iter(b'\n', &buffered[from..]) {
                if self.offset + next as u64 >= self.end {
                    break 'read;
                }
                let end = from + newline;
                *line += 1;
                if buffered[next..end].iter().all(u8::is_ascii_whitespace) {
                    blank = true;
                } else {
                    lines.push(*line);
                }
                next = end + 1;
                if lines.len() == max {
                    break 'read;
                }
            }
            if self.offset + next as u64 >= self.end {
                break;
            }
            if !self.fill()? {
                // A last line without `\n`.
                let rest = self.start + next..self.filled;
                if !rest.is_empty() {
                    *line += 1;
                    if self.buffer[rest.clone()]
                        .iter()
                        .all(u8::is_ascii_whitespace)
                    {
                        blank = true;
                    } else {
                        lines.push(*line);
                    }
                    if self.filled == self.buffer.len() {
                        self.buffer.push(b'\n');
                    } else {
                        self.buffer[self.filled] = b'\n';
                    }
                    self.filled += 1;
                    next = self.filled - self.start;
                }
                break;
            }
        }
        let bytes = self.start..self.start + next;
        self.start += next;
        self.offset += next as u64;
        if lines.is_empty() {
            return Ok(None);
        }
        let bytes = &self.buffer[bytes];
        if !blank {
            return Ok(Some(Chunk { bytes, lines }));
        }
        self.filtered.clear();
        for text in bytes.split_inclusive(|b| *b == b'\n') {
            if !text.iter().all(u8::is_ascii_whitespace) {
                self.filtered.extend_from_slice(text);
            }
        }
        Ok(Some(Chunk {
            bytes: &self.filtered,
            lines,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All chunks of the lines starting in `text[start..end)`, read as the source does (from
    /// `start - 1`, skipping through the first newline) through a reader whose buffer starts
    /// tiny.
    fn read(text: &str, start: usize, end: usize, max: usize) -> (Vec<String>, u64) {
        let from = start.saturating_sub(1);
        let mut reader = LineReader::new(&text.as_bytes()[from..], from as u64, end as u64, 3);
        if start > 0 {
            reader.skip_line().unwrap();
        }
        let (mut chunks, mut line) = (Vec::new(), 0);
        while let Some(chunk) = reader.next_chunk(max, &mut line).unwrap() {
            assert_eq!(
                chunk.lines.len(),
                chunk.bytes.split_inclusive(|b| *b == b'\n').count()
            );
            chunks.push(String::from_utf8(chunk.bytes.to_vec()).unwrap());
        }
        (chunks, line)
    }

    #[test]
    fn chunks_of_whole_lines() {
        let text = "a,1\nbb,2\n\n  \ncccc,3\nd,4";
        let (chunks, lines) = read(text, 0, text.len(), 2);
        assert_eq!(chunks, ["a,1\nbb,2\n", "cccc,3\nd,4\n"]);
        assert_eq!(lines, 6);
    }

    #[test]
    fn byte_ranges_split_lines_exactly_once() {
        let text: String = (0..50)
            .map(|i| format!("line {i} {}\n", "x".repeat(i % 7)))
            .collect();
        for cuts in [
            vec![0, text.len()],
            vec![0, 17, 18, 100, text.len()],
            vec![0, 1, 2, 3, text.len()],
        ] {
            let mut all = String::new();
            for range in cuts.windows(2) {
                all.extend(read(&text, range[0], range[1], 3).0);
            }
            assert_eq!(all, text, "cuts {cuts:?}");
        }
        // Every cut point.
        for cut in 0..=text.len() {
            let (a, _) = read(&text, 0, cut, 5);
            let (b, _) = read(&text, cut, text.len(), 5);
            assert_eq!(a.concat() + &b.concat(), text, "cut {cut}");
        }
    }
}
