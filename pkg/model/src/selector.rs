//! PromQL-style label selectors: `{service_name="api", env=~"prod.*"}`.
//!
//! This is the selector syntax Grafana and the Pyroscope APIs send in
//! `label_selector` fields and in the legacy `/render?query=` parameter:
//!
//! - `{}` or the empty string selects every series;
//! - matchers are `name op value`, separated by commas (a trailing comma is
//!   allowed), with whitespace allowed anywhere between tokens;
//! - operators are `=`, `!=`, `=~` and `!~`;
//! - label names match `[a-zA-Z_][a-zA-Z0-9_.]*` (dots are allowed because
//!   OpenTelemetry-style names such as `service.namespace` are common), or
//!   are any UTF-8 quoted as in Prometheus 3: `{"k8s.namespace.name"="ns1"}`;
//!   a quoted string on its own (`{"process_cpu:cpu:...", a="b"}`) is the
//!   metric name, i.e. `__name__="..."`;
//! - values are `"double"` or `'single'` quoted strings with Go-style escapes
//!   (`\"`, `\\`, `\n`, `\t`, `\xHH`, `\uHHHH`, ...) or `` `raw` `` strings
//!   without escapes, as in PromQL.
//!
//! Regular expressions are fully anchored like Prometheus's (`^(?s:re)$`: the
//! pattern must match the whole value and `.` also matches a newline), and
//! are compiled once, when the selector is parsed, under a size limit so a
//! hostile pattern is refused instead of eating the querier's memory.
//! Parsing itself is bounded by [`MAX_SELECTOR_LEN`] and [`MAX_MATCHERS`].
//!
//! As in Prometheus, a label a series does not have compares as the empty
//! string: `{env=""}` selects series without `env`, `{env!=""}` those with it.

use std::fmt::{self, Write as _};

use regex::{Regex, RegexBuilder};

use crate::{Error, Labels, ProfileType, Result, labels::METRIC_NAME};

/// The longest selector accepted, in bytes.
pub const MAX_SELECTOR_LEN: usize = 64 * 1024;
/// The most matchers one selector may hold.
pub const MAX_MATCHERS: usize = 64;
/// The most memory, in bytes, one compiled regular expression may use. An
/// alternation as long as [`MAX_SELECTOR_LEN`] (what a Grafana multi-value
/// variable expands to) needs about 2.8 MB; `(.{100}){100}` needs 9.6 MB.
pub const REGEX_SIZE_LIMIT: usize = 4 << 20;
/// The memory, in bytes, the regular expressions of one selector share: with
/// more than four of them, each gets its share of this (but at least 256 KiB)
/// instead of [`REGEX_SIZE_LIMIT`], so that 64 matchers cannot claim 64 times
/// the limit. Fast paths (`.*`, `.+`, alternations of literals) take no share.
pub const SELECTOR_REGEX_BUDGET: usize = 16 << 20;
/// The smallest per-expression limit a shared budget gives.
const MIN_REGEX_SIZE_LIMIT: usize = 256 << 10;
/// The cache budget, in bytes, of one regular expression's lazy DFA.
const REGEX_DFA_SIZE_LIMIT: usize = 2 << 20;
/// How much of a rejected selector an error message quotes.
const ERROR_QUOTE_LEN: usize = 256;

/// How a matcher compares a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`: the value equals the string.
    Equal,
    /// `!=`: the value differs from the string.
    NotEqual,
    /// `=~`: the whole value matches the regular expression.
    Regex,
    /// `!~`: the whole value does not match the regular expression.
    NotRegex,
}

impl MatchOp {
    /// Returns the operator as written in a selector, e.g. `=~`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Regex => "=~",
            Self::NotRegex => "!~",
        }
    }

    /// Returns whether the operator compares against a regular expression.
    pub fn is_regex(self) -> bool {
        matches!(self, Self::Regex | Self::NotRegex)
    }

    /// Returns whether the operator negates its comparison (`!=`, `!~`).
    pub fn is_negative(self) -> bool {
        matches!(self, Self::NotEqual | Self::NotRegex)
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `name op "value"` term. A missing label matches as the empty string,
/// as in Prometheus.
///
/// Build one with [`Matcher::new`] or [`Selector::parse`]: both compile a
/// regular expression once. The public fields describe the matcher; changing
/// `op` or `value` afterwards does not recompile it.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// How the label value is compared.
    pub op: MatchOp,
    /// The string or regular expression, unescaped.
    pub value: String,
    /// The compiled form of `value` for `=~` and `!~`; `None` for `=` and `!=`.
    pattern: Option<Pattern>,
}

/// A compiled regular expression, with fast paths for the shapes Grafana
/// sends most: `.*`, `.+` and alternations of literals (`a|b|c`, what a
/// multi-value dashboard variable expands to).
#[derive(Clone, Debug)]
enum Pattern {
    /// `.*`: matches every value.
    Any,
    /// `.+`: matches every non-empty value.
    NonEmpty,
    /// A pattern without metacharacters, or an alternation of such: matches
    /// exactly these strings (sorted, for binary search).
    Literals(Box<[Box<str>]>),
    /// Anything else, anchored as `^(?s:pattern)$`.
    Regex(Regex),
}

impl Pattern {
    /// Returns whether `pattern` needs the regex engine (no fast path fits).
    fn needs_engine(pattern: &str) -> bool {
        !matches!(pattern, ".*" | ".+") && pattern.contains(is_regex_meta)
    }

    /// Compiles `pattern` within `size_limit` bytes, returning a reason a
    /// user can act on when it is refused.
    fn compile(pattern: &str, size_limit: usize) -> std::result::Result<Self, String> {
        match pattern {
            ".*" => return Ok(Self::Any),
            ".+" => return Ok(Self::NonEmpty),
            _ => {}
        }
        if !Self::needs_engine(pattern) {
            // `|` is the only metacharacter left: a set of literals.
            let mut literals: Vec<Box<str>> = pattern.split('|').map(Box::from).collect();
            literals.sort_unstable();
            literals.dedup();
            return Ok(Self::Literals(literals.into_boxed_slice()));
        }
        let build = |p: &str| {
            RegexBuilder::new(p)
                .size_limit(size_limit)
                .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
                .build()
                .map_err(describe_regex_error)
        };
        // A pattern with an unmatched `)`, such as `a)|(b`, would still
        // compile once wrapped, but would close our group and lose its
        // anchors: compile it alone first to refuse it. Without any `)`
        // there is nothing to check and the second compilation is saved.
        if pattern.contains(')') {
            build(pattern)?;
        }
        build(&format!("^(?s:{pattern})$")).map(Self::Regex)
    }

    fn is_match(&self, value: &str) -> bool {
        match self {
            Self::Any => true,
            Self::NonEmpty => !value.is_empty(),
            Self::Literals(literals) => literals.binary_search_by(|l| (**l).cmp(value)).is_ok(),
            Self::Regex(re) => re.is_match(value),
        }
    }
}

/// Returns whether `c` has a meaning in a regular expression, other than the
/// alternation `|`.
fn is_regex_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '^' | '$'
    )
}

/// Turns a `regex` error into one line: syntax errors come as a multi-line
/// diagram whose last line holds the reason.
fn describe_regex_error(err: regex::Error) -> String {
    match err {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("error: "))
            .unwrap_or(text.trim())
            .to_owned(),
        regex::Error::CompiledTooBig(limit) => {
            format!("the pattern is too complex (it would compile to more than {limit} bytes)")
        }
        other => other.to_string(),
    }
}

impl Matcher {
    /// Builds a matcher, compiling `value` when `op` is `=~` or `!~`.
    ///
    /// Returns [`Error::Malformed`] when the regular expression is invalid or
    /// exceeds [`REGEX_SIZE_LIMIT`]. The label name is not checked, so
    /// matchers can be built for any label a series may carry.
    pub fn new(name: impl Into<String>, op: MatchOp, value: impl Into<String>) -> Result<Self> {
        Self::with_size_limit(name.into(), op, value.into(), REGEX_SIZE_LIMIT, "")
    }

    /// Builds a matcher whose regular expression may use `size_limit` bytes;
    /// `why_limit` explains a limit below [`REGEX_SIZE_LIMIT`] in errors.
    fn with_size_limit(
        name: String,
        op: MatchOp,
        value: String,
        size_limit: usize,
        why_limit: &str,
    ) -> Result<Self> {
        let pattern = if op.is_regex() {
            Some(Pattern::compile(&value, size_limit).map_err(|reason| {
                Error::Malformed(format!(
                    "invalid regular expression {} for label {name}: {reason}{why_limit}",
                    Shortened(&value)
                ))
            })?)
        } else {
            None
        };
        Ok(Self {
            name,
            op,
            value,
            pattern,
        })
    }

    /// Returns whether `value` (empty when the label is absent) satisfies this matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        let hit = match &self.pattern {
            Some(pattern) => pattern.is_match(value),
            None => value == self.value,
        };
        hit != self.op.is_negative()
    }
}

impl PartialEq for Matcher {
    /// Compares name, operator and value; the compiled form follows from them.
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl fmt::Display for Matcher {
    /// Formats as `name op "value"`, escaped so that it parses back; a name
    /// an unquoted name cannot spell is quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_bare_name(&self.name) {
            f.write_str(&self.name)?;
        } else {
            Quoted(&self.name).fmt(f)?;
        }
        write!(f, "{}{}", self.op, Quoted(&self.value))
    }
}

/// Returns whether `name` can be written unquoted in a selector
/// (`[a-zA-Z_][a-zA-Z0-9_.]*`); other names need Prometheus 3 quoting.
pub fn is_bare_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// A conjunction of matchers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// The matchers, all of which a series must satisfy.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Parses `{...}`; an empty string or `{}` selects everything.
    ///
    /// Returns [`Error::Malformed`] naming the position (1-based, in
    /// characters) and what was expected there, e.g.
    /// `invalid selector {service_name="x": expected "}" at position 18`.
    pub fn parse(input: &str) -> Result<Self> {
        check_len(input, "selector")?;
        let mut parser = Parser::new(input, "selector");
        parser.skip_ws();
        let selector = if parser.at_end() {
            Self::default()
        } else {
            parser.selector()?
        };
        parser.end()?;
        Ok(selector)
    }

    /// Parses the legacy `/render` query form: a profile type ID followed by an
    /// optional selector, e.g.
    /// `process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="x"}`.
    ///
    /// As in Pyroscope, which reads the type as the PromQL metric name, the
    /// type may instead be given as a `__name__="<type ID>"` matcher; that
    /// matcher is then removed from the returned selector.
    pub fn parse_profile_query(input: &str) -> Result<(ProfileType, Self)> {
        check_len(input, "query")?;
        let brace = input.find('{').unwrap_or(input.len());
        let type_id = input[..brace].trim();
        let mut parser = Parser::new(input, "query");
        parser.pos = brace;
        let mut selector = if parser.at_end() {
            Self::default()
        } else {
            parser.selector()?
        };
        parser.end()?;

        let name_matcher = selector
            .matchers
            .iter()
            .position(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal);
        let profile_type = match (type_id.is_empty(), name_matcher) {
            (false, None) => type_id.parse()?,
            (true, Some(i)) => selector.matchers.remove(i).value.parse()?,
            (false, Some(_)) => {
                return Err(parser.fail(format!(
                    "the profile type is given twice, before the selector and as {METRIC_NAME}"
                )));
            }
            (true, None) => {
                return Err(parser.fail(
                    "expected a profile type ID such as process_cpu:cpu:nanoseconds:cpu:nanoseconds \
                     before the selector"
                        .to_owned(),
                ));
            }
        };
        Ok((profile_type, selector))
    }

    /// Returns whether every matcher accepts `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches_value(labels.get(&m.name).unwrap_or("")))
    }

    /// Returns the value of the first `name="value"` matcher, if any: a series
    /// must then carry exactly that value, which lets a caller go straight to
    /// one partition (e.g. by `service_name`) instead of scanning them all.
    pub fn equal_value(&self, name: &str) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.op == MatchOp::Equal && m.name == name)
            .map(|m| m.value.as_str())
    }

    /// Returns whether the selector has no matchers and so selects everything.
    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }
}

impl fmt::Display for Selector {
    /// Formats as `{a="1", b=~"x.*"}`, which [`Selector::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('{')?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            m.fmt(f)?;
        }
        f.write_char('}')
    }
}

impl std::str::FromStr for Selector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Formats a string as a double-quoted selector value that parses back to it.
struct Quoted<'a>(&'a str);

/// Formats a string like [`Quoted`], cut after [`ERROR_QUOTE_LEN`]
/// characters: errors must stay readable whatever was sent.
struct Shortened<'a>(&'a str);

impl fmt::Display for Shortened<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(ERROR_QUOTE_LEN) {
            Some((cut, _)) => write!(f, "{}…", Quoted(&self.0[..cut])),
            None => Quoted(self.0).fmt(f),
        }
    }
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_ascii_control() => write!(f, "\\x{:02x}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

fn check_len(input: &str, what: &str) -> Result<()> {
    if input.len() > MAX_SELECTOR_LEN {
        return Err(Error::Malformed(format!(
            "invalid {what}: it is {} bytes long, the limit is {MAX_SELECTOR_LEN} bytes",
            input.len()
        )));
    }
    Ok(())
}

/// One parsed `name op value`, before its regular expression is compiled.
struct Term {
    name: String,
    op: MatchOp,
    value: String,
    /// Byte offset of the name, for errors.
    at: usize,
}

/// A recursive-descent parser over the input's bytes. Every token that
/// matters is ASCII, and UTF-8 continuation bytes are never ASCII, so byte
/// positions always fall on character boundaries where it looks.
struct Parser<'a> {
    input: &'a str,
    /// What the input is called in errors ("selector", "query").
    what: &'static str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str, what: &'static str) -> Self {
        Self {
            input,
            what,
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn skip_ws(&mut self) {
        let rest = &self.input[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.input[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// Returns the 1-based character position of byte offset `at`.
    fn position(&self, at: usize) -> usize {
        self.input[..at].chars().count() + 1
    }

    /// Builds the error `invalid <what> <input>: <message>`.
    fn fail(&self, message: String) -> Error {
        let shown = match self.input.char_indices().nth(ERROR_QUOTE_LEN) {
            Some((cut, _)) => format!("{}…", &self.input[..cut]),
            None => self.input.to_owned(),
        };
        Error::Malformed(format!("invalid {} {shown}: {message}", self.what))
    }

    /// Builds `expected <what> at position N[, found "c"]` for the current position.
    fn expected(&self, what: &str) -> Error {
        let mut message = format!("expected {what} at position {}", self.position(self.pos));
        if let Some(c) = self.input[self.pos..].chars().next() {
            let _ = write!(message, ", found {}", Quoted(c.encode_utf8(&mut [0; 4])));
        }
        self.fail(message)
    }

    /// Parses `{ matcher, ... }` starting at the current position.
    fn selector(&mut self) -> Result<Selector> {
        if !self.eat("{") {
            return Err(self.expected("\"{\""));
        }
        let mut terms = Vec::new();
        loop {
            self.skip_ws();
            if self.eat("}") {
                break;
            }
            if terms.len() == MAX_MATCHERS {
                return Err(self.fail(format!(
                    "more than {MAX_MATCHERS} matchers (at position {})",
                    self.position(self.pos)
                )));
            }
            terms.push(self.term()?);
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("}") {
                break;
            }
            // At the end of input the useful hint is the missing brace.
            return Err(self.expected(if self.at_end() {
                "\"}\""
            } else {
                "\",\" or \"}\""
            }));
        }
        self.compile(terms)
    }

    /// Builds the matchers, the regular expressions sharing
    /// [`SELECTOR_REGEX_BUDGET`].
    fn compile(&self, terms: Vec<Term>) -> Result<Selector> {
        let engines = terms
            .iter()
            .filter(|t| t.op.is_regex() && Pattern::needs_engine(&t.value))
            .count();
        let size_limit =
            (SELECTOR_REGEX_BUDGET / engines.max(1)).clamp(MIN_REGEX_SIZE_LIMIT, REGEX_SIZE_LIMIT);
        let why_limit = if size_limit < REGEX_SIZE_LIMIT {
            format!(
                "; the selector's {engines} regular expressions share {SELECTOR_REGEX_BUDGET} bytes"
            )
        } else {
            String::new()
        };
        let matchers = terms
            .into_iter()
            .map(|t| {
                Matcher::with_size_limit(t.name, t.op, t.value, size_limit, &why_limit).map_err(
                    |err| match err {
                        Error::Malformed(reason) => self.fail(format!(
                            "{reason} (matcher at position {})",
                            self.position(t.at)
                        )),
                        other => other,
                    },
                )
            })
            .collect::<Result<_>>()?;
        Ok(Selector { matchers })
    }

    /// Checks that nothing but whitespace follows.
    fn end(&mut self) -> Result<()> {
        self.skip_ws();
        if self.at_end() {
            Ok(())
        } else {
            Err(self.expected("the end of the selector"))
        }
    }

    /// Parses `name op value`.
    fn term(&mut self) -> Result<Term> {
        let at = self.pos;
        let name = if matches!(self.peek(), Some(b'"' | b'\'')) {
            // Prometheus 3 quoting: any UTF-8 name, or alone the metric name.
            let quoted = self.string()?;
            self.skip_ws();
            if matches!(self.peek(), Some(b',' | b'}') | None) {
                return Ok(Term {
                    name: METRIC_NAME.to_owned(),
                    op: MatchOp::Equal,
                    value: quoted,
                    at,
                });
            }
            if quoted.is_empty() {
                return Err(self.fail(format!(
                    "empty label name at position {}",
                    self.position(at)
                )));
            }
            quoted
        } else {
            self.label_name()?.to_owned()
        };
        self.skip_ws();
        let op = if self.eat("=~") {
            MatchOp::Regex
        } else if self.eat("!~") {
            MatchOp::NotRegex
        } else if self.eat("!=") {
            MatchOp::NotEqual
        } else if self.eat("=") {
            MatchOp::Equal
        } else {
            return Err(self.expected(&format!(
                "one of \"=\", \"!=\", \"=~\", \"!~\" after label name {name}"
            )));
        };
        self.skip_ws();
        let value = self.string()?;
        Ok(Term {
            name,
            op,
            value,
            at,
        })
    }

    /// Parses an unquoted label name: `[a-zA-Z_][a-zA-Z0-9_.]*`.
    fn label_name(&mut self) -> Result<&'a str> {
        let start = self.pos;
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.pos += 1,
            _ => return Err(self.expected("a label name or \"}\"")),
        }
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            self.pos += 1;
        }
        Ok(&self.input[start..self.pos])
    }

    /// Parses a `"..."`, `'...'` or `` `...` `` string.
    fn string(&mut self) -> Result<String> {
        let start = self.pos;
        let quote = match self.peek() {
            Some(q @ (b'"' | b'\'' | b'`')) => q,
            _ => {
                return Err(self.expected("a quoted label value (\"...\", '...' or `...`)"));
            }
        };
        self.pos += 1;
        let bytes = self.input.as_bytes();
        let unterminated = |p: &Self| {
            p.fail(format!(
                "the string starting at position {} is not terminated: expected a closing {}",
                p.position(start),
                quote as char
            ))
        };

        if quote == b'`' {
            // Raw strings have no escapes.
            let len = bytes[self.pos..]
                .iter()
                .position(|&b| b == b'`')
                .ok_or_else(|| unterminated(self))?;
            let value = &self.input[self.pos..self.pos + len];
            self.pos += len + 1;
            return Ok(value.to_owned());
        }

        // Escapes such as `\xc3\xa9` produce bytes that only form UTF-8
        // together, so the value is built as bytes and checked at the end.
        let mut out = Vec::new();
        loop {
            let run = bytes[self.pos..]
                .iter()
                .position(|&b| b == quote || b == b'\\')
                .ok_or_else(|| unterminated(self))?;
            out.extend_from_slice(&bytes[self.pos..self.pos + run]);
            self.pos += run;
            if bytes[self.pos] == quote {
                self.pos += 1;
                break;
            }
            self.escape(&mut out)?;
        }
        String::from_utf8(out).map_err(|_| {
            self.fail(format!(
                "the string starting at position {} is not valid UTF-8 once unescaped",
                self.position(start)
            ))
        })
    }

    /// Parses one escape sequence at the current `\`, appending its bytes to `out`.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let at = self.pos;
        self.pos += 1;
        let Some(c) = self.input[self.pos..].chars().next() else {
            return Err(self.fail(format!(
                "the escape sequence at position {} is not finished",
                self.position(at)
            )));
        };
        self.pos += c.len_utf8();
        let simple = match c {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' | '"' | '\'' => Some(c as u8),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            return Ok(());
        }
        let (digits, radix) = match c {
            '0'..='7' => {
                // Octal takes exactly three digits, the first already read.
                self.pos -= 1;
                (3, 8)
            }
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            _ => {
                return Err(self.fail(format!(
                    "unknown escape sequence \\{c} at position {}",
                    self.position(at)
                )));
            }
        };
        let bad = |p: &Self| {
            p.fail(format!(
                "the escape sequence at position {} needs {digits} {} digits",
                p.position(at),
                if radix == 8 { "octal" } else { "hexadecimal" }
            ))
        };
        let text = self
            .input
            .get(self.pos..self.pos + digits)
            .ok_or_else(|| bad(self))?;
        let code = u32::from_str_radix(text, radix).map_err(|_| bad(self))?;
        // `from_str_radix` accepts a leading sign; escapes do not.
        if text.starts_with(['+', '-']) {
            return Err(bad(self));
        }
        self.pos += digits;
        match c {
            'u' | 'U' => {
                let ch = char::from_u32(code).ok_or_else(|| {
                    self.fail(format!(
                        "the escape sequence at position {} is not a valid Unicode character",
                        self.position(at)
                    ))
                })?;
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
            }
            _ => {
                let byte = u8::try_from(code).map_err(|_| {
                    self.fail(format!(
                        "the octal escape sequence at position {} is larger than 255",
                        self.position(at)
                    ))
                })?;
                out.push(byte);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn quoted_utf8_label_names_as_in_prometheus_3() {
        let labels = Labels::new(vec![
            crate::Label::new("k8s.namespace.name", "ns1"),
            crate::Label::new("service.name/π", "api"),
            crate::Label::new("service_name", "api"),
        ]);
        for (selector, hit) in [
            (r#"{"k8s.namespace.name"="ns1"}"#, true),
            (r#"{"k8s.namespace.name"!="ns1"}"#, false),
            (r#"{ 'service.name/π' =~ "a.*" , service_name="api"}"#, true),
            (r#"{k8s.namespace.name="ns1"}"#, true),
            (r#"{"service.name/\u03c0"="api"}"#, true),
        ] {
            let parsed = Selector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
            assert_eq!(parsed.matches(&labels), hit, "{selector}");
            // Displayed back (as sent to other processes), it means the same.
            let again = Selector::parse(&parsed.to_string()).unwrap();
            assert_eq!(again, parsed, "{selector} -> {parsed}");
        }
        let s = Selector::parse(r#"{"service.name/π"="api"}"#).unwrap();
        assert_eq!(s.to_string(), r#"{"service.name/π"="api"}"#);
        // A quoted string alone is the metric name: the profile type in a query.
        let (t, rest) = Selector::parse_profile_query(
            r#"{"process_cpu:cpu:nanoseconds:cpu:nanoseconds", "k8s.pod.name"="p"}"#,
        )
        .unwrap();
        assert_eq!(t.id(), "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        assert_eq!(rest.matchers[0].name, "k8s.pod.name");
        let err = Selector::parse(r#"{""="x"}"#).unwrap_err().to_string();
        assert!(err.contains("empty label name"), "{err}");
        assert!(
            Selector::parse("{k8s-pod=\"x\"}").is_err(),
            "unquoted, '-' ends the name"
        );
        assert!(Selector::parse(r#"{"k8s-pod"="x"}"#).is_ok());
    }
    use crate::Label;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
    }

    fn err(input: &str) -> String {
        match Selector::parse(input) {
            Ok(s) => panic!("{input:?} parsed as {s}"),
            Err(Error::Malformed(m)) => m,
            Err(other) => panic!("unexpected error kind: {other:?}"),
        }
    }

    fn m(name: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher::new(name, op, value).unwrap()
    }

    #[test]
    fn empty_selects_everything() {
        for input in ["", "   ", "{}", " { } ", "\n{\t}\n"] {
            let sel = Selector::parse(input).unwrap();
            assert!(sel.is_empty(), "{input:?}");
            assert!(sel.matches(&labels(&[("a", "b")])));
            assert!(sel.matches(&Labels::default()));
        }
    }

    #[test]
    fn parses_all_operators() {
        let sel =
            Selector::parse(r#"{service_name="api", env=~"prod.*", x!="1", y!~"a|b"}"#).unwrap();
        assert_eq!(
            sel.matchers,
            vec![
                m("service_name", MatchOp::Equal, "api"),
                m("env", MatchOp::Regex, "prod.*"),
                m("x", MatchOp::NotEqual, "1"),
                m("y", MatchOp::NotRegex, "a|b"),
            ]
        );
        assert!(sel.matches(&labels(&[
            ("service_name", "api"),
            ("env", "prod-eu"),
            ("x", "2"),
            ("y", "c"),
        ])));
        assert!(!sel.matches(&labels(&[
            ("service_name", "api"),
            ("env", "prod-eu"),
            ("y", "a"),
        ])));
        assert!(!sel.matches(&labels(&[("service_name", "api"), ("env", "dev")])));
    }

    #[test]
    fn whitespace_trailing_comma_and_dotted_names() {
        let sel =
            Selector::parse(" {\n  service.namespace =~ 'a.b' ,\t_x.y1 != `raw\\n` , } ").unwrap();
        assert_eq!(
            sel.matchers,
            vec![
                m("service.namespace", MatchOp::Regex, "a.b"),
                m("_x.y1", MatchOp::NotEqual, "raw\\n"),
            ]
        );
    }

    #[test]
    fn unescapes_strings() {
        let sel = Selector::parse(
            r#"{a="q\"b\\s\n\t\r", b='it\'s "x"', c="\x41\101\u00e9\U0001F600", d="\xc3\xa9", e="é"}"#,
        )
        .unwrap();
        let values: Vec<&str> = sel.matchers.iter().map(|m| m.value.as_str()).collect();
        assert_eq!(values, ["q\"b\\s\n\t\r", "it's \"x\"", "AAé😀", "é", "é"]);
    }

    #[test]
    fn missing_label_compares_as_empty() {
        let none = Labels::default();
        let with = labels(&[("env", "prod")]);
        let absent = Selector::parse(r#"{env=""}"#).unwrap();
        assert!(absent.matches(&none) && !absent.matches(&with));
        let present = Selector::parse(r#"{env!=""}"#).unwrap();
        assert!(!present.matches(&none) && present.matches(&with));
        let optional = Selector::parse(r#"{env=~"prod|"}"#).unwrap();
        assert!(optional.matches(&none) && optional.matches(&with));
        let anything = Selector::parse(r#"{env=~".*"}"#).unwrap();
        assert!(anything.matches(&none));
        let something = Selector::parse(r#"{env=~".+"}"#).unwrap();
        assert!(!something.matches(&none) && something.matches(&with));
    }

    #[test]
    fn regexes_are_fully_anchored() {
        let matcher = m("x", MatchOp::Regex, "prod");
        assert!(matcher.matches_value("prod"));
        assert!(!matcher.matches_value("preprod"));
        assert!(!matcher.matches_value("production"));

        let matcher = m("x", MatchOp::Regex, "a|b");
        assert!(matcher.matches_value("a") && matcher.matches_value("b"));
        assert!(!matcher.matches_value("ab") && !matcher.matches_value(""));

        let matcher = m("x", MatchOp::Regex, "pr[o]d|dev");
        assert!(matcher.matches_value("prod") && matcher.matches_value("dev"));
        assert!(!matcher.matches_value("prodx") && !matcher.matches_value("xdev"));

        // `.` matches newlines, as in Prometheus.
        assert!(m("x", MatchOp::Regex, "a.*b").matches_value("a\nb"));
        // Flags stay inside the group.
        assert!(m("x", MatchOp::Regex, "(?i)ab").matches_value("AB"));

        let not = m("x", MatchOp::NotRegex, "a.*");
        assert!(!not.matches_value("abc") && not.matches_value("ba"));
    }

    #[test]
    fn unbalanced_pattern_cannot_escape_its_anchors() {
        let msg = err(r#"{x=~"a)|(b"}"#);
        assert!(msg.contains("invalid regular expression"), "{msg}");
        assert!(msg.contains("position 2"), "{msg}");
    }

    #[test]
    fn hostile_regex_is_refused() {
        let msg = err(r#"{x=~"((((.{100}){100}){100}){100})"}"#);
        assert!(msg.contains("too complex"), "{msg}");
        let msg = err(r#"{x=~"(.{100}){100}"}"#);
        assert!(msg.contains("too complex"), "{msg}");
        assert!(!msg.contains("share"), "{msg}");
    }

    #[test]
    fn regexes_share_a_budget() {
        // About 2.9 MB each: one fits, eight do not.
        let one = r#"x=~"(.{1000}){3}""#;
        Selector::parse(&format!("{{{one}}}")).unwrap();
        let msg = err(&format!("{{{}}}", [one; 8].join(",")));
        assert!(
            msg.contains("the selector's 8 regular expressions share 16777216 bytes"),
            "{msg}"
        );
        // Fast paths need no engine and take no share.
        let cheap: Vec<String> = (0..60).map(|i| format!("l{i}=~\"a|b\"")).collect();
        Selector::parse(&format!("{{{one},{}}}", cheap.join(","))).unwrap();
    }

    #[test]
    fn long_patterns_are_quoted_shortened() {
        let pattern = format!("({}", "a".repeat(1000));
        let msg = err(&format!("{{x=~\"{pattern}\"}}"));
        assert!(msg.contains("unclosed group"), "{msg}");
        assert!(msg.len() < 700, "{}", msg.len());
    }

    #[test]
    fn large_literal_alternation_is_accepted() {
        // What a Grafana multi-value variable with many values expands to.
        let values: Vec<String> = (0..5000).map(|i| format!("service-{i}")).collect();
        let input = format!("{{service_name=~\"{}\"}}", values.join("|"));
        assert!(input.len() < MAX_SELECTOR_LEN);
        let sel = Selector::parse(&input).unwrap();
        assert!(sel.matchers[0].matches_value("service-4242"));
        assert!(!sel.matchers[0].matches_value("service-5000"));
        // And one that needs the regex engine.
        let input = format!("{{service_name=~\"({}).*\"}}", values.join("|"));
        let sel = Selector::parse(&input).unwrap();
        assert!(sel.matchers[0].matches_value("service-4242-x"));
    }

    #[test]
    fn error_messages_name_position_and_expectation() {
        assert_eq!(
            err(r#"{service_name="x""#),
            r#"invalid selector {service_name="x": expected "}" at position 18"#
        );
        assert_eq!(
            err(r#"{a="1" b="2"}"#),
            r#"invalid selector {a="1" b="2"}: expected "," or "}" at position 8, found "b""#
        );
        assert_eq!(
            err(r#"service_name="x""#),
            r#"invalid selector service_name="x": expected "{" at position 1, found "s""#
        );
        assert_eq!(
            err(r#"{a=="1"}"#),
            r#"invalid selector {a=="1"}: expected a quoted label value ("...", '...' or `...`) at position 4, found "=""#
        );
        assert_eq!(
            err(r#"{a~"1"}"#),
            r#"invalid selector {a~"1"}: expected one of "=", "!=", "=~", "!~" after label name a at position 3, found "~""#
        );
        assert_eq!(
            err(r#"{1a="1"}"#),
            r#"invalid selector {1a="1"}: expected a label name or "}" at position 2, found "1""#
        );
        assert_eq!(
            err(r#"{,}"#),
            r#"invalid selector {,}: expected a label name or "}" at position 2, found ",""#
        );
        assert_eq!(
            err(r#"{a="1"} x"#),
            r#"invalid selector {a="1"} x: expected the end of the selector at position 9, found "x""#
        );
        assert_eq!(
            err(r#"{a="1}"#),
            r#"invalid selector {a="1}: the string starting at position 4 is not terminated: expected a closing ""#
        );
        assert_eq!(
            err(r#"{a="\q"}"#),
            r#"invalid selector {a="\q"}: unknown escape sequence \q at position 5"#
        );
        assert_eq!(
            err(r#"{é="1"}"#),
            r#"invalid selector {é="1"}: expected a label name or "}" at position 2, found "é""#
        );
        // Positions count characters, not bytes.
        assert!(err(r#"{a="é" b}"#).contains("position 8"));
        assert!(err(r#"{a="\x4"}"#).contains("needs 2 hexadecimal digits"));
        assert!(err(r#"{a="\777"}"#).contains("larger than 255"));
        assert!(err(r#"{a="\xff"}"#).contains("not valid UTF-8"));
        assert!(err(r#"{a="\uD800"}"#).contains("not a valid Unicode character"));
        assert!(err(r#"{a="\x+1"}"#).contains("hexadecimal digits"));
        assert!(err(r#"{a=~"("}"#).contains("unclosed group"));
    }

    #[test]
    fn error_quotes_at_most_a_prefix() {
        let input = format!("{{a=\"{}", "x".repeat(10_000));
        let msg = err(&input);
        assert!(msg.len() < 500, "{}", msg.len());
        assert!(msg.contains('…'));
    }

    #[test]
    fn parsing_is_bounded() {
        let long = format!("{{a=\"{}\"}}", "x".repeat(MAX_SELECTOR_LEN));
        assert!(err(&long).contains("the limit is 65536 bytes"));

        let at_limit: Vec<String> = (0..MAX_MATCHERS).map(|i| format!("l{i}=\"v\"")).collect();
        Selector::parse(&format!("{{{}}}", at_limit.join(","))).unwrap();
        let over: Vec<String> = (0..=MAX_MATCHERS).map(|i| format!("l{i}=\"v\"")).collect();
        assert!(err(&format!("{{{}}}", over.join(","))).contains("more than 64 matchers"));
    }

    #[test]
    fn display_round_trips() {
        let input = r#"{a="x\"y\\z\n", b=~'.+', c!=`raw`, d!~"\x01é"}"#;
        let sel = Selector::parse(input).unwrap();
        let shown = sel.to_string();
        assert_eq!(shown, r#"{a="x\"y\\z\n", b=~".+", c!="raw", d!~"\x01é"}"#);
        assert_eq!(Selector::parse(&shown).unwrap(), sel);
        assert_eq!(Selector::default().to_string(), "{}");
    }

    #[test]
    fn equal_value_finds_equality_only() {
        let sel =
            Selector::parse(r#"{env=~"p.*", service_name="api", service_name!="x"}"#).unwrap();
        assert_eq!(sel.equal_value("service_name"), Some("api"));
        assert_eq!(sel.equal_value("env"), None);
        assert_eq!(sel.equal_value("missing"), None);
    }

    #[test]
    fn parses_profile_queries() {
        let (ty, sel) = Selector::parse_profile_query(
            r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="x"}"#,
        )
        .unwrap();
        assert_eq!(ty.id(), "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        assert_eq!(sel.matchers, vec![m("service_name", MatchOp::Equal, "x")]);

        let (ty, sel) =
            Selector::parse_profile_query(" memory:alloc_space:bytes:space:bytes ").unwrap();
        assert_eq!(ty.sample_type, "alloc_space");
        assert!(sel.is_empty());

        let (ty, sel) = Selector::parse_profile_query(
            r#"{__name__="memory:inuse_space:bytes:space:bytes", env="prod"}"#,
        )
        .unwrap();
        assert_eq!(ty.sample_type, "inuse_space");
        assert_eq!(sel.matchers, vec![m("env", MatchOp::Equal, "prod")]);
    }

    #[test]
    fn profile_query_errors() {
        let msg = |q: &str| Selector::parse_profile_query(q).unwrap_err().to_string();
        assert_eq!(
            msg(r#"{service_name="x"}"#),
            r#"invalid query {service_name="x"}: expected a profile type ID such as process_cpu:cpu:nanoseconds:cpu:nanoseconds before the selector"#
        );
        assert!(msg("process_cpu:cpu{}").contains("name:sample_type"));
        assert_eq!(
            msg(r#"a:b:c:d:e{x="1""#),
            r#"invalid query a:b:c:d:e{x="1": expected "}" at position 16"#
        );
        assert!(msg(r#"a:b:c:d:e{__name__="a:b:c:d:e"}"#).contains("given twice"));
        assert!(msg(r#"a:b:c:d:e{} {}"#).contains("expected the end"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in ".{0,64}") {
            let _ = Selector::parse(&input);
            let _ = Selector::parse_profile_query(&input);
        }

        #[test]
        fn parse_never_panics_on_near_selectors(input in r#"[{}=!~,"'`\\a-z._ \n0-7xuU]{0,40}"#) {
            let _ = Selector::parse(&input);
            let _ = Selector::parse_profile_query(&input);
        }

        #[test]
        fn display_round_trips_any_value(
            matchers in prop::collection::vec(
                (
                    "[a-zA-Z_][a-zA-Z0-9_.]{0,8}",
                    prop::sample::select(vec![MatchOp::Equal, MatchOp::NotEqual]),
                    any::<String>(),
                ),
                0..8,
            )
        ) {
            let selector = Selector {
                matchers: matchers
                    .into_iter()
                    .map(|(name, op, value)| Matcher::new(name, op, value).unwrap())
                    .collect(),
            };
            prop_assert_eq!(Selector::parse(&selector.to_string()).unwrap(), selector);
        }

        #[test]
        fn literal_fast_path_agrees_with_the_regex_engine(
            alternatives in prop::collection::vec("[a-c]{0,3}", 1..4),
            value in "[a-c]{0,3}",
        ) {
            let pattern = alternatives.join("|");
            let fast = Matcher::new("x", MatchOp::Regex, pattern.as_str()).unwrap();
            prop_assert!(matches!(fast.pattern, Some(Pattern::Literals(_))));
            let slow = Regex::new(&format!("^(?s:{pattern})$")).unwrap();
            prop_assert_eq!(fast.matches_value(&value), slow.is_match(&value));
        }
    }
}
