//! A line editor for a terminal on the other end of a byte stream (a serial console, an SSH
//! channel): it takes the bytes the terminal sends, one at a time, keeps the line and the
//! cursor, and answers with the bytes that make the terminal show them (VT100/ANSI: the
//! subset every terminal emulator since xterm understands).
//!
//! Keys: printable ASCII inserts at the cursor; Backspace (DEL or BS) and Delete (`ESC [ 3 ~`,
//! Ctrl-D on a non-empty line) remove; Left/Right (and Ctrl-B/Ctrl-F), Home/End (and
//! Ctrl-A/Ctrl-E) move; Up/Down (and Ctrl-P/Ctrl-N) walk the history; Ctrl-K and Ctrl-U cut to
//! the end or the start, Ctrl-W the word before the cursor; Ctrl-L redraws; Tab completes the
//! first word from the names the caller gives; Enter (CR, LF or CR LF) ends the line;
//! Ctrl-C abandons it; Ctrl-D on an empty line ends the session.
//!
//! Anything else is dropped: other control bytes, bytes above 0x7f (the shell's commands and
//! names are ASCII), escape sequences it does not know (a CSI sequence is read to its final
//! byte, at most [`MAX_ESCAPE`] bytes, then dropped whole, so `ESC [ 2 0 0 ~` from a bracketed
//! paste or F-keys inserts nothing). A line full at [`MAX_LINE`] bytes refuses more with a bell.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

/// The longest line, in bytes.
pub const MAX_LINE: usize = 256;
/// Lines the history keeps (the oldest goes first).
pub const HISTORY: usize = 32;
/// The longest escape sequence read before it is dropped as garbage.
pub const MAX_ESCAPE: usize = 16;

const BELL: u8 = 0x07;
const ESC: u8 = 0x1b;

/// What a byte fed to the [`Editor`] finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing yet: keep feeding.
    Pending,
    /// Enter: the line (its ends trimmed; may be empty). The editor is empty again.
    Line(String),
    /// Ctrl-C: the line was abandoned (`^C` shown). The editor is empty again.
    Cancelled,
    /// Ctrl-D on an empty line: the user is done.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// Not in a sequence.
    None,
    /// After ESC.
    Start,
    /// After `ESC [`: parameter and intermediate bytes until a final byte.
    Csi,
    /// After `ESC O`: one final byte.
    Ss3,
}

/// One terminal line being edited, with its history.
#[derive(Debug)]
pub struct Editor {
    prompt: String,
    line: Vec<u8>,
    cursor: usize,
    history: VecDeque<String>,
    /// While walking the history: the entry shown (0 = newest), and the line being typed
    /// before the walk began (restored when walking back past the newest).
    browsing: Option<(usize, Vec<u8>)>,
    escape: Escape,
    escape_bytes: Vec<u8>,
    /// The previous byte was CR: a LF right after it is the same Enter.
    after_cr: bool,
    out: Vec<u8>,
}

impl Editor {
    /// An empty editor that shows `prompt` (ASCII; other bytes are dropped from it).
    pub fn new(prompt: &str) -> Editor {
        Editor {
            prompt: prompt
                .chars()
                .filter(|c| c.is_ascii() && !c.is_ascii_control())
                .collect(),
            line: Vec::with_capacity(MAX_LINE),
            cursor: 0,
            history: VecDeque::with_capacity(HISTORY),
            browsing: None,
            escape: Escape::None,
            escape_bytes: Vec::with_capacity(MAX_ESCAPE),
            after_cr: false,
            out: Vec::new(),
        }
    }

    /// Writes the prompt (and the line so far) to the output: at the start, and after a
    /// command's output.
    pub fn show_prompt(&mut self) {
        self.out.extend_from_slice(self.prompt.as_bytes());
        let line = core::mem::take(&mut self.line);
        self.out.extend_from_slice(&line);
        self.line = line;
        self.move_left(self.line.len() - self.cursor);
    }

    /// The bytes to send to the terminal since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.out)
    }

    /// The line as typed so far.
    pub fn line(&self) -> &str {
        // Only printable ASCII is ever inserted.
        core::str::from_utf8(&self.line).unwrap_or("")
    }

    /// The cursor's byte offset in the line.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The history, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &str> {
        self.history.iter().map(String::as_str)
    }

    /// Feeds one byte from the terminal. `complete(prefix)` gives the names Tab may complete
    /// the first word to (those that start with `prefix`; in the order a list shows them).
    pub fn feed(&mut self, byte: u8, complete: &dyn Fn(&str) -> Vec<String>) -> Outcome {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.escape {
            Escape::None => {}
            _ => {
                self.escape_byte(byte);
                return Outcome::Pending;
            }
        }
        match byte {
            b'\r' => {
                self.after_cr = true;
                self.enter()
            }
            b'\n' if after_cr => Outcome::Pending,
            b'\n' => self.enter(),
            0x03 => {
                self.out.extend_from_slice(b"^C\r\n");
                self.reset_line();
                Outcome::Cancelled
            }
            0x04 if self.line.is_empty() => Outcome::End,
            0x04 => {
                self.delete_at_cursor();
                Outcome::Pending
            }
            0x7f | 0x08 => {
                self.backspace();
                Outcome::Pending
            }
            b'\t' => {
                self.complete(complete);
                Outcome::Pending
            }
            0x01 => self.moved(Self::home),
            0x05 => self.moved(Self::end),
            0x02 => self.moved(Self::left),
            0x06 => self.moved(Self::right),
            0x10 => self.moved(Self::history_up),
            0x0e => self.moved(Self::history_down),
            0x0b => self.moved(Self::kill_to_end),
            0x15 => self.moved(Self::kill_to_start),
            0x17 => self.moved(Self::kill_word),
            0x0c => {
                // Clear the screen, home the cursor, draw the line again.
                self.out.extend_from_slice(b"\x1b[H\x1b[2J");
                self.show_prompt();
                Outcome::Pending
            }
            ESC => {
                self.escape = Escape::Start;
                self.escape_bytes.clear();
                Outcome::Pending
            }
            0x20..=0x7e => {
                self.insert(byte);
                Outcome::Pending
            }
            // Other control bytes and non-ASCII: dropped.
            _ => Outcome::Pending,
        }
    }

    fn moved(&mut self, f: fn(&mut Editor)) -> Outcome {
        f(self);
        Outcome::Pending
    }

    fn escape_byte(&mut self, byte: u8) {
        match self.escape {
            Escape::Start => {
                self.escape = match byte {
                    b'[' => Escape::Csi,
                    b'O' => Escape::Ss3,
                    // ESC ESC: the first was alone; the second starts a sequence.
                    ESC => Escape::Start,
                    // ESC then anything else (Alt-key, a lone ESC): dropped.
                    _ => Escape::None,
                };
            }
            Escape::Ss3 => {
                self.escape = Escape::None;
                self.key(&[], byte);
            }
            Escape::Csi => {
                if (0x40..=0x7e).contains(&byte) {
                    self.escape = Escape::None;
                    let params = core::mem::take(&mut self.escape_bytes);
                    // One too long is read to its end and dropped whole.
                    if params.len() <= MAX_ESCAPE {
                        self.key(&params, byte);
                    }
                    self.escape_bytes = params;
                } else if byte == ESC {
                    // A new sequence before this one ended: this one is garbage.
                    self.escape = Escape::Start;
                    self.escape_bytes.clear();
                } else if (0x20..=0x3f).contains(&byte) {
                    if self.escape_bytes.len() <= MAX_ESCAPE {
                        self.escape_bytes.push(byte);
                    }
                } else {
                    // Not a CSI byte: the sequence is garbage; drop it.
                    self.escape = Escape::None;
                }
            }
            Escape::None => {}
        }
    }

    /// A complete CSI (`params`, `last`) or SS3 (no params) sequence.
    fn key(&mut self, params: &[u8], last: u8) {
        match (params, last) {
            ([], b'A') => self.history_up(),
            ([], b'B') => self.history_down(),
            ([], b'C') => self.right(),
            ([], b'D') => self.left(),
            ([], b'H') | (b"1" | b"7", b'~') => self.home(),
            ([], b'F') | (b"4" | b"8", b'~') => self.end(),
            (b"3", b'~') => self.delete_at_cursor(),
            // Anything else (F-keys, modifiers, bracketed paste markers): nothing.
            _ => {}
        }
    }

    fn enter(&mut self) -> Outcome {
        self.out.extend_from_slice(b"\r\n");
        let text = String::from(self.line().trim());
        if !text.is_empty() && self.history.back() != Some(&text) {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(text.clone());
        }
        self.reset_line();
        Outcome::Line(text)
    }

    fn reset_line(&mut self) {
        self.line.clear();
        self.cursor = 0;
        self.browsing = None;
    }

    fn insert(&mut self, byte: u8) {
        if self.line.len() >= MAX_LINE {
            self.out.push(BELL);
            return;
        }
        self.line.insert(self.cursor, byte);
        self.cursor += 1;
        if self.cursor == self.line.len() {
            self.out.push(byte);
        } else {
            self.redraw_from(self.cursor - 1);
        }
    }

    fn backspace(&mut self) {
        if self.cursor == 0 {
            return;
        }
        self.cursor -= 1;
        self.line.remove(self.cursor);
        self.out.push(0x08);
        self.redraw_from(self.cursor);
    }

    fn delete_at_cursor(&mut self) {
        if self.cursor < self.line.len() {
            self.line.remove(self.cursor);
            self.redraw_from(self.cursor);
        }
    }

    /// Rewrites the line from byte `from` (where the terminal's cursor is) to its end, clears
    /// what was beyond, and puts the cursor back at [`Editor::cursor`].
    fn redraw_from(&mut self, from: usize) {
        self.out.extend_from_slice(&self.line[from..]);
        self.out.extend_from_slice(b"\x1b[K");
        self.move_left(self.line.len() - self.cursor);
    }

    fn move_left(&mut self, n: usize) {
        match n {
            0 => {}
            1 => self.out.push(0x08),
            n => self
                .out
                .extend_from_slice(alloc::format!("\x1b[{n}D").as_bytes()),
        }
    }

    fn move_right(&mut self, n: usize) {
        if n > 0 {
            self.out
                .extend_from_slice(alloc::format!("\x1b[{n}C").as_bytes());
        }
    }

    fn home(&mut self) {
        self.move_left(self.cursor);
        self.cursor = 0;
    }

    fn end(&mut self) {
        self.move_right(self.line.len() - self.cursor);
        self.cursor = self.line.len();
    }

    fn left(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.move_left(1);
        }
    }

    fn right(&mut self) {
        if self.cursor < self.line.len() {
            self.cursor += 1;
            self.move_right(1);
        }
    }

    fn kill_to_end(&mut self) {
        self.line.truncate(self.cursor);
        self.out.extend_from_slice(b"\x1b[K");
    }

    fn kill_to_start(&mut self) {
        let n = self.cursor;
        self.line.drain(..n);
        self.home_with(n);
    }

    fn kill_word(&mut self) {
        let mut start = self.cursor;
        while start > 0 && self.line[start - 1] == b' ' {
            start -= 1;
        }
        while start > 0 && self.line[start - 1] != b' ' {
            start -= 1;
        }
        let n = self.cursor - start;
        self.line.drain(start..self.cursor);
        self.move_left(n);
        self.cursor = start;
        self.redraw_from(start);
    }

    /// After `n` bytes before the cursor were removed: to the line's start, redrawn.
    fn home_with(&mut self, n: usize) {
        self.move_left(n);
        self.cursor = 0;
        self.redraw_from(0);
    }

    /// Shows `text` as the whole line, the cursor at its end.
    fn replace_line(&mut self, text: Vec<u8>) {
        self.move_left(self.cursor);
        self.line = text;
        self.cursor = self.line.len();
        self.redraw_from(0);
    }

    fn history_up(&mut self) {
        let next = match &self.browsing {
            None if self.history.is_empty() => return,
            None => 0,
            Some((i, _)) if i + 1 >= self.history.len() => return,
            Some((i, _)) => i + 1,
        };
        if self.browsing.is_none() {
            self.browsing = Some((0, self.line.clone()));
        }
        if let Some((i, _)) = &mut self.browsing {
            *i = next;
        }
        let entry = self.history[self.history.len() - 1 - next]
            .as_bytes()
            .to_vec();
        self.replace_line(entry);
    }

    fn history_down(&mut self) {
        let Some((i, typed)) = self.browsing.take() else {
            return;
        };
        if i == 0 {
            self.replace_line(typed);
        } else {
            let entry = self.history[self.history.len() - i].as_bytes().to_vec();
            self.browsing = Some((i - 1, typed));
            self.replace_line(entry);
        }
    }

    fn complete(&mut self, complete: &dyn Fn(&str) -> Vec<String>) {
        // Only the first word, with the cursor at its end.
        let word_end = self
            .line
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(self.line.len());
        if self.cursor != word_end || self.line[..word_end].is_empty() && !self.line.is_empty() {
            self.out.push(BELL);
            return;
        }
        let prefix = String::from(core::str::from_utf8(&self.line[..word_end]).unwrap_or(""));
        let names: Vec<String> = complete(&prefix)
            .into_iter()
            .filter(|n| {
                n.starts_with(prefix.as_str()) && n.bytes().all(|b| (0x21..=0x7e).contains(&b))
            })
            .collect();
        match names.as_slice() {
            [] => self.out.push(BELL),
            [one] => {
                let rest: Vec<u8> = one.as_bytes()[prefix.len()..].to_vec();
                let at_end = word_end == self.line.len();
                for b in rest {
                    self.insert(b);
                }
                if at_end {
                    self.insert(b' ');
                }
            }
            several => {
                let common = common_prefix(several);
                if common.len() > prefix.len() {
                    for b in common.as_bytes()[prefix.len()..].iter().copied() {
                        self.insert(b);
                    }
                } else {
                    // Nothing to add: list them, then the prompt and line again.
                    self.out.extend_from_slice(b"\r\n");
                    self.out.extend_from_slice(several.join("  ").as_bytes());
                    self.out.extend_from_slice(b"\r\n");
                    self.show_prompt();
                }
            }
        }
    }
}

/// The longest prefix every name shares.
fn common_prefix(names: &[String]) -> String {
    let first = names[0].as_bytes();
    let mut n = first.len();
    for name in &names[1..] {
        n = n.min(
            first
                .iter()
                .zip(name.bytes())
                .take_while(|(a, b)| **a == *b)
                .count(),
        );
    }
    String::from(core::str::from_utf8(&first[..n]).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["help", "poweroff", "prio", "ps", "threads", "top", "trace"];

    fn names(prefix: &str) -> Vec<String> {
        NAMES
            .iter()
            .filter(|n| n.starts_with(prefix))
            .map(|n| String::from(*n))
            .collect()
    }

    /// Feeds `bytes`; the outcomes other than `Pending`.
    fn feed(e: &mut Editor, bytes: &[u8]) -> Vec<Outcome> {
        bytes
            .iter()
            .map(|&b| e.feed(b, &names))
            .filter(|o| *o != Outcome::Pending)
            .collect()
    }

    fn line(s: &str) -> Outcome {
        Outcome::Line(String::from(s))
    }

    /// What a terminal shows for the editor's output: a tiny VT100 model of one line.
    fn screen(out: &[u8]) -> (String, usize) {
        let mut cells: Vec<u8> = Vec::new();
        let mut col = 0usize;
        let mut i = 0;
        while i < out.len() {
            match out[i] {
                b'\r' => col = 0,
                b'\n' => {
                    cells.clear();
                    col = 0;
                }
                0x08 => col = col.saturating_sub(1),
                BELL => {}
                ESC => {
                    let mut j = i + 2;
                    while !(0x40..=0x7e).contains(&out[j]) {
                        j += 1;
                    }
                    let n: usize = core::str::from_utf8(&out[i + 2..j])
                        .unwrap()
                        .parse()
                        .unwrap_or(1);
                    match out[j] {
                        b'D' => col = col.saturating_sub(n),
                        b'C' => col += n,
                        b'K' => cells.truncate(col),
                        b'J' | b'H' => {
                            cells.clear();
                            col = 0;
                        }
                        other => panic!("unexpected CSI {}", other as char),
                    }
                    i = j;
                }
                b => {
                    if col < cells.len() {
                        cells[col] = b;
                    } else {
                        cells.resize(col, b' ');
                        cells.push(b);
                    }
                    col += 1;
                }
            }
            i += 1;
        }
        (String::from_utf8(cells).unwrap(), col)
    }

    /// The terminal shows exactly the prompt and the line, the cursor where the editor says.
    fn shows_line(e: &mut Editor, all: &mut Vec<u8>) {
        all.extend(e.take_output());
        let (text, col) = screen(all);
        assert_eq!(text, alloc::format!("> {}", e.line()));
        assert_eq!(col, 2 + e.cursor());
    }

    #[test]
    fn typing_editing_and_enter() {
        let mut e = Editor::new("> ");
        let mut all = Vec::new();
        e.show_prompt();
        assert_eq!(feed(&mut e, b"pz"), []);
        // Backspace, then the rest.
        assert_eq!(feed(&mut e, b"\x7fs"), []);
        shows_line(&mut e, &mut all);
        // Left twice, insert at the start, Home, End, Delete.
        feed(&mut e, b"\x1b[D\x1b[Dx");
        assert_eq!(e.line(), "xps");
        shows_line(&mut e, &mut all);
        feed(&mut e, b"\x1b[H\x1b[3~");
        assert_eq!((e.line(), e.cursor()), ("ps", 0));
        shows_line(&mut e, &mut all);
        feed(&mut e, b"\x1bOF -a");
        shows_line(&mut e, &mut all);
        // CR LF is one Enter; the line comes trimmed.
        assert_eq!(feed(&mut e, b"  \r\n"), [line("ps -a")]);
        assert_eq!(e.line(), "");
        assert_eq!(feed(&mut e, b"\n"), [line("")]);
        assert_eq!(feed(&mut e, b"top\n"), [line("top")]);
    }

    #[test]
    fn control_keys_cut_and_move() {
        let mut e = Editor::new("> ");
        let mut all = Vec::new();
        e.show_prompt();
        feed(&mut e, b"prio worker 9");
        feed(&mut e, b"\x17");
        assert_eq!(e.line(), "prio worker ");
        shows_line(&mut e, &mut all);
        feed(&mut e, b"\x17\x17");
        assert_eq!(e.line(), "");
        feed(&mut e, b"abc def\x01\x06\x0b");
        assert_eq!((e.line(), e.cursor()), ("a", 1));
        shows_line(&mut e, &mut all);
        feed(&mut e, b"\x05xyz\x02\x15");
        assert_eq!((e.line(), e.cursor()), ("z", 0));
        shows_line(&mut e, &mut all);
        // Ctrl-D deletes under the cursor; on an empty line it ends the session.
        assert_eq!(feed(&mut e, b"\x04"), []);
        assert_eq!(feed(&mut e, b"\x04"), [Outcome::End]);
    }

    #[test]
    fn ctrl_c_abandons_the_line() {
        let mut e = Editor::new("> ");
        assert_eq!(feed(&mut e, b"reboot\x03"), [Outcome::Cancelled]);
        assert!(e.take_output().ends_with(b"^C\r\n"));
        assert_eq!(feed(&mut e, b"ps\r"), [line("ps")]);
        // A cancelled line is not history.
        assert_eq!(e.history().collect::<Vec<_>>(), ["ps"]);
    }

    #[test]
    fn history_walks_both_ways_and_keeps_the_typed_line() {
        let mut e = Editor::new("> ");
        let mut all = Vec::new();
        feed(&mut e, b"one\rtwo\rtwo\rthree\r");
        // Repeats are kept once.
        assert_eq!(e.history().collect::<Vec<_>>(), ["one", "two", "three"]);
        all.clear();
        e.take_output();
        e.show_prompt();
        feed(&mut e, b"par");
        feed(&mut e, b"\x1b[A");
        assert_eq!(e.line(), "three");
        shows_line(&mut e, &mut all);
        feed(&mut e, b"\x1b[A\x1b[A\x1b[A");
        assert_eq!(e.line(), "one");
        shows_line(&mut e, &mut all);
        feed(&mut e, b"\x0e");
        assert_eq!(e.line(), "two");
        feed(&mut e, b"\x1b[B\x1b[B");
        assert_eq!(e.line(), "par");
        shows_line(&mut e, &mut all);
        // Down past the typed line does nothing.
        feed(&mut e, b"\x1b[B");
        assert_eq!(e.line(), "par");
        // A recalled line can be edited and entered.
        feed(&mut e, b"\x10");
        assert_eq!(e.line(), "three");
        feed(&mut e, b"\x0e");
        assert_eq!(e.line(), "par");
        assert_eq!(feed(&mut e, b"\x10\x7f\x7f\x7f\x7fTWO\r"), [line("tTWO")]);
    }

    #[test]
    fn the_history_is_bounded() {
        let mut e = Editor::new("> ");
        for i in 0..HISTORY + 10 {
            feed(&mut e, alloc::format!("cmd{i}\r").as_bytes());
        }
        assert_eq!(e.history().count(), HISTORY);
        assert_eq!(e.history().next(), Some("cmd10"));
    }

    #[test]
    fn tab_completes_the_first_word() {
        let mut e = Editor::new("> ");
        let mut all = Vec::new();
        e.show_prompt();
        // One candidate: completed with a space.
        feed(&mut e, b"th\t");
        assert_eq!(e.line(), "threads ");
        shows_line(&mut e, &mut all);
        feed(&mut e, b"\x15");
        // Several with a longer common prefix: extended to it.
        feed(&mut e, b"po\t");
        assert_eq!(e.line(), "poweroff ");
        feed(&mut e, b"\x15p\t");
        assert_eq!(e.line(), "p");
        // Nothing to add: the candidates are listed and the line drawn again.
        let out = e.take_output();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("poweroff  prio  ps"), "{text:?}");
        assert!(text.ends_with("> p"), "{text:?}");
        // No candidate: a bell.
        feed(&mut e, b"\x15zz\t");
        assert_eq!(e.take_output().last(), Some(&BELL));
        // Not in the first word: a bell, the line unchanged.
        feed(&mut e, b"\x15prio wor\t");
        assert_eq!(e.line(), "prio wor");
    }

    #[test]
    fn a_full_line_refuses_more_with_a_bell() {
        let mut e = Editor::new("> ");
        let long = alloc::vec![b'a'; MAX_LINE + 50];
        feed(&mut e, &long);
        assert_eq!(e.line().len(), MAX_LINE);
        let out = e.take_output();
        assert_eq!(out.iter().filter(|&&b| b == BELL).count(), 50);
        assert_eq!(feed(&mut e, b"\r"), [line(&"a".repeat(MAX_LINE))]);
    }

    #[test]
    fn garbage_and_unknown_sequences_insert_nothing() {
        let mut e = Editor::new("> ");
        // F5, bracketed paste markers, a mouse report, Alt-x, a lone ESC, a CSI too long.
        feed(&mut e, b"\x1b[15~\x1b[200~\x1b[201~\x1b[<0;10;5M\x1bx\x1b");
        assert_eq!(e.line(), "");
        // Too long: read to its final byte and dropped whole.
        feed(&mut e, b"\x1b[1111111111111111111111111111111111~");
        assert_eq!(e.line(), "");
        // Non-ASCII and other control bytes are dropped.
        feed(
            &mut e,
            &[0x00, 0x80, 0xff, 0xc3, 0xa9, 0x1a, 0x1c, b'o', b'k'],
        );
        assert_eq!(e.line(), "ok");
    }

    #[test]
    fn every_byte_sequence_keeps_the_editor_sound() {
        // A deterministic walk through all byte values and pairs: no panic, bounds held.
        let mut e = Editor::new("> ");
        let mut x: u32 = 0x1234_5678;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let b = (x & 0xff) as u8;
            let _ = e.feed(b, &names);
            assert!(e.line().len() <= MAX_LINE);
            assert!(e.cursor() <= e.line().len());
            assert!(e.history().count() <= HISTORY);
            let _ = e.take_output();
        }
    }
}
