//! The Redis serialization protocol: RESP2, and RESP3 after `HELLO 3`.
//!
//! Pure bytes in, bytes out: no sockets, no async. A server calls [`parse_command`] on its
//! read buffer until it returns `Ok(None)` (more bytes needed), answering each command with a
//! [`Value`] encoded by [`Value::encode`] for the connection's [`Protocol`]. A client (our
//! `hydra bench`, the tests) calls [`parse_value`] on what comes back.
//!
//! Both decoders check every length against [`Limits`] before they allocate, return
//! `Ok(None)` for a prefix of a valid frame and [`Invalid`] for bytes that can never become
//! one, and never panic (proptest and a cargo-fuzz target feed them arbitrary bytes; the fuzz
//! corpus is replayed by `cargo test`).

use smallvec::SmallVec;
use std::fmt::Write as _;

/// Bounds on what a peer may send. A frame that exceeds one is [`Invalid`], so a connection
/// never buffers more than about `bulk_bytes_max` plus one command's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string (Redis: `proto-max-bulk-len`, 512 MiB; ours follows the value limit).
    pub bulk_bytes_max: usize,
    /// Most elements of one array, map or set (Redis: 1,048,576 arguments).
    pub array_len_max: usize,
    /// Longest inline command or simple line, without its line ending (Redis: 64 KiB).
    pub inline_bytes_max: usize,
    /// Deepest nesting of aggregates in a reply (requests are flat).
    pub depth_max: usize,
    /// Most bytes of one command, all its arguments together (so a command of many large
    /// arguments cannot make a connection buffer more than this).
    pub command_bytes_max: usize,
    /// The connection has not logged in: a length over the limit is refused in Redis's
    /// words for such clients ("unauthenticated multibulk length").
    pub unauthenticated: bool,
}

/// Most arguments of a command before the connection logs in (Redis's value).
pub const UNAUTHENTICATED_ARRAY_LEN_MAX: usize = 10;
/// Longest argument before the connection logs in (Redis's value).
pub const UNAUTHENTICATED_BULK_BYTES_MAX: usize = 16 * 1024;

impl Limits {
    /// What Redis lets a connection send before it logs in.
    pub fn unauthenticated() -> Limits {
        Limits {
            bulk_bytes_max: UNAUTHENTICATED_BULK_BYTES_MAX,
            array_len_max: UNAUTHENTICATED_ARRAY_LEN_MAX,
            command_bytes_max: UNAUTHENTICATED_ARRAY_LEN_MAX
                * (UNAUTHENTICATED_BULK_BYTES_MAX + 32),
            unauthenticated: true,
            ..Limits::default()
        }
    }
}

/// Longest bulk string by default: the value ceiling (64 MiB) plus room for a key.
pub const BULK_BYTES_DEFAULT_MAX: usize = 64 * 1024 * 1024 + 64 * 1024;
/// Most arguments of one command, or elements of one aggregate, by default.
pub const ARRAY_LEN_DEFAULT_MAX: usize = 1024 * 1024;
/// Longest inline command by default.
pub const INLINE_BYTES_DEFAULT_MAX: usize = 64 * 1024;
/// Deepest reply nesting by default.
pub const DEPTH_DEFAULT_MAX: usize = 32;
/// Most bytes of one command by default: two values at the ceiling, plus room for keys.
pub const COMMAND_BYTES_DEFAULT_MAX: usize = 2 * BULK_BYTES_DEFAULT_MAX;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            bulk_bytes_max: BULK_BYTES_DEFAULT_MAX,
            array_len_max: ARRAY_LEN_DEFAULT_MAX,
            inline_bytes_max: INLINE_BYTES_DEFAULT_MAX,
            depth_max: DEPTH_DEFAULT_MAX,
            command_bytes_max: COMMAND_BYTES_DEFAULT_MAX,
            unauthenticated: false,
        }
    }
}

/// Bytes that can never become a valid frame; the message names what is wrong, in Redis's
/// words where Redis has them ("Protocol error: ...").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct Invalid(pub String);

fn invalid(m: impl Into<String>) -> Invalid {
    Invalid(m.into())
}

/// Which protocol a connection speaks (RESP2 until the client sends `HELLO 3`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// A command: its arguments as bytes, the name first.
pub type Command = Vec<Vec<u8>>;

/// Finds the end of the line that starts at `from`: the index of its `\r`. `Ok(None)` when no
/// line ending has arrived yet and the line is still within `max` bytes.
fn line_end(buf: &[u8], from: usize, max: usize) -> Result<Option<usize>, Invalid> {
    let rest = buf.get(from..).unwrap_or_default();
    let window = &rest[..rest.len().min(max.saturating_add(2))];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => {
            if i == 0 || window[i - 1] != b'\r' {
                return Err(invalid("expected '\\r\\n' at the end of a line"));
            }
            Ok(Some(from + i - 1))
        }
        None if rest.len() > max.saturating_add(1) => Err(invalid(format!(
            "line longer than {max} bytes without a line ending"
        ))),
        None => Ok(None),
    }
}

/// Parses the decimal integer of a length or integer line.
fn parse_int(bytes: &[u8], what: &str) -> Result<i64, Invalid> {
    // Plain digits, what every length line holds, without the general parse (up to 18
    // digits, which cannot overflow).
    if !bytes.is_empty() && bytes.len() <= 18 && bytes.iter().all(u8::is_ascii_digit) {
        return Ok(bytes
            .iter()
            .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0')));
    }
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 20)
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            invalid(format!(
                "invalid {what} {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(32)])
            ))
        })
}

/// Parses a length line's number and checks it against `max`; `-1` is returned as `None`
/// (a null) only where `allow_null`.
fn parse_len(
    bytes: &[u8],
    max: usize,
    what: &str,
    allow_null: bool,
    unauthenticated: bool,
) -> Result<Option<usize>, Invalid> {
    let n = parse_int(bytes, what)?;
    if n == -1 && allow_null {
        return Ok(None);
    }
    if n < 0 {
        return Err(invalid(format!("invalid {what} {n}")));
    }
    let n = usize::try_from(n).map_err(|_| invalid(format!("invalid {what} {n}")))?;
    if n > max && unauthenticated {
        return Err(invalid(format!("unauthenticated {what}")));
    }
    if n > max {
        return Err(invalid(format!(
            "{what} {n} is more than the limit of {max}"
        )));
    }
    Ok(Some(n))
}

/// Decodes one command from the start of `buf`: an array of bulk strings (what client
/// libraries send) or an inline command (a line of space-separated words, what telnet and
/// redis-benchmark's first `PING` send). Returns the command and how many bytes it used, or
/// `Ok(None)` when `buf` holds only a prefix. An empty inline line is returned as an empty
/// command, which servers skip (Redis does too).
pub fn parse_command(buf: &[u8], limits: &Limits) -> Result<Option<(Command, usize)>, Invalid> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

fn parse_multibulk(buf: &[u8], limits: &Limits) -> Result<Option<(Command, usize)>, Invalid> {
    // First find every argument and check that the whole command has arrived, without
    // copying anything (a command arriving in many reads is scanned again on each, but
    // copied only once).
    let mut ranges: SmallVec<[(usize, usize); 6]> = SmallVec::new();
    let Some(end) = walk_multibulk(buf, limits, |start, stop| ranges.push((start, stop)))? else {
        return Ok(None);
    };
    let args = ranges
        .into_iter()
        .map(|(start, stop)| buf[start..stop].to_vec())
        .collect();
    Ok(Some((args, end)))
}

/// Walks a multibulk command, calling `each` with every argument's byte range as it is
/// found. Returns the command's end, `Ok(None)` if it has not all arrived.
fn walk_multibulk(
    buf: &[u8],
    limits: &Limits,
    mut each: impl FnMut(usize, usize),
) -> Result<Option<usize>, Invalid> {
    let Some(end) = line_end(buf, 1, 20)? else {
        return Ok(None);
    };
    let count = parse_len(
        &buf[1..end],
        limits.array_len_max,
        "multibulk length",
        true,
        limits.unauthenticated,
    )?
    .unwrap_or(0);
    let mut at = end + 2;
    for _ in 0..count {
        match buf.get(at) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&b) => {
                return Err(invalid(format!(
                    "expected '$', got '{}'",
                    char::from(b).escape_default()
                )));
            }
        }
        let Some(end) = line_end(buf, at + 1, 20)? else {
            return Ok(None);
        };
        let len = parse_len(
            &buf[at + 1..end],
            limits.bulk_bytes_max,
            "bulk length",
            false,
            limits.unauthenticated,
        )?
        .unwrap_or(0);
        let start = end + 2;
        let stop = start + len;
        if stop > limits.command_bytes_max {
            return Err(invalid(format!(
                "command longer than the limit of {} bytes",
                limits.command_bytes_max
            )));
        }
        if buf.len() < stop + 2 {
            return Ok(None);
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return Err(invalid("bulk string not followed by '\\r\\n'"));
        }
        each(start, stop);
        at = stop + 2;
    }
    Ok(Some(at))
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Option<(Command, usize)>, Invalid> {
    let rest = &buf[..buf.len().min(limits.inline_bytes_max.saturating_add(2))];
    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
        // Room for the line and its '\r' before the '\n' arrives.
        if buf.len() > limits.inline_bytes_max.saturating_add(1) {
            return Err(invalid(format!(
                "too big inline request (more than {} bytes)",
                limits.inline_bytes_max
            )));
        }
        return Ok(None);
    };
    // Redis accepts a bare '\n' as well as "\r\n" here (telnet users).
    let line = if nl > 0 && rest[nl - 1] == b'\r' {
        &rest[..nl - 1]
    } else {
        &rest[..nl]
    };
    if line.len() > limits.inline_bytes_max {
        return Err(invalid(format!(
            "too big inline request (more than {} bytes)",
            limits.inline_bytes_max
        )));
    }
    let args = split_inline(line)?;
    if args.len() > limits.array_len_max {
        return Err(invalid("too many arguments in an inline request"));
    }
    Ok(Some((args, nl + 1)))
}

/// Splits an inline line into words: spaces and tabs separate; double quotes allow spaces and
/// `\n`, `\r`, `\t`, `\\`, `\"` and `\xHH` escapes; single quotes allow spaces and `\'`
/// (the rules of Redis's `sdssplitargs`).
fn split_inline(line: &[u8]) -> Result<Command, Invalid> {
    let mut args = Vec::new();
    let mut i = 0;
    let unbalanced = || invalid("unbalanced quotes in request");
    while i < line.len() {
        while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let mut word = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    match line.get(i) {
                        None => return Err(unbalanced()),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let hex = |b: Option<&u8>| {
                                b.and_then(|b| char::from(*b).to_digit(16)).map(|d| d as u8)
                            };
                            match line.get(i + 1) {
                                Some(b'x')
                                    if hex(line.get(i + 2)).is_some()
                                        && hex(line.get(i + 3)).is_some() =>
                                {
                                    let hi = hex(line.get(i + 2)).unwrap_or(0);
                                    let lo = hex(line.get(i + 3)).unwrap_or(0);
                                    word.push(hi * 16 + lo);
                                    i += 4;
                                }
                                Some(&c) => {
                                    word.push(match c {
                                        b'n' => b'\n',
                                        b'r' => b'\r',
                                        b't' => b'\t',
                                        b'b' => 8,
                                        b'a' => 7,
                                        other => other,
                                    });
                                    i += 2;
                                }
                                None => return Err(unbalanced()),
                            }
                        }
                        Some(&c) => {
                            word.push(c);
                            i += 1;
                        }
                    }
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    match line.get(i) {
                        None => return Err(unbalanced()),
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                            word.push(b'\'');
                            i += 2;
                        }
                        Some(&c) => {
                            word.push(c);
                            i += 1;
                        }
                    }
                }
            }
            _ => {
                while i < line.len() && line[i] != b' ' && line[i] != b'\t' {
                    word.push(line[i]);
                    i += 1;
                }
                args.push(word);
                continue;
            }
        }
        // A closing quote must be followed by a space or the end of the line.
        if i < line.len() && line[i] != b' ' && line[i] != b'\t' {
            return Err(unbalanced());
        }
        args.push(word);
    }
    Ok(args)
}

/// A RESP value: what a server replies (and what [`parse_value`] reads back). RESP3 types
/// are downgraded for RESP2 connections the way Redis does it (maps and sets become arrays,
/// booleans integers, doubles bulk strings, nulls `$-1`).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Simple(String),
    /// An error line: the text starts with its code (`ERR`, `WRONGTYPE`, `NOPROTO`...).
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// RESP3 `_`; RESP2 `$-1` (a null bulk string).
    Null,
    /// RESP2 `*-1` (a null array); RESP3 `_`.
    NullArray,
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Double(f64),
    Boolean(bool),
    /// RESP3 `=`: a format (3 bytes, e.g. `txt`) and text; RESP2 sends the text as a bulk string.
    Verbatim(String, String),
    BigNumber(String),
    /// RESP3 `|`: attributes before a value (parsed, never sent by Hydra).
    Attribute(Vec<(Value, Value)>),
    /// RESP3 `>`: an out-of-band push (parsed, never sent by Hydra).
    Push(Vec<Value>),
}

impl Value {
    pub fn ok() -> Value {
        Value::Simple("OK".into())
    }

    pub fn error(message: impl Into<String>) -> Value {
        Value::Error(message.into())
    }

    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Value {
        Value::Bulk(bytes.into())
    }

    /// Appends the value's encoding for `protocol` to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut Vec<u8>) {
        let v3 = protocol == Protocol::Resp3;
        match self {
            Value::Simple(s) => line(out, b'+', &single_line(s)),
            Value::Error(s) => line(out, b'-', &single_line(s)),
            Value::Integer(n) => line(out, b':', &n.to_string()),
            Value::Bulk(b) => bulk(out, b),
            Value::Null | Value::NullArray if v3 => out.extend_from_slice(b"_\r\n"),
            Value::Null => out.extend_from_slice(b"$-1\r\n"),
            Value::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Value::Array(items) => {
                line(out, b'*', &items.len().to_string());
                items.iter().for_each(|v| v.encode(protocol, out));
            }
            Value::Push(items) => {
                line(out, if v3 { b'>' } else { b'*' }, &items.len().to_string());
                items.iter().for_each(|v| v.encode(protocol, out));
            }
            Value::Set(items) => {
                line(out, if v3 { b'~' } else { b'*' }, &items.len().to_string());
                items.iter().for_each(|v| v.encode(protocol, out));
            }
            Value::Map(pairs) => {
                if v3 {
                    line(out, b'%', &pairs.len().to_string());
                } else {
                    line(out, b'*', &(pairs.len() * 2).to_string());
                }
                for (k, v) in pairs {
                    k.encode(protocol, out);
                    v.encode(protocol, out);
                }
            }
            Value::Attribute(pairs) => {
                // Attributes are metadata; a RESP2 peer has no way to skip them.
                if v3 {
                    line(out, b'|', &pairs.len().to_string());
                    for (k, v) in pairs {
                        k.encode(protocol, out);
                        v.encode(protocol, out);
                    }
                }
            }
            Value::Double(d) => {
                let text = format_double(*d);
                if v3 {
                    line(out, b',', &text);
                } else {
                    bulk(out, text.as_bytes());
                }
            }
            Value::Boolean(b) if v3 => line(out, b'#', if *b { "t" } else { "f" }),
            Value::Boolean(b) => line(out, b':', if *b { "1" } else { "0" }),
            Value::Verbatim(format, text) if v3 => {
                let body = format!("{format}:{text}");
                line(out, b'=', &body.len().to_string());
                out.extend_from_slice(body.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Value::Verbatim(_, text) => bulk(out, text.as_bytes()),
            Value::BigNumber(n) if v3 => line(out, b'(', n),
            Value::BigNumber(n) => bulk(out, n.as_bytes()),
        }
    }

    /// The value's encoding for `protocol`, as a new buffer.
    pub fn to_bytes(&self, protocol: Protocol) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(protocol, &mut out);
        out
    }
}

/// Simple strings and errors cannot hold line endings: they become spaces (as Redis does).
fn single_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\r', '\n']) {
        std::borrow::Cow::Owned(s.replace(['\r', '\n'], " "))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn line(out: &mut Vec<u8>, kind: u8, text: &str) {
    out.push(kind);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut header = String::with_capacity(12);
    let _ = write!(header, "${}\r\n", bytes.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{d}")
    }
}

/// Decodes one value of any RESP2 or RESP3 type from the start of `buf` (what a client
/// reads). Returns the value and how many bytes it used, or `Ok(None)` for a prefix.
pub fn parse_value(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, Invalid> {
    parse_at(buf, 0, limits, 0)
}

fn parse_at(
    buf: &[u8],
    at: usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<(Value, usize)>, Invalid> {
    if depth > limits.depth_max {
        return Err(invalid(format!(
            "aggregates nested more than {} deep",
            limits.depth_max
        )));
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, at + 1, limits.inline_bytes_max)? else {
        return Ok(None);
    };
    let text = &buf[at + 1..end];
    let next = end + 2;
    let utf8 = |what: &str| {
        std::str::from_utf8(text)
            .map(str::to_string)
            .map_err(|_| invalid(format!("{what} is not UTF-8")))
    };
    let aggregate =
        |n: usize, next: usize, pairs: bool| -> Result<Option<(Vec<Value>, usize)>, Invalid> {
            let total = if pairs { n.saturating_mul(2) } else { n };
            let mut items = Vec::with_capacity(total.min(64));
            let mut at = next;
            for _ in 0..total {
                match parse_at(buf, at, limits, depth + 1)? {
                    None => return Ok(None),
                    Some((v, used)) => {
                        items.push(v);
                        at = used;
                    }
                }
            }
            Ok(Some((items, at)))
        };
    let into_pairs = |items: Vec<Value>| {
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        pairs
    };
    let value = match kind {
        b'+' => (Value::Simple(utf8("simple string")?), next),
        b'-' => (Value::Error(utf8("error")?), next),
        b':' => (Value::Integer(parse_int(text, "integer")?), next),
        b'_' if text.is_empty() => (Value::Null, next),
        b'#' => match text {
            b"t" => (Value::Boolean(true), next),
            b"f" => (Value::Boolean(false), next),
            _ => return Err(invalid("boolean must be 't' or 'f'")),
        },
        b',' => {
            let s = utf8("double")?;
            let d = match s.as_str() {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" => f64::NAN,
                other => other
                    .parse::<f64>()
                    .map_err(|_| invalid(format!("invalid double {other:?}")))?,
            };
            (Value::Double(d), next)
        }
        b'(' => {
            let s = utf8("big number")?;
            let digits = s.strip_prefix('-').unwrap_or(&s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!("invalid big number {s:?}")));
            }
            (Value::BigNumber(s), next)
        }
        b'$' | b'=' | b'!' => {
            let Some(len) = parse_len(
                text,
                limits.bulk_bytes_max,
                "bulk length",
                kind == b'$',
                false,
            )?
            else {
                return Ok(Some((Value::Null, next)));
            };
            let stop = next + len;
            if buf.len() < stop + 2 {
                return Ok(None);
            }
            if &buf[stop..stop + 2] != b"\r\n" {
                return Err(invalid("bulk string not followed by '\\r\\n'"));
            }
            let body = buf[next..stop].to_vec();
            let value = match kind {
                b'$' => Value::Bulk(body),
                b'!' => Value::Error(
                    String::from_utf8(body).map_err(|_| invalid("blob error is not UTF-8"))?,
                ),
                _ => {
                    let s = String::from_utf8(body)
                        .map_err(|_| invalid("verbatim string is not UTF-8"))?;
                    if s.len() < 4 || s.as_bytes()[3] != b':' {
                        return Err(invalid("verbatim string has no 'fmt:' prefix"));
                    }
                    Value::Verbatim(s[..3].to_string(), s[4..].to_string())
                }
            };
            (value, stop + 2)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let Some(n) = parse_len(
                text,
                limits.array_len_max,
                "aggregate length",
                kind == b'*',
                false,
            )?
            else {
                return Ok(Some((Value::NullArray, next)));
            };
            let pairs = kind == b'%' || kind == b'|';
            let Some((items, used)) = aggregate(n, next, pairs)? else {
                return Ok(None);
            };
            let value = match kind {
                b'*' => Value::Array(items),
                b'~' => Value::Set(items),
                b'>' => Value::Push(items),
                b'%' => Value::Map(into_pairs(items)),
                _ => Value::Attribute(into_pairs(items)),
            };
            (value, used)
        }
        other => {
            return Err(invalid(format!(
                "unknown type byte '{}'",
                char::from(other).escape_default()
            )));
        }
    };
    Ok(Some(value))
}

/// Encodes a command as an array of bulk strings (what a client sends).
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    line(out, b'*', &args.len().to_string());
    for a in args {
        bulk(out, a.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(buf: &[u8]) -> Result<Option<(Command, usize)>, Invalid> {
        parse_command(buf, &Limits::default())
    }

    fn words(v: &[&str]) -> Command {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_commands_and_their_prefixes() {
        let full = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        assert_eq!(
            cmd(full).expect("valid"),
            Some((words(&["SET", "k", "hello"]), full.len()))
        );
        for cut in 0..full.len() {
            assert_eq!(
                cmd(&full[..cut]).expect("prefix is valid"),
                None,
                "cut {cut}"
            );
        }
        let two = [&full[..], b"*1\r\n$4\r\nPING\r\n"].concat();
        assert_eq!(cmd(&two).expect("valid").map(|c| c.1), Some(full.len()));
        assert_eq!(cmd(b"*0\r\n").expect("valid"), Some((vec![], 4)));
        assert_eq!(cmd(b"*-1\r\n").expect("valid"), Some((vec![], 5)));
    }

    #[test]
    fn inline_commands_split_like_redis() {
        assert_eq!(
            cmd(b"PING\r\n").expect("valid"),
            Some((words(&["PING"]), 6))
        );
        assert_eq!(cmd(b"PING\n").expect("valid"), Some((words(&["PING"]), 5)));
        assert_eq!(cmd(b"PIN").expect("valid"), None);
        assert_eq!(
            cmd(b"set  k \"a b\\x41\\n\" 'it\\'s'\r\n").expect("valid"),
            Some((
                vec![
                    b"set".to_vec(),
                    b"k".to_vec(),
                    b"a bA\n".to_vec(),
                    b"it's".to_vec()
                ],
                28
            ))
        );
        assert_eq!(cmd(b"\r\n").expect("valid"), Some((vec![], 2)));
        assert!(cmd(b"get \"k\r\n").is_err());
        assert!(cmd(b"get \"k\"x\r\n").is_err());
    }

    #[test]
    fn limits_are_checked_before_allocation() {
        let limits = Limits {
            bulk_bytes_max: 10,
            array_len_max: 3,
            inline_bytes_max: 16,
            depth_max: 2,
            command_bytes_max: 24,
            unauthenticated: false,
        };
        let e = parse_command(b"*4\r\n", &limits).expect_err("too many");
        assert!(e.to_string().contains("multibulk length 4"), "{e}");
        let e = parse_command(b"*1\r\n$11\r\n", &limits).expect_err("too long");
        assert!(e.to_string().contains("bulk length 11"), "{e}");
        // Before a connection logs in, in Redis's words.
        let pre = Limits::unauthenticated();
        let e = parse_command(b"*11\r\n", &pre).expect_err("too many");
        assert_eq!(
            e.to_string(),
            "Protocol error: unauthenticated multibulk length"
        );
        let e = parse_command(b"*1\r\n$16385\r\n", &pre).expect_err("too long");
        assert_eq!(e.to_string(), "Protocol error: unauthenticated bulk length");
        assert!(parse_command(b"*1\r\n$16384\r\n", &pre).is_ok());
        let e = parse_command(&[b'a'; 18], &limits).expect_err("inline too long");
        assert!(e.to_string().contains("too big inline request"), "{e}");
        assert!(parse_command(b"*1\r\n$-1\r\n", &limits).is_err());
        assert!(parse_command(b"*1\r\n+x\r\n", &limits).is_err());
        assert!(parse_command(b"*1\r\n$1\r\nab\r\n", &limits).is_err());
        assert!(parse_command(b"*x\r\n", &limits).is_err());
        assert!(parse_command(b"*99999999999999999999999\r\n", &limits).is_err());
        assert!(parse_value(b"*1\r\n*1\r\n*1\r\n*0\r\n", &limits).is_err());
        assert!(parse_value(b"*1\r\n*1\r\n*0\r\n", &limits).is_ok());
        // All arguments together are bounded too.
        let e = parse_command(b"*3\r\n$10\r\n0123456789\r\n$10\r\n", &limits).expect_err("big");
        assert!(e.to_string().contains("command longer than"), "{e}");
        // An inline line of exactly the limit is valid, and so every prefix of it.
        let line = [&[b'a'; 16][..], b"\r\n"].concat();
        assert_eq!(
            parse_command(&line, &limits).expect("valid").map(|c| c.1),
            Some(18)
        );
        for cut in 0..line.len() {
            assert_eq!(
                parse_command(&line[..cut], &limits).expect("prefix"),
                None,
                "cut {cut}"
            );
        }
        let long = [&[b'a'; 17][..], b"\n"].concat();
        assert!(parse_command(&long, &limits).is_err());
    }

    #[test]
    fn replies_encode_as_redis_sends_them() {
        let p2 = Protocol::Resp2;
        let p3 = Protocol::Resp3;
        assert_eq!(Value::ok().to_bytes(p2), b"+OK\r\n");
        assert_eq!(Value::error("ERR x\ny").to_bytes(p2), b"-ERR x y\r\n");
        assert_eq!(Value::Integer(-3).to_bytes(p2), b":-3\r\n");
        assert_eq!(Value::bulk("hi").to_bytes(p2), b"$2\r\nhi\r\n");
        assert_eq!(Value::Null.to_bytes(p2), b"$-1\r\n");
        assert_eq!(Value::Null.to_bytes(p3), b"_\r\n");
        assert_eq!(Value::NullArray.to_bytes(p2), b"*-1\r\n");
        let map = Value::Map(vec![(Value::bulk("a"), Value::Integer(1))]);
        assert_eq!(map.to_bytes(p2), b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(map.to_bytes(p3), b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(Value::Boolean(true).to_bytes(p2), b":1\r\n");
        assert_eq!(Value::Boolean(false).to_bytes(p3), b"#f\r\n");
        assert_eq!(Value::Double(1.5).to_bytes(p3), b",1.5\r\n");
        assert_eq!(Value::Double(1.5).to_bytes(p2), b"$3\r\n1.5\r\n");
        assert_eq!(
            Value::Verbatim("txt".into(), "ab".into()).to_bytes(p3),
            b"=6\r\ntxt:ab\r\n"
        );
        assert_eq!(Value::Set(vec![]).to_bytes(p3), b"~0\r\n");
    }

    #[test]
    fn every_reply_type_round_trips() {
        let value = Value::Array(vec![
            Value::Simple("s".into()),
            Value::Error("ERR e".into()),
            Value::Integer(7),
            Value::bulk(vec![0, 13, 10, 255]),
            Value::Null,
            Value::Map(vec![(
                Value::bulk("k"),
                Value::Set(vec![Value::Boolean(true)]),
            )]),
            Value::Double(-2.25),
            Value::Verbatim("txt".into(), "hello\r\nworld".into()),
            Value::BigNumber("-123456789012345678901234567890".into()),
            Value::Push(vec![Value::bulk("message")]),
        ]);
        let bytes = value.to_bytes(Protocol::Resp3);
        let (back, used) = parse_value(&bytes, &Limits::default())
            .expect("valid")
            .expect("complete");
        assert_eq!((back, used), (value, bytes.len()));
        for cut in 0..bytes.len() {
            assert_eq!(
                parse_value(&bytes[..cut], &Limits::default()).expect("prefix"),
                None
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn integer_lines_parse_as_the_general_parse_would(line in "[-+]?[0-9]{0,19}") {
            let general = line.parse::<i64>().ok();
            proptest::prop_assert_eq!(parse_int(line.as_bytes(), "length").ok(), general);
        }
    }

    #[test]
    fn encoded_commands_parse_back() {
        let mut out = Vec::new();
        encode_command(&["SET", "key", "va\r\nlue"], &mut out);
        assert_eq!(
            cmd(&out).expect("valid"),
            Some((words(&["SET", "key", "va\r\nlue"]), out.len()))
        );
    }
}
