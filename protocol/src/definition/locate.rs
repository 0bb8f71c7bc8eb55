//! Maps a JSON path (`expect.status[1]`) to the line and column where that
//! value starts in the source text, so errors found after parsing still point
//! into the file. The text has already been parsed by serde_json, so this
//! scanner can assume it is valid JSON.

/// A 1-based position in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let before = &text.as_bytes()[..offset.min(text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset.min(text.len())].chars().count() + 1;
        Self { line, column }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Parses `a.b[2].c` into steps. Keys are whatever lies between separators.
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, indices) = part.split_once('[').map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        for index in indices.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                out.push(Step::Index(i));
            }
        }
    }
    out
}

struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.text.len() && self.text[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> u8 {
        self.text.get(self.pos).copied().unwrap_or(0)
    }

    /// Reads a string starting at `"` and returns its raw contents (escapes kept).
    fn string(&mut self) -> &str {
        let start = self.pos + 1;
        self.pos = start;
        while self.pos < self.text.len() && self.text[self.pos] != b'"' {
            self.pos += if self.text[self.pos] == b'\\' { 2 } else { 1 };
        }
        let end = self.pos.min(self.text.len());
        self.pos += 1;
        std::str::from_utf8(&self.text[start..end]).unwrap_or("")
    }

    fn skip_value(&mut self) {
        self.skip_ws();
        match self.peek() {
            b'"' => {
                self.string();
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                while self.pos < self.text.len() {
                    match self.peek() {
                        b'"' => {
                            self.string();
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += 1;
                                return;
                            }
                        }
                        _ => {}
                    }
                    self.pos += 1;
                }
            }
            _ => {
                while self.pos < self.text.len() && !b",}] \t\r\n".contains(&self.peek()) {
                    self.pos += 1;
                }
            }
        }
    }

    /// Moves into the object member `key`; leaves `pos` at its key when `at_key`.
    fn enter_key(&mut self, key: &str, at_key: bool) -> bool {
        self.skip_ws();
        if self.peek() != b'{' {
            return false;
        }
        self.pos += 1;
        loop {
            self.skip_ws();
            if self.peek() != b'"' {
                return false;
            }
            let key_start = self.pos;
            let found = self.string() == key;
            self.skip_ws();
            self.pos += 1; // ':'
            if found {
                if at_key {
                    self.pos = key_start;
                }
                self.skip_ws();
                return true;
            }
            self.skip_value();
            self.skip_ws();
            if self.peek() != b',' {
                return false;
            }
            self.pos += 1;
        }
    }

    fn enter_index(&mut self, index: usize) -> bool {
        self.skip_ws();
        if self.peek() != b'[' {
            return false;
        }
        self.pos += 1;
        for _ in 0..index {
            self.skip_value();
            self.skip_ws();
            if self.peek() != b',' {
                return false;
            }
            self.pos += 1;
        }
        self.skip_ws();
        self.peek() != b']'
    }
}

/// Byte offset of the value at `path` inside the value starting at `start`.
/// An unresolvable step stops at the deepest value found. When `at_key`, the
/// last key step points at the key rather than its value (unknown fields).
pub fn locate(text: &str, start: usize, path: &str, at_key: bool) -> usize {
    let mut scanner = Scanner { text: text.as_bytes(), pos: start };
    scanner.skip_ws();
    let steps = steps(path);
    let last = steps.len().saturating_sub(1);
    for (i, step) in steps.iter().enumerate() {
        let here = scanner.pos;
        let entered = match step {
            Step::Key(key) => scanner.enter_key(key, at_key && i == last),
            Step::Index(index) => scanner.enter_index(*index),
        };
        if !entered {
            return here;
        }
    }
    scanner.pos
}

/// Offsets of the elements of a top-level array, or of the one top-level value.
pub fn top_level_items(text: &str) -> Vec<usize> {
    let mut scanner = Scanner { text: text.as_bytes(), pos: 0 };
    scanner.skip_ws();
    if scanner.peek() != b'[' {
        return vec![scanner.pos];
    }
    scanner.pos += 1;
    let mut items = Vec::new();
    loop {
        scanner.skip_ws();
        if matches!(scanner.peek(), b']' | 0) {
            return items;
        }
        items.push(scanner.pos);
        scanner.skip_value();
        scanner.skip_ws();
        if scanner.peek() == b',' {
            scanner.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "{\n  \"name\": \"a\",\n  \"expect\": {\n    \"status\": [200, \"2xz\"],\n    \"x\": {\"y\": \"]\"}\n  }\n}";

    fn at(path: &str, at_key: bool) -> Position {
        Position::of_offset(TEXT, locate(TEXT, 0, path, at_key))
    }

    #[test]
    fn finds_nested_values() {
        assert_eq!(at("name", false), Position { line: 2, column: 11 });
        assert_eq!(at("expect.status[1]", false), Position { line: 4, column: 21 });
        assert_eq!(at("expect.x.y", false), Position { line: 5, column: 16 });
        assert_eq!(at("expect.status", true), Position { line: 4, column: 5 });
    }

    #[test]
    fn stops_at_the_deepest_existing_value() {
        assert_eq!(at("expect.missing", false), Position { line: 3, column: 13 });
        assert_eq!(at("", false), Position { line: 1, column: 1 });
    }

    #[test]
    fn lists_array_items() {
        let text = "[ {\"a\": [1]}, {\"b\": \"}\"} ]";
        assert_eq!(top_level_items(text), vec![2, 14]);
        assert_eq!(top_level_items("  {}"), vec![2]);
    }
}
