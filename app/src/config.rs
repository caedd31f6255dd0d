//! The runtime config (`config.json`, written per stage by the deploy tool).
//!
//! One bundle serves every stage, so nothing stage-specific is compiled in:
//! the API base and the stage name arrive at boot. This module is pure (no
//! web-sys) so the validation and the messages are tested natively; fetching
//! lives in [`crate::api`].
use std::fmt;

/// The validated config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub stage: String,
    /// Base URL of the todo API, without a trailing slash.
    pub api_base: String,
}

impl Config {
    /// Builds the config from the two raw JSON fields (`None` = missing or not
    /// a string). Empty values count as missing: an empty `apiBase` would make
    /// the app talk to its own origin, which is never what the deploy meant.
    pub fn from_fields(
        stage: Option<String>,
        api_base: Option<String>,
    ) -> Result<Self, ConfigError> {
        let stage = stage
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing("stage"))?;
        let api_base = api_base
            .map(|b| normalize_api_base(&b))
            .filter(|b| !b.is_empty())
            .ok_or(ConfigError::Missing("apiBase"))?;
        Ok(Config { stage, api_base })
    }

    /// Production gets no stage badge; every other stage does, so nobody
    /// mistakes a preview for the real thing.
    pub fn shows_badge(&self) -> bool {
        self.stage != "prod"
    }
}

/// `apiBase` is documented without a trailing slash; tolerate one (or several)
/// so `{base}/todos` never becomes `//todos`.
pub fn normalize_api_base(raw: &str) -> String {
    raw.trim().trim_end_matches('/').to_owned()
}

/// Why the config could not be used. Each variant renders as a message for the
/// page itself (never a blank screen) that says how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The server answered with a non-2xx status (typically 404: not deployed).
    Http(u16),
    /// The request itself failed (offline, blocked, …).
    Network(String),
    /// The body is not JSON.
    InvalidJson(String),
    /// A required field is missing, empty or not a string.
    Missing(&'static str),
}

const HOW_TO_FIX: &str = "The deploy tool writes it: run `uploader --stage <name>`.";

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Http(status) => {
                write!(
                    f,
                    "This site's config.json could not be loaded (HTTP {status}). {HOW_TO_FIX}"
                )
            }
            ConfigError::Network(detail) => {
                write!(
                    f,
                    "This site's config.json could not be loaded ({detail}). {HOW_TO_FIX}"
                )
            }
            ConfigError::InvalidJson(detail) => {
                write!(
                    f,
                    "This site's config.json is not valid JSON ({detail}). {HOW_TO_FIX}"
                )
            }
            ConfigError::Missing(field) => write!(
                f,
                "This site's config.json has no usable \"{field}\" (expected {{\"stage\": \"dev\", \"apiBase\": \"https://…\"}}). {HOW_TO_FIX}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn valid_config() {
        let c = Config::from_fields(s("dev"), s("http://127.0.0.1:3030/dev")).unwrap();
        assert_eq!(c.api_base, "http://127.0.0.1:3030/dev");
        assert!(c.shows_badge());
        let c = Config::from_fields(s("prod"), s("https://api.example/prod/")).unwrap();
        assert_eq!(c.api_base, "https://api.example/prod");
        assert!(!c.shows_badge());
    }

    #[test]
    fn trailing_slashes_are_tolerated() {
        assert_eq!(normalize_api_base("http://x/dev//"), "http://x/dev");
        assert_eq!(normalize_api_base("/api/dev"), "/api/dev");
    }

    #[test]
    fn missing_fields() {
        assert_eq!(
            Config::from_fields(None, s("x")),
            Err(ConfigError::Missing("stage"))
        );
        assert_eq!(
            Config::from_fields(s(" "), s("x")),
            Err(ConfigError::Missing("stage"))
        );
        assert_eq!(
            Config::from_fields(s("dev"), None),
            Err(ConfigError::Missing("apiBase"))
        );
        assert_eq!(
            Config::from_fields(s("dev"), s("/")),
            Err(ConfigError::Missing("apiBase"))
        );
    }

    #[test]
    fn messages_say_what_and_how() {
        let m = ConfigError::Http(404).to_string();
        assert!(
            m.contains("config.json") && m.contains("HTTP 404") && m.contains("uploader --stage")
        );
        assert!(
            ConfigError::Missing("apiBase")
                .to_string()
                .contains("\"apiBase\"")
        );
    }
}
