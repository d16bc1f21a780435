//! The HTTP/1.1 `HEAD` keep-alive exchange timed on the established connection: building the
//! request and recognising a complete response head, with a size cap.

/// A `HEAD /` request that keeps the connection open.
pub(crate) fn head_request(host: &str) -> Vec<u8> {
    format!(
        "HEAD / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: locus-anchor/1\r\nConnection: keep-alive\r\n\r\n"
    )
    .into_bytes()
}

/// What is known about the bytes received so far for one response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// More bytes needed.
    Partial,
    /// A complete response head.
    Complete { status: u16, close: bool },
    /// Not an HTTP/1.1 response head, or bytes after it (a HEAD answer has no body).
    Bad(String),
}

/// Looks for a complete response head in `buf` (everything received for this request).
pub(crate) fn parse_head(buf: &[u8]) -> Head {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Head::Partial;
    };
    let head_len = end + 4;
    // Interim (1xx) responses are not expected for HEAD without Expect; treat them as bad.
    let text = match std::str::from_utf8(&buf[..end]) {
        Ok(t) => t,
        Err(_) => return Head::Bad("response head is not UTF-8".into()),
    };
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Head::Bad(format!("not an HTTP/1.x status line: {status_line:?}"));
    }
    let Some(status) = parts.next().and_then(|s| s.parse::<u16>().ok()) else {
        return Head::Bad(format!("no status code in {status_line:?}"));
    };
    if !(200..600).contains(&status) {
        return Head::Bad(format!("unexpected status {status}"));
    }
    let mut close = version == "HTTP/1.0";
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("connection") {
                close = value.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    if buf.len() > head_len {
        return Head::Bad(format!(
            "{} bytes after the response head (a HEAD response has no body)",
            buf.len() - head_len
        ));
    }
    Head::Complete { status, close }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le"), Head::Partial);
        assert_eq!(
            parse_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\n\r\n"),
            Head::Complete {
                status: 404,
                close: false
            }
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"),
            Head::Complete {
                status: 200,
                close: true
            }
        );
        assert!(matches!(parse_head(b"SSH-2.0\r\n\r\n"), Head::Bad(_)));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\n\r\nbody"),
            Head::Bad(_)
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Head::Bad(_)
        ));
    }
}
