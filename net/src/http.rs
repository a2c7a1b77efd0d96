//! HTTP/1.x request heads, parsed strictly (RFC 9112's grammar, narrowed): what a small
//! server needs to route a request and to refuse a malformed one with a 400, never a panic.
//! Pure and host-tested; a fuzz target drives [`parse_head`] and [`head_end`].
//!
//! Accepted: a request line `METHOD SP TARGET SP HTTP/1.1` (or `HTTP/1.0`) with single spaces,
//! a method of 1–16 ASCII letters, a target of 1–[`MAX_TARGET`] visible ASCII characters; then
//! up to [`MAX_HEADERS`] header lines `name: value` (a token name, no space before the colon,
//! a value of visible ASCII, spaces and tabs). Every line ends in CRLF. Refused: bare LF or CR,
//! obsolete line folding, control characters, anything longer than the limits.

/// Longest request target.
pub const MAX_TARGET: usize = 2048;
/// Most header lines.
pub const MAX_HEADERS: usize = 64;

/// The protocol version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`.
    Http10,
    /// `HTTP/1.1`.
    Http11,
}

/// Why a request head was refused (all answer 400 Bad Request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The request line is not `METHOD SP TARGET SP VERSION`.
    BadRequestLine,
    /// The version is not HTTP/1.0 or HTTP/1.1.
    BadVersion,
    /// A header line is malformed.
    BadHeader,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// A line does not end in CRLF, or a CR or LF stands alone.
    BadLineEnding,
}

impl core::fmt::Display for HttpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::BadRequestLine => "malformed request line",
            Self::BadVersion => "unsupported HTTP version",
            Self::BadHeader => "malformed header line",
            Self::TooManyHeaders => "too many header lines",
            Self::BadLineEnding => "line not ended by CRLF",
        })
    }
}

/// A parsed request head; borrows the bytes it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method (`GET`, …).
    pub method: &'a str,
    /// The request target (`/status.json`, …).
    pub target: &'a str,
    /// The version.
    pub version: Version,
    /// The header lines (checked), CRLF-separated, without the request line.
    headers: &'a str,
}

impl<'a> Request<'a> {
    /// The header fields in order, as (name, value with surrounding blanks trimmed).
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.headers
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n, v.trim_matches([' ', '\t'])))
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Where the head ends in `buf`: the index of the first `\r\n\r\n`, if there is one.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a request head: the bytes before the `\r\n\r\n` that ends it ([`head_end`]).
pub fn parse_head(head: &[u8]) -> Result<Request<'_>, HttpError> {
    // Line endings first: every CR is followed by LF and every LF preceded by CR.
    for (i, &b) in head.iter().enumerate() {
        let bad = match b {
            b'\r' => head.get(i + 1) != Some(&b'\n'),
            b'\n' => i == 0 || head[i - 1] != b'\r',
            _ => false,
        };
        if bad {
            return Err(HttpError::BadLineEnding);
        }
    }
    // Only visible ASCII, space, tab and CRLF remain legal: the rest is then UTF-8 too.
    if head
        .iter()
        .any(|&b| !(b.is_ascii_graphic() || matches!(b, b' ' | b'\t' | b'\r' | b'\n')))
    {
        return Err(HttpError::BadHeader);
    }
    let text = core::str::from_utf8(head).map_err(|_| HttpError::BadHeader)?;
    // `None`: no header lines at all (`Some("")` would be one empty line: refused below).
    let (line, headers) = match text.split_once("\r\n") {
        Some((line, headers)) => (line, Some(headers)),
        None => (text, None),
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequestLine);
    };
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(HttpError::BadRequestLine);
    }
    if target.is_empty()
        || target.len() > MAX_TARGET
        || !target.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(HttpError::BadRequestLine);
    }
    let version = match version {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        v if v.starts_with("HTTP/") => return Err(HttpError::BadVersion),
        _ => return Err(HttpError::BadRequestLine),
    };
    let mut count = 0;
    for l in headers.into_iter().flat_map(|h| h.split("\r\n")) {
        count += 1;
        if count > MAX_HEADERS {
            return Err(HttpError::TooManyHeaders);
        }
        let Some((name, _value)) = l.split_once(':') else {
            return Err(HttpError::BadHeader);
        };
        // No obsolete folding (a line starting with a blank), no blank before the colon.
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(HttpError::BadHeader);
        }
    }
    Ok(Request {
        method,
        target,
        version,
        headers: headers.unwrap_or(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_request_parses_with_its_headers() {
        let head = b"GET /status.json HTTP/1.1\r\nHost: rhea\r\nX-A:  b \t\r\nConnection: close";
        let r = parse_head(head).unwrap();
        assert_eq!(
            (r.method, r.target, r.version),
            ("GET", "/status.json", Version::Http11)
        );
        assert_eq!(r.header("host"), Some("rhea"));
        assert_eq!(r.header("x-a"), Some("b"));
        assert_eq!(r.headers().count(), 3);
        assert_eq!(r.header("nope"), None);
        let r = parse_head(b"POST / HTTP/1.0").unwrap();
        assert_eq!(
            (r.method, r.version, r.headers().count()),
            ("POST", Version::Http10, 0)
        );
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody\r\n\r\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn malformed_heads_are_refused_with_a_reason() {
        use HttpError::*;
        let long_target = alloc::format!("GET /{} HTTP/1.1", "a".repeat(MAX_TARGET));
        let many: alloc::string::String = (0..=MAX_HEADERS)
            .map(|i| alloc::format!("\r\nH{i}: v"))
            .collect();
        let many = alloc::format!("GET / HTTP/1.1{many}");
        for (head, want) in [
            (&b"BLAH"[..], BadRequestLine),
            (b"", BadRequestLine),
            (b"GET /", BadRequestLine),
            (b"GET  / HTTP/1.1", BadRequestLine),
            (b"GET / HTTP/1.1 x", BadRequestLine),
            (b"G3T / HTTP/1.1", BadRequestLine),
            (b"GET / HTTP/2.0", BadVersion),
            (b"GET / FTP/1.0", BadRequestLine),
            (long_target.as_bytes(), BadRequestLine),
            (b"GET / HTTP/1.1\nHost: a", BadLineEnding),
            (b"GET / HTTP/1.1\r\rHost: a", BadLineEnding),
            (b"GET / HTTP/1.1\r\n", BadHeader),
            (b"GET / HTTP/1.1\r\nHost a", BadHeader),
            (b"GET / HTTP/1.1\r\nHost : a", BadHeader),
            (b"GET / HTTP/1.1\r\n folded: a", BadHeader),
            (b"GET / HTTP/1.1\r\nHost: a\x00b", BadHeader),
            (b"GET /\xc3\xa9 HTTP/1.1", BadHeader),
            (many.as_bytes(), TooManyHeaders),
        ] {
            assert_eq!(
                parse_head(head),
                Err(want),
                "{:?}",
                core::str::from_utf8(head)
            );
        }
    }
}
