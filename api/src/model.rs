//! The data the API speaks and the pure validation rules behind it.
//!
//! Everything here is free of I/O so that the rules (stage names, title limits,
//! body shapes) can be unit-tested on their own and reused unchanged by the
//! Lambda implementation of the same contract.

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

/// Longest title accepted, counted in Unicode scalar values (`char`s), not bytes,
/// so that a title in any script gets the same budget a person would count.
pub const MAX_TITLE_CHARS: usize = 500;

/// Longest stage name: API Gateway stage names are short, and the limit keeps
/// the name usable as one path segment and one SQLite key column value.
pub const MAX_STAGE_LEN: usize = 63;

/// One todo as it travels over the wire.
///
/// Field names are camelCase because the browser app is JavaScript-facing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Todo {
    /// Opaque identifier; clients must not parse it.
    pub id: String,
    /// Trimmed, non-empty, at most [`MAX_TITLE_CHARS`] characters.
    pub title: String,
    pub completed: bool,
    /// RFC 3339 UTC timestamp with millisecond precision (`2024-05-01T12:00:00.123Z`).
    pub created_at: String,
}

/// A validated stage name: `^[a-z0-9][a-z0-9-]{0,62}$`.
///
/// Holding a `Stage` proves the check was done, so the store never sees an
/// unchecked name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage(String);

impl Stage {
    /// Checks `raw` against the stage pattern; returns `None` when it does not match.
    ///
    /// Written by hand rather than with a regex crate: the pattern is tiny and
    /// this keeps the dependency list short.
    pub fn parse(raw: &str) -> Option<Stage> {
        let bytes = raw.as_bytes();
        let first_ok = matches!(bytes.first(), Some(b'a'..=b'z' | b'0'..=b'9'));
        let rest_ok = bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'));
        (first_ok && rest_ok && bytes.len() <= MAX_STAGE_LEN).then(|| Stage(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a title was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TitleError {
    #[error(
        "the title is empty after trimming whitespace; send a title with at least one visible character"
    )]
    Empty,
    #[error(
        "the title is {chars} characters long after trimming; shorten it to at most {MAX_TITLE_CHARS} characters"
    )]
    TooLong { chars: usize },
    #[error(
        "the title has no visible character (only spaces, control, zero-width or direction marks); send a title with at least one visible character"
    )]
    Invisible,
}

/// Characters that show nothing on their own: whitespace, controls, and the format
/// characters (zero-width spaces and joiners, direction marks and overrides, the byte
/// order mark, soft hyphen, variation selectors, tags, Hangul fillers).
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// A validated title: trimmed, non-empty, at most [`MAX_TITLE_CHARS`] chars.
///
/// The text is otherwise stored verbatim (HTML stays literal text): escaping is
/// the renderer's job, and mangling input here would corrupt round trips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Title, TitleError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(TitleError::Empty);
        }
        let chars = trimmed.chars().count();
        if chars > MAX_TITLE_CHARS {
            return Err(TitleError::TooLong { chars });
        }
        if trimmed.chars().all(is_invisible) {
            return Err(TitleError::Invisible);
        }
        Ok(Title(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Deserializes a field that may be absent but must not be `null`.
///
/// Used with `#[serde(default)]`: absence gives `None`, a value of the right
/// type gives `Some`, and `null` is a type error (→ 400) instead of silently
/// meaning "absent", so a client bug is reported rather than ignored.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Body of `POST /{stage}/todos`.
///
/// Unknown fields are refused so that a typo such as `"complete"` is a 400
/// rather than a silently ignored field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTodo {
    pub title: String,
    #[serde(default, deserialize_with = "present")]
    pub completed: Option<bool>,
}

/// Body of `PATCH /{stage}/todos/{id}`: each field optional, at least one required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchTodo {
    #[serde(default, deserialize_with = "present")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub completed: Option<bool>,
}

/// Body of the bulk `PATCH /{stage}/todos` (toggle all).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAllCompleted {
    pub completed: bool,
}

/// A validated single-todo update, ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TodoChanges {
    pub title: Option<Title>,
    pub completed: Option<bool>,
}

/// Why a PATCH body was refused after it parsed as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// Neither `title` nor `completed` was given.
    NothingToChange,
    Title(TitleError),
}

impl PatchTodo {
    /// Turns the parsed body into a change set, enforcing "at least one field"
    /// and the title rules.
    pub fn validate(self) -> Result<TodoChanges, PatchError> {
        if self.title.is_none() && self.completed.is_none() {
            return Err(PatchError::NothingToChange);
        }
        let title = self
            .title
            .as_deref()
            .map(Title::parse)
            .transpose()
            .map_err(PatchError::Title)?;
        Ok(TodoChanges {
            title,
            completed: self.completed,
        })
    }
}

/// A new todo: a fresh id and the creation time taken from that same id.
///
/// The id is a UUID v7: still an opaque UUID string to clients, but its text
/// sorts in creation order (48-bit millisecond time, then a counter that keeps
/// ids made in the same millisecond by this process in order, then random
/// bits). The DynamoDB store uses it as the sort key, so a plain key-ordered
/// Query is the list in creation order, and `createdAt` (derived from the id's
/// own timestamp) can never disagree with that order.
pub fn new_todo(title: Title, completed: bool) -> Todo {
    let id = uuid::Uuid::now_v7();
    let created = id
        .get_timestamp()
        .and_then(|ts| {
            let (secs, nanos) = ts.to_unix();
            let total = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
            OffsetDateTime::from_unix_timestamp_nanos(total).ok()
        })
        .unwrap_or_else(OffsetDateTime::now_utc);
    Todo {
        id: id.to_string(),
        title: title.into_string(),
        completed,
        created_at: format_timestamp(created),
    }
}

/// Formats `t` as RFC 3339 UTC with exactly three fractional digits.
///
/// Fixed width (like JavaScript's `Date.prototype.toISOString`) makes the text
/// sort in time order, which the store relies on for list order.
pub fn format_timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The current time in the wire format.
pub fn now_timestamp() -> String {
    format_timestamp(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_accepts_the_documented_pattern() {
        for ok in [
            "dev",
            "prod",
            "0",
            "a",
            "pr-123",
            "a-",
            "9lives",
            &"a".repeat(63),
        ] {
            assert!(Stage::parse(ok).is_some(), "{ok:?} should be a valid stage");
        }
    }

    #[test]
    fn stage_rejects_everything_else() {
        for bad in [
            "",
            "-dev",
            "Dev",
            "DEV",
            "dev_1",
            "dev.1",
            "dév",
            "dev 1",
            "dev/1",
            &"a".repeat(64),
        ] {
            assert!(Stage::parse(bad).is_none(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn title_is_trimmed() {
        assert_eq!(
            Title::parse("  buy milk \n\t").unwrap().as_str(),
            "buy milk"
        );
    }

    #[test]
    fn title_empty_after_trim_is_rejected() {
        assert_eq!(Title::parse(""), Err(TitleError::Empty));
        assert_eq!(Title::parse(" \t\n\u{3000}"), Err(TitleError::Empty));
        for invisible in [
            "\u{200B}",
            "\u{200B}\u{200D}\u{FEFF}",
            "\u{202E}\u{2066}",
            "\u{7}\u{1B}",
            "\u{AD}\u{FE0F}",
        ] {
            assert_eq!(
                Title::parse(invisible),
                Err(TitleError::Invisible),
                "{invisible:?}"
            );
        }
        // One visible character is enough; invisible ones around it stay verbatim.
        assert_eq!(
            Title::parse("\u{200B}a\u{200D}").map(Title::into_string),
            Ok("\u{200B}a\u{200D}".to_owned())
        );
        assert!(Title::parse("👩\u{200D}💻").is_ok());
    }

    #[test]
    fn title_limit_counts_chars_not_bytes() {
        // 500 three-byte characters: 1500 bytes, but exactly at the limit.
        let at_limit = "€".repeat(500);
        assert_eq!(Title::parse(&at_limit).unwrap().as_str(), at_limit);
        assert_eq!(
            Title::parse(&"€".repeat(501)),
            Err(TitleError::TooLong { chars: 501 })
        );
        // Surrounding whitespace does not count towards the limit.
        let padded = format!("   {}   ", "x".repeat(500));
        assert_eq!(Title::parse(&padded).unwrap().as_str().len(), 500);
    }

    #[test]
    fn title_keeps_html_and_unicode_verbatim() {
        let raw = "<b>Ünïcødé</b> & 🚀 <script>alert(1)</script>";
        assert_eq!(Title::parse(raw).unwrap().as_str(), raw);
    }

    #[test]
    fn patch_needs_at_least_one_field() {
        let empty: PatchTodo = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.validate(), Err(PatchError::NothingToChange));
    }

    #[test]
    fn patch_validates_title() {
        let p: PatchTodo = serde_json::from_str(r#"{"title": "   "}"#).unwrap();
        assert_eq!(p.validate(), Err(PatchError::Title(TitleError::Empty)));
        let p: PatchTodo = serde_json::from_str(r#"{"title": " x ", "completed": true}"#).unwrap();
        let c = p.validate().unwrap();
        assert_eq!(c.title.unwrap().as_str(), "x");
        assert_eq!(c.completed, Some(true));
    }

    #[test]
    fn bodies_reject_unknown_fields_nulls_and_wrong_types() {
        assert!(serde_json::from_str::<PatchTodo>(r#"{"complete": true}"#).is_err());
        assert!(serde_json::from_str::<PatchTodo>(r#"{"title": null}"#).is_err());
        assert!(serde_json::from_str::<PatchTodo>(r#"{"completed": "yes"}"#).is_err());
        assert!(serde_json::from_str::<CreateTodo>(r#"{"completed": true}"#).is_err());
        assert!(serde_json::from_str::<CreateTodo>(r#"{"title": 5}"#).is_err());
        assert!(serde_json::from_str::<CreateTodo>(r#"{"title": "a", "id": "x"}"#).is_err());
        assert!(serde_json::from_str::<SetAllCompleted>(r#"{}"#).is_err());
        let c: CreateTodo = serde_json::from_str(r#"{"title": "a"}"#).unwrap();
        assert_eq!(c.completed, None);
    }

    #[test]
    fn timestamp_is_fixed_width_rfc3339_utc() {
        let t = time::Date::from_calendar_date(2024, time::Month::February, 3)
            .unwrap()
            .with_hms_nano(4, 5, 6, 7_000_000)
            .unwrap()
            .assume_utc();
        assert_eq!(format_timestamp(t), "2024-02-03T04:05:06.007Z");
        let now = now_timestamp();
        assert_eq!(now.len(), 24);
        OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339)
            .expect("now_timestamp must be valid RFC 3339");
    }

    #[test]
    fn new_todos_sort_by_id_in_creation_order() {
        let todos: Vec<Todo> = (0..200)
            .map(|i| new_todo(Title::parse(&format!("t{i}")).unwrap(), false))
            .collect();
        for pair in todos.windows(2) {
            assert!(pair[0].id < pair[1].id, "{} !< {}", pair[0].id, pair[1].id);
            assert!(pair[0].created_at <= pair[1].created_at);
        }
        let first = &todos[0];
        assert_eq!(first.id.len(), 36, "a hyphenated UUID string");
        let age = OffsetDateTime::now_utc()
            - OffsetDateTime::parse(
                &first.created_at,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
        assert!(
            age.whole_seconds().abs() < 60,
            "createdAt is now: {}",
            first.created_at
        );
    }

    #[test]
    fn todo_serializes_with_camel_case() {
        let todo = Todo {
            id: "1".into(),
            title: "t".into(),
            completed: false,
            created_at: "2024-01-01T00:00:00.000Z".into(),
        };
        let v = serde_json::to_value(&todo).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "1", "title": "t", "completed": false, "createdAt": "2024-01-01T00:00:00.000Z"})
        );
    }
}
