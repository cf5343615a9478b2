//! The YAML subset a `proxy.istio.io/config` annotation is written in, parsed into the
//! `serde_json::Value` serde_yaml would give, so that policy.wasm does not link a whole YAML
//! library (about 100 KB) for one annotation.
//!
//! Supported: block mappings and sequences (nested by indentation, `- key: v` items, a
//! sequence at its key's indentation), flow collections and JSON spanning lines, plain,
//! single- and double-quoted scalars, comments, one leading `---`, and basic literal/folded
//! block scalars (`|`, `>`, with `-`/`+` chomping). Plain scalars are typed like serde_yaml
//! (YAML 1.2 core schema: null, booleans, decimal/hex/octal/binary integers, floats); keys
//! stay strings. Anything else (anchors, aliases, tags, complex keys, multi-line plain or
//! quoted scalars, several documents, duplicate keys, tab indentation) is an error naming
//! the line: never a silent guess.

use serde_json::{Map, Number, Value};

mod float;

/// Deeper nesting than any ProxyConfig needs is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;
/// libyaml (under serde_yaml) looks at most 1024 characters ahead for a key's `:`.
const MAX_KEY: usize = 1000;

/// Parse the annotation text (YAML or JSON).
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
        depth: 0,
    };
    let bytes = text.as_bytes();
    if let Some(at) =
        (0..bytes.len()).find(|&i| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
    {
        p.pos = at;
        return Err(p.error("a carriage return outside a CRLF line break is not supported"));
    }
    p.skip_blank_lines()?;
    if p.at_marker(b"---") {
        p.pos += 3;
        p.end_of_line("after `---`")?;
        p.skip_blank_lines()?;
    }
    let value = match p.indent() {
        Some(indent) => {
            p.pos += indent as usize;
            p.node(indent, -1)?
        }
        None => Value::Null,
    };
    p.skip_blank_lines()?;
    if p.pos < p.s.len() {
        let what = if p.at_document_marker() {
            "more than one document (or a document end marker) is not supported"
        } else {
            "unexpected indentation or text after the value"
        };
        return Err(p.error(what));
    }
    Ok(value)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
}

/// Whether `b` separates tokens (or ends the input).
fn blank(b: Option<u8>) -> bool {
    matches!(b, None | Some(b' ' | b'\t' | b'\n' | b'\r'))
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.s.get(self.pos + offset).copied()
    }

    fn error(&self, what: &str) -> String {
        let line = 1 + self.s[..self.pos.min(self.s.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        format!("line {line}: {what}")
    }

    fn column(&self) -> isize {
        let start = self.s[..self.pos]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        (self.pos - start) as isize
    }

    /// `---` or `...` at the start of a line, followed by a blank.
    fn at_marker(&self, marker: &[u8]) -> bool {
        self.column() == 0
            && self.s[self.pos..].starts_with(marker)
            && blank(self.s.get(self.pos + 3).copied())
    }

    fn at_document_marker(&self) -> bool {
        self.at_marker(b"---") || self.at_marker(b"...")
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// After a node: only spaces and an optional comment may remain on the line.
    fn end_of_line(&mut self, context: &str) -> Result<(), String> {
        self.skip_spaces();
        match self.peek() {
            None | Some(b'\n') => Ok(()),
            Some(b'\r') if self.peek_at(1) == Some(b'\n') => Ok(()),
            Some(b'#') => {
                while !matches!(self.peek(), None | Some(b'\n')) {
                    self.pos += 1;
                }
                Ok(())
            }
            Some(_) => Err(self.error(&format!("unexpected text {context}"))),
        }
    }

    /// From anywhere on a line, move to the start of the next line holding content (or the
    /// end), skipping blank and comment-only lines. Tabs may not indent content.
    fn skip_blank_lines(&mut self) -> Result<(), String> {
        if self.column() != 0 {
            while !matches!(self.peek(), None | Some(b'\n')) {
                self.pos += 1;
            }
            self.pos += usize::from(self.peek().is_some());
        }
        loop {
            let start = self.pos;
            while self.peek() == Some(b' ') {
                self.pos += 1;
            }
            match self.peek() {
                None => return Ok(()),
                Some(b'\t') => return Err(self.error("tabs are not allowed for indentation")),
                Some(b'\n') => self.pos += 1,
                Some(b'\r') if self.peek_at(1) == Some(b'\n') => self.pos += 2,
                Some(b'#') => self.end_of_line("")?,
                Some(_) => {
                    self.pos = start;
                    return Ok(());
                }
            }
            if self.pos == start {
                return Ok(());
            }
        }
    }

    /// Indentation of the line starting at `pos` (which holds content), `None` at the end.
    fn indent(&self) -> Option<isize> {
        let n = self.s[self.pos..]
            .iter()
            .take_while(|&&b| b == b' ')
            .count();
        (self.pos + n < self.s.len()).then_some(n as isize)
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nesting is too deep"));
        }
        Ok(())
    }

    fn unsupported_start(&self) -> Option<&'static str> {
        let next_blank = blank(self.peek_at(1));
        match self.peek()? {
            b'&' | b'*' => Some("anchors and aliases are not supported"),
            b'!' => Some("tags are not supported"),
            b'?' if next_blank => Some("complex mapping keys are not supported"),
            b'%' => Some("directives are not supported"),
            b'@' | b'`' => Some("`@` and `` ` `` cannot start a plain scalar"),
            _ => None,
        }
    }

    /// A block node whose first character is at `pos`, in column `col`; `parent` is the
    /// indentation of the enclosing block (-1 at the top).
    fn node(&mut self, col: isize, parent: isize) -> Result<Value, String> {
        self.enter()?;
        let value = self.node_inner(col, parent);
        self.depth -= 1;
        value
    }

    fn node_inner(&mut self, col: isize, parent: isize) -> Result<Value, String> {
        if self.at_document_marker() {
            return Err(
                self.error("more than one document (or a document end marker) is not supported")
            );
        }
        if let Some(what) = self.unsupported_start() {
            return Err(self.error(what));
        }
        match self.peek() {
            Some(b'-') if blank(self.peek_at(1)) => self.block_seq(col, false),
            Some(b'|' | b'>') => self.block_scalar(parent),
            Some(b'[' | b'{') => {
                let value = self.flow_node(parent)?;
                self.skip_spaces();
                if self.peek() == Some(b':') {
                    return Err(self.error("flow collections as mapping keys are not supported"));
                }
                self.end_of_line("after a flow collection")?;
                Ok(value)
            }
            _ => {
                let (text, quoted) = self.block_scalar_token()?;
                self.skip_spaces();
                if self.peek() == Some(b':') && blank(self.peek_at(1)) {
                    if text.len() > MAX_KEY {
                        return Err(self.error("mapping key is too long"));
                    }
                    self.pos += 1;
                    return self.block_map(col, text);
                }
                self.end_of_line("after a scalar (multi-line scalars are not supported)")?;
                if quoted {
                    Ok(Value::String(text))
                } else {
                    plain_value(&text).map_err(|e| self.error(&e))
                }
            }
        }
    }

    /// A block mapping in column `col`; its first key is read and `pos` is past its `:`.
    fn block_map(&mut self, col: isize, first_key: String) -> Result<Value, String> {
        let mut map = Map::new();
        let mut key = first_key;
        loop {
            let value = self.value_after_indicator(col, true)?;
            if map.insert(key.clone(), value).is_some() {
                return Err(self.error(&format!("duplicate mapping key {key:?}")));
            }
            self.skip_blank_lines()?;
            match self.indent() {
                _ if self.at_document_marker() => return Ok(Value::Object(map)),
                Some(indent) if indent == col => self.pos += indent as usize,
                Some(indent) if indent > col => {
                    self.pos += indent as usize;
                    return Err(self.error("bad indentation of a mapping entry"));
                }
                _ => return Ok(Value::Object(map)),
            }
            if let Some(what) = self.unsupported_start() {
                return Err(self.error(what));
            }
            if matches!(self.peek(), Some(b'-' | b'[' | b'{' | b'|' | b'>')) {
                return Err(self.error("expected a mapping key"));
            }
            key = self.block_scalar_token()?.0;
            self.skip_spaces();
            if !(self.peek() == Some(b':') && blank(self.peek_at(1))) || key.len() > MAX_KEY {
                return Err(self.error("expected `:` after a mapping key"));
            }
            self.pos += 1;
        }
    }

    /// A block sequence whose first `-` is at `pos`, in column `col`. `under_key`: it sits
    /// at its parent key's indentation, so a following key ends it.
    fn block_seq(&mut self, col: isize, under_key: bool) -> Result<Value, String> {
        let mut items = Vec::new();
        loop {
            self.pos += 1; // the `-`
            items.push(self.value_after_indicator(col, false)?);
            self.skip_blank_lines()?;
            let line_start = self.pos;
            match self.indent() {
                _ if self.at_document_marker() => return Ok(Value::Array(items)),
                Some(indent) if indent == col => self.pos += indent as usize,
                Some(indent) if indent > col => {
                    self.pos += indent as usize;
                    return Err(self.error("bad indentation of a sequence entry"));
                }
                _ => return Ok(Value::Array(items)),
            }
            if !(self.peek() == Some(b'-') && blank(self.peek_at(1))) {
                if under_key {
                    self.pos = line_start;
                    return Ok(Value::Array(items));
                }
                return Err(self.error("expected a sequence entry `- `"));
            }
        }
    }

    /// The value after a mapping's `:` or a sequence's `-` (of a node in column `col`).
    fn value_after_indicator(&mut self, col: isize, in_map: bool) -> Result<Value, String> {
        let start = self.pos;
        self.skip_spaces();
        if !in_map && self.s[start..self.pos].contains(&b'\t') {
            return Err(self.error("tabs are not allowed after a sequence entry's `-`"));
        }
        if matches!(self.peek(), None | Some(b'\n' | b'\r' | b'#')) {
            self.end_of_line("")?;
            self.skip_blank_lines()?;
            return match self.indent() {
                Some(indent) if indent > col => {
                    self.pos += indent as usize;
                    self.node(indent, col)
                }
                Some(indent) if indent == col && in_map => {
                    let line_start = self.pos;
                    self.pos += indent as usize;
                    if self.peek() == Some(b'-') && blank(self.peek_at(1)) {
                        self.enter()?;
                        let seq = self.block_seq(col, true);
                        self.depth -= 1;
                        return seq;
                    }
                    self.pos = line_start;
                    Ok(Value::Null)
                }
                _ => Ok(Value::Null),
            };
        }
        let here = self.column();
        if in_map {
            if self.peek() == Some(b'-') && blank(self.peek_at(1)) {
                return Err(self.error("block sequence entries are not allowed in this context"));
            }
            let start = self.pos;
            if !matches!(self.peek(), Some(b'[' | b'{' | b'|' | b'>'))
                && self.unsupported_start().is_none()
            {
                // A second `key:` on the line (`a: b: c`) is not a value.
                self.block_scalar_token()?;
                self.skip_spaces();
                if self.peek() == Some(b':') && blank(self.peek_at(1)) {
                    return Err(self.error("mapping values are not allowed in this context"));
                }
                self.pos = start;
            }
        }
        self.node(here, col)
    }

    /// A plain or quoted scalar on one line: (text, quoted). A plain one ends before
    /// `: `, ` #` or the end of the line.
    fn block_scalar_token(&mut self) -> Result<(String, bool), String> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => Ok((self.quoted(q)?, true)),
            _ => {
                let start = self.pos;
                if !self.plain_can_start(false) {
                    return Err(self.error("unexpected character at the start of a scalar"));
                }
                loop {
                    match self.peek() {
                        None | Some(b'\n') => break,
                        Some(b'\r') if self.peek_at(1) == Some(b'\n') => break,
                        Some(b':') if blank(self.peek_at(1)) => break,
                        Some(b' ' | b'\t') if self.peek_at(1) == Some(b'#') => break,
                        _ => self.pos += 1,
                    }
                }
                let text = self.text[start..self.pos].trim_end_matches([' ', '\t']);
                Ok((text.to_string(), false))
            }
        }
    }

    /// Whether a plain scalar may start at `pos`: not with an indicator, except `-`, `?`
    /// and `:` directly followed by a character that could continue it.
    fn plain_can_start(&self, flow: bool) -> bool {
        let flow_indicator = |b: Option<u8>| matches!(b, Some(b',' | b'[' | b']' | b'{' | b'}'));
        match self.peek() {
            // In flow collections `?` and `:` are always indicators (as libyaml reads them).
            Some(b'?' | b':') if flow => false,
            Some(b'-' | b'?' | b':') => {
                !(blank(self.peek_at(1)) || flow && flow_indicator(self.peek_at(1)))
            }
            Some(
                b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\''
                | b'"' | b'%' | b'@' | b'`',
            ) => false,
            b => !blank(b),
        }
    }

    /// A single- or double-quoted scalar on one line; `pos` is at the opening quote.
    fn quoted(&mut self, quote: u8) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("unterminated quoted string"));
            };
            match b {
                b'\n' | b'\r' => {
                    return Err(self.error(
                        "unterminated quoted string (multi-line quoted scalars are not supported)",
                    ))
                }
                b'\'' if quote == b'\'' && self.peek_at(1) == Some(b'\'') => {
                    out.push('\'');
                    self.pos += 2;
                }
                _ if b == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' if quote == b'"' => {
                    self.pos += 1;
                    out.push(self.escape()?);
                }
                _ => {
                    let ch = self.text[self.pos..].chars().next().unwrap_or('\u{fffd}');
                    out.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
    }

    /// A double-quoted escape; `pos` is past the backslash.
    fn escape(&mut self) -> Result<char, String> {
        let Some(b) = self.peek() else {
            return Err(self.error("unterminated quoted string"));
        };
        self.pos += 1;
        let hex = |p: &mut Self, n: usize| {
            let digits = p
                .text
                .get(p.pos..p.pos + n)
                .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
            let code = digits
                .and_then(|d| u32::from_str_radix(d, 16).ok())
                .and_then(char::from_u32);
            p.pos += n;
            code.ok_or_else(|| p.error("invalid escape in a double-quoted string"))
        };
        Ok(match b {
            b'0' => '\0',
            b'a' => '\u{7}',
            b'b' => '\u{8}',
            b't' | b'\t' => '\t',
            b'n' => '\n',
            b'v' => '\u{b}',
            b'f' => '\u{c}',
            b'r' => '\r',
            b'e' => '\u{1b}',
            b' ' => ' ',
            b'"' => '"',
            b'/' => '/',
            b'\\' => '\\',
            b'N' => '\u{85}',
            b'_' => '\u{a0}',
            b'L' => '\u{2028}',
            b'P' => '\u{2029}',
            b'x' => hex(self, 2)?,
            b'u' => hex(self, 4)?,
            b'U' => hex(self, 8)?,
            _ => {
                self.pos -= 1;
                return Err(self.error("invalid escape in a double-quoted string"));
            }
        })
    }

    /// `|` or `>` with optional `-`/`+` chomping; the content is the following lines
    /// indented more than `parent`.
    fn block_scalar(&mut self, parent: isize) -> Result<Value, String> {
        let folded = self.peek() == Some(b'>');
        self.pos += 1;
        let chomp = match self.peek() {
            Some(c @ (b'-' | b'+')) => {
                self.pos += 1;
                c
            }
            _ => b' ',
        };
        if self
            .peek()
            .is_some_and(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
        {
            return Err(self.error("block scalar indentation indicators are not supported"));
        }
        if !blank(self.peek()) && self.peek() != Some(b'#') {
            return Err(self.error("unexpected text after a block scalar indicator"));
        }
        self.end_of_line("after a block scalar indicator")?;
        if self.peek() == Some(b'\r') {
            self.pos += 1;
        }
        self.pos += usize::from(self.peek().is_some());
        // Lines of the scalar: None for an empty line, Some(text) for content.
        let mut lines: Vec<Option<&str>> = Vec::new();
        let mut indent: Option<usize> = None;
        let mut max_leading_blank = 0;
        // Line breaks after the last content line: what `+` keeps and `|`/`>` keep one of.
        let mut breaks = 0;
        while self.pos < self.s.len() {
            let rest = &self.text[self.pos..];
            let line_end = rest.find('\n');
            let has_break = line_end.is_some();
            let line = &rest[..line_end.unwrap_or(rest.len())];
            let line = line.strip_suffix('\r').unwrap_or(line);
            let spaces = line.bytes().take_while(|&b| b == b' ').count();
            if line.as_bytes().get(spaces) == Some(&b'\t')
                && indent.is_none_or(|need| spaces < need)
            {
                self.pos += spaces;
                return Err(self.error("tabs are not allowed for indentation"));
            }
            if spaces == line.len() && indent.is_none_or(|need| spaces <= need) {
                if indent.is_none() {
                    max_leading_blank = max_leading_blank.max(spaces);
                }
                lines.push(None);
                breaks += usize::from(has_break);
            } else {
                let need = *indent.get_or_insert(spaces);
                if spaces < need || spaces == 0 || (spaces as isize) <= parent {
                    break;
                }
                if max_leading_blank > need {
                    return Err(
                        self.error("leading empty lines of a block scalar are indented too far")
                    );
                }
                lines.push(Some(&line[need..]));
                breaks = usize::from(has_break);
            }
            self.pos += line_end.map_or(rest.len(), |i| i + 1);
        }
        if indent.is_none_or(|i| i == 0 || (i as isize) <= parent) {
            indent = None;
        }
        // Empty lines after the content belong to the chomping, not to the next node; the
        // parser is left at the start of the first line that is not part of the scalar.
        let trailing = lines.iter().rev().take_while(|l| l.is_none()).count();
        let content = &lines[..lines.len() - trailing];
        if indent.is_none() || content.is_empty() {
            return match chomp {
                b'+' if !lines.is_empty() => {
                    Err(self.error("empty keep-chomped block scalars are not supported"))
                }
                _ => Ok(Value::String(String::new())),
            };
        }
        let mut out = String::new();
        for (i, line) in content.iter().enumerate() {
            if let Some(text) = line {
                if folded && text.starts_with([' ', '\t']) {
                    return Err(
                        self.error("more-indented lines in folded block scalars are not supported")
                    );
                }
            }
            if i > 0 {
                // Folding: a break between two text lines is a space, the break before
                // empty lines disappears, and each empty line is a newline.
                match (folded, content[i - 1].is_some(), line.is_some()) {
                    (false, _, _) | (true, false, _) => out.push('\n'),
                    (true, true, true) => out.push(' '),
                    (true, true, false) => {}
                }
            }
            out.push_str(line.unwrap_or(""));
        }
        match chomp {
            b'-' => {}
            b'+' => out.extend(std::iter::repeat_n('\n', breaks)),
            _ if breaks > 0 => out.push('\n'),
            _ => {}
        }
        Ok(Value::String(out))
    }

    /// Skip whitespace, line breaks and comments inside a flow collection; lines must stay
    /// indented past the enclosing block.
    fn flow_space(&mut self, parent: isize) -> Result<(), String> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r') => self.pos += 1,
                Some(b'\n') => {
                    self.pos += 1;
                    let n = self.s[self.pos..]
                        .iter()
                        .take_while(|&&b| b == b' ')
                        .count();
                    let next = self.s.get(self.pos + n).copied();
                    if !matches!(next, None | Some(b'\n' | b'\r' | b'#')) && (n as isize) <= parent
                    {
                        self.pos += n;
                        return Err(
                            self.error("flow collection lines must be indented past their block")
                        );
                    }
                    if self.at_document_marker() {
                        return Err(self.error("document marker inside a flow collection"));
                    }
                }
                Some(b'#')
                    if blank(self.pos.checked_sub(1).and_then(|i| self.s.get(i).copied())) =>
                {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.pos += 1;
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// A flow node: `[...]`, `{...}`, a quoted or a plain scalar.
    fn flow_node(&mut self, parent: isize) -> Result<Value, String> {
        self.enter()?;
        let value = self.flow_node_inner(parent);
        self.depth -= 1;
        value
    }

    fn flow_node_inner(&mut self, parent: isize) -> Result<Value, String> {
        if let Some(what) = self.unsupported_start() {
            return Err(self.error(what));
        }
        match self.peek() {
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.flow_space(parent)?;
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        return Ok(Value::Array(items));
                    }
                    items.push(self.flow_node(parent)?);
                    self.flow_space(parent)?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {}
                        Some(b':') => {
                            return Err(
                                self.error("mappings inside flow sequences are not supported")
                            )
                        }
                        _ => return Err(self.error("expected `,` or `]` in a flow sequence")),
                    }
                }
            }
            Some(b'{') => {
                self.pos += 1;
                let mut map = Map::new();
                loop {
                    self.flow_space(parent)?;
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Value::Object(map));
                    }
                    let key = match self.peek() {
                        Some(q @ (b'"' | b'\'')) => self.quoted(q)?,
                        Some(b'[' | b'{') => {
                            return Err(
                                self.error("flow collections as mapping keys are not supported")
                            )
                        }
                        _ => self.flow_plain()?,
                    };
                    let line_end = self.text[self.pos..]
                        .find('\n')
                        .map_or(self.s.len(), |i| self.pos + i);
                    self.flow_space(parent)?;
                    let mut value = Value::Null;
                    if self.peek() == Some(b':') {
                        if self.pos > line_end || key.len() > MAX_KEY {
                            return Err(self.error("a key and its `:` must be on one short line"));
                        }
                        self.pos += 1;
                        self.flow_space(parent)?;
                        if !matches!(self.peek(), Some(b',' | b'}')) {
                            value = self.flow_node(parent)?;
                            self.flow_space(parent)?;
                        }
                    }
                    if map.insert(key.clone(), value).is_some() {
                        return Err(self.error(&format!("duplicate mapping key {key:?}")));
                    }
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {}
                        _ => return Err(self.error("expected `,` or `}` in a flow mapping")),
                    }
                }
            }
            Some(q @ (b'"' | b'\'')) => self.quoted(q).map(Value::String),
            _ => {
                let text = self.flow_plain()?;
                plain_value(&text).map_err(|e| self.error(&e))
            }
        }
    }

    /// A plain scalar inside a flow collection, on one line.
    fn flow_plain(&mut self) -> Result<String, String> {
        let start = self.pos;
        let ends =
            |b: Option<u8>| matches!(b, None | Some(b',' | b'[' | b']' | b'{' | b'}')) || blank(b);
        if ends(self.peek()) || !self.plain_can_start(true) {
            return Err(self.error("expected a value in a flow collection"));
        }
        if self.peek() == Some(b'-') && blank(self.peek_at(1)) {
            return Err(self.error("block sequence entries are not allowed in a flow collection"));
        }
        loop {
            match self.peek() {
                None | Some(b'\n' | b'\r' | b',' | b'[' | b']' | b'{' | b'}') => break,
                Some(b':') if blank(self.peek_at(1)) => break,
                Some(b':')
                    if matches!(
                        self.peek_at(1),
                        Some(b',' | b'?' | b'[' | b']' | b'{' | b'}')
                    ) =>
                {
                    return Err(self.error("unexpected `:` in a plain scalar"));
                }
                Some(b' ' | b'\t') if self.peek_at(1) == Some(b'#') => break,
                _ => self.pos += 1,
            }
        }
        let text = self.text[start..self.pos]
            .trim_end_matches([' ', '\t'])
            .to_string();
        // A plain scalar continued on the next line is not supported.
        let save = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        if matches!(self.peek(), Some(b'\n' | b'\r')) {
            let rest = self.text[self.pos..].trim_start();
            if !rest.is_empty() && !rest.starts_with([',', ']', '}', ':', '#']) {
                return Err(self.error("multi-line plain scalars are not supported"));
            }
        }
        self.pos = save;
        Ok(text)
    }
}

/// A plain scalar typed as serde_yaml does: null, bool, integer, float, else a string.
fn plain_value(s: &str) -> Result<Value, String> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let out_of_range = || format!("integer {s} is out of range");
    if let Some(n) = unsigned(s) {
        return u64::try_from(n)
            .map(Value::from)
            .map_err(|_| out_of_range());
    }
    if let Some(n) = negative(s) {
        return i64::try_from(n)
            .map(Value::from)
            .map_err(|_| out_of_range());
    }
    if !leading_zero_digits(s) {
        if let Some(f) = float(s) {
            return Ok(Number::from_f64(f).map_or(Value::Null, Value::Number));
        }
    }
    Ok(Value::String(s.to_string()))
}

/// `0123` is a string in YAML 1.2, not an octal or decimal number.
fn leading_zero_digits(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    digits.len() > 1 && digits.starts_with('0') && digits[1..].bytes().all(|b| b.is_ascii_digit())
}

const RADIX_PREFIXES: [(&str, u32); 3] = [("0x", 16), ("0o", 8), ("0b", 2)];

/// A non-negative integer: decimal, `0x`, `0o` or `0b`, with an optional `+`.
fn unsigned(s: &str) -> Option<u128> {
    let t = s.strip_prefix('+').unwrap_or(s);
    for (prefix, radix) in RADIX_PREFIXES {
        if let Some(digits) = t.strip_prefix(prefix) {
            if digits.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(n) = u128::from_str_radix(digits, radix) {
                return Some(n);
            }
        }
    }
    if t.starts_with(['+', '-']) || leading_zero_digits(s) {
        return None;
    }
    t.parse().ok()
}

/// A negative integer: `-123`, `-0x1f`, `-0o17`, `-0b101`.
fn negative(s: &str) -> Option<i128> {
    for (prefix, radix) in RADIX_PREFIXES {
        if let Some(digits) = s.strip_prefix('-').and_then(|t| t.strip_prefix(prefix)) {
            if let Ok(n) = i128::from_str_radix(&format!("-{digits}"), radix) {
                return Some(n);
            }
        }
    }
    if leading_zero_digits(s) {
        return None;
    }
    s.parse().ok()
}

/// A float: Rust's syntax (finite values only) or `.inf`, `-.inf`, `.nan` spellings.
fn float(s: &str) -> Option<f64> {
    let t = match s.strip_prefix('+') {
        Some(t) if t.starts_with(['+', '-']) => return None,
        Some(t) => t,
        None => s,
    };
    match (t, s) {
        (".inf" | ".Inf" | ".INF", _) => Some(f64::INFINITY),
        (_, "-.inf" | "-.Inf" | "-.INF") => Some(f64::NEG_INFINITY),
        (_, ".nan" | ".NaN" | ".NAN") => Some(f64::NAN),
        _ => float::parse(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen::{Gen, SplitMix};

    /// ours Ok => serde_yaml gives the same value; serde_yaml Err => ours Err. Returns
    /// whether ours accepted.
    fn compare(text: &str) -> bool {
        let expected: Result<Value, _> = serde_yaml::from_str(text);
        match (parse(text), expected) {
            (Ok(got), Ok(want)) => {
                assert_eq!(got, want, "{text:?}");
                true
            }
            (Ok(got), Err(e)) => panic!("{text:?}: ours accepted {got}, serde_yaml: {e}"),
            (Err(e), _) => {
                assert!(e.starts_with("line "), "{text:?}: {e}");
                false
            }
        }
    }

    /// Inputs both parsers must accept alike.
    const SUPPORTED: &[&str] = &[
        "",
        "# only a comment\n",
        "---\nconcurrency: 2\n",
        "--- # config\n{}\n",
        "{ \"holdApplicationUntilProxyStarts\": true }",
        "concurrency: 8",
        "holdApplicationUntilProxyStarts: true\nproxyMetadata:\n  B: \"2\"\n",
        "discoveryAddress: foo:123\nconcurrency: 0\nproxyMetadata:\n  FOO: bar",
        "terminationDrainDuration: 30s",
        "{\"statusPort\": 0}",
        "{\n  \"concurrency\": 2,\n  \"proxyMetadata\": {\"A\": \"b\", \"N\": null},\n  \"x\": [1, 2.5, -3, true]\n}\n",
        "tracing:\n  zipkin:\n    address: zipkin.istio-system:9411\n  sampling: 100.0\n",
        "proxyStatsMatcher:\n  inclusionPrefixes:\n  - cluster.outbound\n  - listener\n",
        "extraStatTags:\n  - a\n  - 'b c'\n",
        "readinessProbe:\n  httpGet: {path: /healthz/ready, port: 15021}\n",
        "proxyHeaders: {forwardedClientCert: SANITIZE, server: {disabled: true}}",
        "items:\n- name: a\n  value: 1\n- name: b\n  value: -0x1f\n",
        "nested:\n  - - 1\n    - 2\n  - []\n  -\n  - {}\n",
        "quotes: [\"a\\tb\\u00e9\\\"\", 'it''s', \"\\x41\\/\"]",
        "types: [~, null, Null, '', 0, -0, +7, 0o17, 0b101, 0x_1, 012, 1e3, .5, -.inf, .NaN, 1_0, 0x, 18446744073709551615]",
        "bools: [true, True, TRUE, false, yes, no, on]",
        "\"quoted key\": 1\n'single': 2\n3: 4\nnull: 5\n",
        "a: b # comment\nc: 'd' # comment\n# trailing\n",
        "literal: |\n  line one\n  line two\n\nafter: 1\n",
        "folded: >\n  a\n  b\n\n  c\nstrip: |-\n  x\nkeep: |+\n  y\n\nz: 1\n",
        "url: http://example.com:8080/path?q=1#frag\n",
        "a : b\nc:    d   \n",
        "nothing:\nalso: ~\n",
        "just a string",
        "- 1\n- two\n",
        "proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"true\"\n  EMPTY: \"\"\n",
    ];

    /// Inputs ours must reject (serde_yaml rejects most; the rest are outside the subset).
    const REJECTED: &[&str] = &[
        "{not json",
        "a: 'unterminated",
        "a: \"unterminated",
        "a: &x 1\nb: *x\n",
        "a: !!str 1",
        "a: 1\na: 2\n",
        "{a: 1, a: 2}",
        "a: 1\n---\nb: 2\n",
        "a:\n\tb: 1\n",
        "a:\n  b: 1\n c: 2\n",
        "a: b: c",
        "a: - b",
        "- a\nb: 1\n",
        "? a\n: b\n",
        "[a, b",
        "{a: [1, 2}",
        "a: \"\\q\"",
        "a: plain\n  continued\n",
        "a: |2\n   x\n",
        "%YAML 1.2\n---\na: 1\n",
        "a: 99999999999999999999999",
        "[1,,2]",
    ];

    #[test]
    fn supported_inputs_match_serde_yaml() {
        for text in SUPPORTED {
            assert!(compare(text), "{text:?} was rejected: {:?}", parse(text));
        }
    }

    #[test]
    fn unsupported_or_invalid_inputs_are_errors() {
        for text in REJECTED {
            assert!(!compare(text), "{text:?} was accepted");
        }
    }

    #[test]
    fn generated_inputs_match_serde_yaml() {
        const KEYS: &[&str] = &["a", "concurrency", "\"q k\"", "'s'", "x-y", "1"];
        const SCALARS: &[&str] = &[
            "1",
            "-2",
            "0x1F",
            "3.5",
            "true",
            "~",
            "''",
            "\"a\\nb\"",
            "plain text",
            "08",
            "1e400",
            ".inf",
            "a#b",
            "[1, b]",
            "{c: d}",
            "\"\"",
            "- x",
            "|",
            "-",
            "a: b",
            "'x",
            "&a 1",
            "|\n  text\n  more",
            ">-\n  a\n\n  b\n",
            "|+\n  k\n\n",
            "[1,\n  2]",
            "{a: 1,\n  b: [x]}",
            "\"esc \\u00e9 \\x41\"",
            "'it''s'",
            "0o17",
            "-0x10",
            "+.inf",
            "1_000",
            "~ # c",
            "\"a\" # c",
            "{\"j\":[1,{\"k\":null}]}",
            "[a, [b, {c: d}], ]",
            "http://h:1/p",
            "-.5",
            "+12",
            "0b11",
        ];
        const SPACES: &[&str] = &["", " ", "  ", "    ", "\t"];
        let mut seed = SplitMix(0x9e37_79b9_7f4a_7c15);
        let mut rng = Gen::new(&mut seed);
        let mut accepted = 0;
        for _ in 0..GENERATED {
            let mut text = String::new();
            if rng.below(8) == 0 {
                text.push_str("---\n");
            }
            let mut depth = 0usize;
            for _ in 0..1 + rng.below(6) {
                let indent = if rng.below(6) == 0 {
                    rng.pick(SPACES).to_string()
                } else {
                    "  ".repeat(depth)
                };
                let dash = if rng.below(4) == 0 { "- " } else { "" };
                let key = rng.pick(KEYS);
                match rng.below(4) {
                    0 => {
                        text.push_str(&format!("{indent}{dash}{key}:\n"));
                        depth += 1;
                    }
                    1 => text.push_str(&format!("{indent}{dash}{}\n", rng.pick(SCALARS))),
                    _ => {
                        let value = rng.pick(SCALARS);
                        let comment = if rng.below(5) == 0 { " # c" } else { "" };
                        text.push_str(&format!("{indent}{dash}{key}: {value}{comment}\n"));
                        if rng.below(3) == 0 {
                            depth = depth.saturating_sub(1);
                        }
                    }
                }
            }
            if rng.below(3) == 0 {
                text.pop();
            }
            accepted += usize::from(compare(&text));
        }
        assert!(
            (GENERATED / 10..GENERATED * 9 / 10).contains(&accepted),
            "{accepted} of {GENERATED} accepted"
        );
    }

    #[test]
    fn mutated_inputs_match_serde_yaml() {
        const BYTES: &[u8] = b"\r \n-:#'\"[]{},|>&*!?%\\ax0.\t";
        let mut seed = SplitMix(0x2545_f491_4f6c_dd1d);
        let mut rng = Gen::new(&mut seed);
        let mut accepted = 0;
        for _ in 0..MUTATIONS {
            let mut bytes = rng.pick(SUPPORTED).as_bytes().to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len() + 1);
                let b = BYTES[rng.below(BYTES.len())];
                match rng.below(3) {
                    0 if at < bytes.len() => bytes[at] = b,
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, b),
                }
            }
            accepted += usize::from(compare(&String::from_utf8_lossy(&bytes)));
        }
        assert!(
            (MUTATIONS / 10..MUTATIONS * 9 / 10).contains(&accepted),
            "{accepted} of {MUTATIONS} accepted"
        );
    }

    /// Inputs per generated test (the parsers agreed on millions while this was written).
    const GENERATED: usize = 2000;
    const MUTATIONS: usize = 2000;
}
