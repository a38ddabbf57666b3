//! A pod's kept output: a byte-bounded ring of log chunks.

use std::collections::VecDeque;

use crate::api::LogChunk;

/// Keeps the newest chunks whose sizes add up to at most `cap` bytes.
#[derive(Debug)]
pub(crate) struct LogRing {
    chunks: VecDeque<LogChunk>,
    bytes: usize,
    cap: usize,
}

impl LogRing {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            bytes: 0,
            cap: cap.max(1),
        }
    }

    /// Bytes kept now.
    #[cfg(test)]
    pub(crate) fn len_bytes(&self) -> usize {
        self.bytes
    }

    /// Adds a chunk, dropping the oldest output to stay within the bound (a
    /// chunk larger than the bound keeps only its tail).
    pub(crate) fn push(&mut self, mut chunk: LogChunk) {
        if chunk.data.len() > self.cap {
            chunk.data = chunk.data.slice(chunk.data.len() - self.cap..);
        }
        while self.bytes + chunk.data.len() > self.cap {
            let excess = self.bytes + chunk.data.len() - self.cap;
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.data.len() <= excess {
                self.bytes -= front.data.len();
                self.chunks.pop_front();
            } else {
                // Keep the newest part of the oldest chunk: the ring stays full.
                front.data = front.data.slice(excess..);
                self.bytes -= excess;
            }
        }
        self.bytes += chunk.data.len();
        self.chunks.push_back(chunk);
    }

    /// The kept output, or only its last `lines` lines (a final line
    /// without a newline counts as a line).
    pub(crate) fn tail(&self, lines: Option<usize>) -> Vec<LogChunk> {
        let Some(n) = lines else {
            return self.chunks.iter().cloned().collect();
        };
        if n == 0 {
            return Vec::new();
        }
        // Walk back counting newlines. The start is just after the newline
        // that ends line (total - n); a trailing partial line counts.
        let ends_with_newline = self
            .chunks
            .back()
            .and_then(|c| c.data.last())
            .is_none_or(|b| *b == b'\n');
        let mut to_skip = if ends_with_newline { n + 1 } else { n };
        let mut out = Vec::new();
        for chunk in self.chunks.iter().rev() {
            let data = &chunk.data;
            let mut cut = None;
            for (i, b) in data.iter().enumerate().rev() {
                if *b == b'\n' {
                    to_skip -= 1;
                    if to_skip == 0 {
                        cut = Some(i + 1);
                        break;
                    }
                }
            }
            match cut {
                Some(i) => {
                    if i < data.len() {
                        let mut c = chunk.clone();
                        c.data = data.slice(i..);
                        out.push(c);
                    }
                    break;
                }
                None => out.push(chunk.clone()),
            }
        }
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LogStreamKind;
    use bytes::Bytes;

    fn chunk(s: &str) -> LogChunk {
        LogChunk {
            stream: LogStreamKind::Stdout,
            at_ms: 0,
            data: Bytes::from(s.to_owned()),
        }
    }

    fn text(v: &[LogChunk]) -> String {
        v.iter()
            .map(|c| String::from_utf8_lossy(&c.data).into_owned())
            .collect()
    }

    #[test]
    fn ring_stays_within_its_bound() {
        let mut r = LogRing::new(100);
        for i in 0..1000 {
            r.push(chunk(&format!("line {i}\n")));
            assert!(r.len_bytes() <= 100);
        }
        assert!(text(&r.tail(None)).ends_with("line 999\n"));
        let mut r = LogRing::new(10);
        r.push(chunk("0123456789abcdef"));
        assert_eq!(text(&r.tail(None)), "6789abcdef");
        r.push(chunk("XY"));
        assert_eq!(text(&r.tail(None)), "89abcdefXY");
        assert_eq!(r.len_bytes(), 10);
    }

    #[test]
    fn tail_counts_lines_across_chunks() {
        let mut r = LogRing::new(1 << 20);
        r.push(chunk("a\nb"));
        r.push(chunk("\nc\n"));
        r.push(chunk("d\n"));
        assert_eq!(text(&r.tail(Some(2))), "c\nd\n");
        assert_eq!(text(&r.tail(Some(3))), "b\nc\nd\n");
        assert_eq!(text(&r.tail(Some(10))), "a\nb\nc\nd\n");
        assert_eq!(text(&r.tail(Some(0))), "");
        r.push(chunk("partial"));
        assert_eq!(text(&r.tail(Some(2))), "d\npartial");
    }
}
