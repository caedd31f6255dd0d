//! Pages of a stage's list: the `limit` and `cursor` of `GET /{stage}/todos`.
//!
//! Both are validated here, free of I/O, so a bad value is a 400 before any
//! store is asked, and both stores page by exactly the same rules.
//!
//! # Why the cursor is a position
//!
//! A cursor holds the list's order key of the last todo a page returned
//! (`createdAt`, then `id`), not a reference to that todo: the next page is
//! "everything after this key", which stays well defined when that todo (or any
//! other) is deleted between pages. So a todo that exists from the first page
//! to the last is returned exactly once, whatever is created or deleted
//! meanwhile; todos created meanwhile appear on a later page (new ids sort
//! last). The SQLite store compares `(created_at, id)` row values, the DynamoDB
//! store starts its Query after the key `(pk, id)` (`ExclusiveStartKey`, which
//! need not exist either).
//!
//! The cursor is opaque to clients (base64url, no padding, of `1|<createdAt>|<id>`;
//! the leading version lets the format change without misreading old cursors).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::model::Todo;

/// Todos per page when the request names no `limit`.
pub const DEFAULT_LIMIT: u16 = 100;

/// The largest `limit`. A todo is at most ~2.1 KB of JSON (a 500-character title
/// of 4-byte characters is 2,000 bytes, plus id, timestamp and field names), so
/// a page of 1,000 is at most ~2.2 MB: well under Lambda's 6 MB response limit
/// even after API Gateway's base64 or escaping overhead, and one request is
/// enough for most lists.
pub const MAX_LIMIT: u16 = 1000;

/// Longest cursor accepted, in characters: a real one is about 90 (a 24-byte
/// timestamp and a 36-byte UUID, base64url-encoded). The bound keeps garbage
/// from ever reaching a store as a key.
const MAX_CURSOR_CHARS: usize = 256;

/// Longest id a cursor may carry (the ids this API issues are 36 bytes; a
/// DynamoDB sort key must stay under 1 KB).
const MAX_CURSOR_ID_BYTES: usize = 128;

/// Why `limit` or `cursor` was refused: a 400 `invalid_query` whose message
/// names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageQueryError {
    #[error(
        "the query parameter limit={0:?} is not a whole number from 1 to {MAX_LIMIT}; send e.g. ?limit={MAX_LIMIT}, or omit it for {DEFAULT_LIMIT} todos per page"
    )]
    Limit(String),
    #[error(
        "the query parameter cursor={0:?} is not a cursor this API issued; follow the URL of the previous page's Link rel=\"next\" header unchanged, or omit cursor to start at the first todo"
    )]
    Cursor(String),
    #[error(
        "the query string could not be parsed ({0}); send at most one limit (1 to {MAX_LIMIT}) and one cursor, e.g. ?limit={MAX_LIMIT}"
    )]
    Malformed(String),
}

/// A validated page size, 1 to [`MAX_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u16);

impl Limit {
    /// The largest page, for callers that want the whole list.
    pub const MAX: Limit = Limit(MAX_LIMIT);

    /// `None` (the parameter is absent) is the default of [`DEFAULT_LIMIT`];
    /// anything but the decimal digits of 1 to [`MAX_LIMIT`] is refused (no
    /// sign, no spaces, no `1e3`, so one value has one spelling).
    pub fn parse(raw: Option<&str>) -> Result<Limit, PageQueryError> {
        let Some(raw) = raw else {
            return Ok(Limit(DEFAULT_LIMIT));
        };
        let refused = || PageQueryError::Limit(raw.to_owned());
        if raw.is_empty() || raw.len() > 4 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refused());
        }
        match raw.parse::<u16>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(Limit(n)),
            _ => Err(refused()),
        }
    }

    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

impl Default for Limit {
    fn default() -> Limit {
        Limit(DEFAULT_LIMIT)
    }
}

/// Where the next page starts: just after this order key (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    created_at: String,
    id: String,
}

impl Cursor {
    /// The position right after `todo`.
    pub fn after(todo: &Todo) -> Cursor {
        Cursor {
            created_at: todo.created_at.clone(),
            id: todo.id.clone(),
        }
    }

    pub fn created_at(&self) -> &str {
        &self.created_at
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The opaque text clients send back; only base64url characters, so it
    /// needs no escaping in a URL or a header.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("1|{}|{}", self.created_at, self.id))
    }

    /// Reads a cursor made by [`Cursor::encode`]; anything else is refused.
    pub fn decode(raw: &str) -> Result<Cursor, PageQueryError> {
        let refused = || PageQueryError::Cursor(shorten(raw));
        if raw.is_empty() || raw.len() > MAX_CURSOR_CHARS {
            return Err(refused());
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| refused())?;
        let text = String::from_utf8(bytes).map_err(|_| refused())?;
        let (version, rest) = text.split_once('|').ok_or_else(refused)?;
        let (created_at, id) = rest.split_once('|').ok_or_else(refused)?;
        let id_ok =
            !id.is_empty() && id.len() <= MAX_CURSOR_ID_BYTES && !id.chars().any(char::is_control);
        if version != "1" || !is_timestamp(created_at) || !id_ok {
            return Err(refused());
        }
        Ok(Cursor {
            created_at: created_at.to_owned(),
            id: id.to_owned(),
        })
    }
}

/// One page of a stage's list, oldest first, and where the next one starts
/// (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub todos: Vec<Todo>,
    pub next: Option<Cursor>,
}

/// The stores' timestamp shape, `YYYY-MM-DDTHH:MM:SS.mmmZ` (see
/// `model::format_timestamp`): a cursor holding anything else was not made here.
fn is_timestamp(s: &str) -> bool {
    const SHAPE: &[u8; 24] = b"dddd-dd-ddTdd:dd:dd.dddZ";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE.iter()).all(|(b, &want)| match want {
            b'd' => b.is_ascii_digit(),
            other => b == other,
        })
}

/// A refused value quoted back in an error message, cut short so a huge query
/// does not become a huge error body.
fn shorten(raw: &str) -> String {
    const KEEP: usize = 40;
    match raw.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}…", &raw[..cut]),
        None => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(Limit::parse(None).unwrap().get(), 100);
        assert_eq!(Limit::parse(Some("1")).unwrap().get(), 1);
        assert_eq!(Limit::parse(Some("1000")).unwrap().get(), 1000);
        assert_eq!(Limit::parse(Some("0250")).unwrap().get(), 250);
        for bad in [
            "", "0", "1001", "65536", "-1", "+5", " 5", "5 ", "1e3", "ten", "99999",
        ] {
            assert_eq!(
                Limit::parse(Some(bad)),
                Err(PageQueryError::Limit(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let todo = Todo {
            id: "0190d2a0-0000-7000-8000-000000000001".into(),
            title: "t".into(),
            completed: false,
            created_at: "2025-01-31T09:15:27.123Z".into(),
        };
        let c = Cursor::after(&todo);
        let text = c.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text}"
        );
        assert_eq!(Cursor::decode(&text), Ok(c));

        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for bad in [
            String::new(),
            "!!!".into(),
            "a".repeat(300),
            b64("2|2025-01-31T09:15:27.123Z|x"),
            b64("1|2025-01-31 09:15:27.123Z|x"),
            b64("1|2025-01-31T09:15:27.123Z|"),
            b64("1|2025-01-31T09:15:27.123Z"),
            b64(&format!("1|2025-01-31T09:15:27.123Z|{}", "x".repeat(129))),
            b64("1|2025-01-31T09:15:27.123Z|a\nb"),
            URL_SAFE_NO_PAD.encode([0xff, 0xfe, b'|']),
        ] {
            assert!(
                matches!(Cursor::decode(&bad), Err(PageQueryError::Cursor(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn long_values_are_quoted_short() {
        let e = Cursor::decode(&"é".repeat(200)).unwrap_err();
        assert!(e.to_string().len() < 400, "{e}");
    }
}
