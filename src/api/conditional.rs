//! Conditional requests (RFC 9110 §13): entity tags are register versions.
//!
//! A blueprint's `ETag` is `"<version of its newest entry>"`; the register summary's and the
//! log's is `"<head version>"`; an entry's is `"<its version>"`. `If-None-Match` on a read
//! answers 304 when a tag matches (weak comparison); `If-Match` on a write names the version
//! the writer expects to replace (strong comparison), and the store checks it atomically.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The entity tag of `version`.
pub fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// One entity tag of a list: weak or strong, and its opaque text.
struct Tag<'a> {
    weak: bool,
    opaque: &'a str,
}

/// Parses `*` (`None`) or a comma-separated list of entity tags; `Err` when malformed.
fn tags<'a>(value: &'a HeaderValue) -> Result<Option<Vec<Tag<'a>>>, ()> {
    let text = value.to_str().map_err(|_| ())?.trim();
    if text == "*" {
        return Ok(None);
    }
    text.split(',')
        .map(|raw| {
            let raw = raw.trim();
            let (weak, quoted) = match raw.strip_prefix("W/") {
                Some(rest) => (true, rest),
                None => (false, raw),
            };
            let opaque = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .filter(|o| !o.contains('"'))
                .ok_or(())?;
            Ok(Tag { weak, opaque })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The version `If-Match` requires the blueprint's newest entry to be: `None` without the
/// header or with `*` (any current version; a write needs an existing blueprint anyway). A value
/// that names no version of ours — a weak tag (`If-Match` compares strongly), another server's
/// tag, or no entity tag at all — can match nothing: [`NO_VERSION`], which the write refuses
/// with 412 (RFC 9110 §13.1.1: the condition is false), the problem naming the current version.
pub fn if_match(headers: &HeaderMap) -> Option<i64> {
    let value = headers.get(header::IF_MATCH)?;
    match tags(value) {
        Ok(None) => None,
        Ok(Some(tags)) => Some(
            tags.iter()
                .filter(|t| !t.weak)
                .find_map(|t| t.opaque.parse::<i64>().ok())
                .unwrap_or(NO_VERSION),
        ),
        Err(()) => Some(NO_VERSION),
    }
}

/// The version an `If-Match` that names none of ours stands for: no entry has it.
pub const NO_VERSION: i64 = -1;

/// True when `If-None-Match` matches `version` (weak comparison; `*` matches anything). A value
/// that is not a list of entity tags matches nothing (the resource is sent).
pub fn if_none_match(headers: &HeaderMap, version: i64) -> bool {
    let Some(value) = headers.get(header::IF_NONE_MATCH) else {
        return false;
    };
    match tags(value) {
        Ok(None) => true,
        Ok(Some(tags)) => tags.iter().any(|t| t.opaque.parse::<i64>() == Ok(version)),
        Err(()) => false,
    }
}

/// 304 Not Modified for `version`: its ETag, no body.
pub fn not_modified(version: i64) -> Response {
    (StatusCode::NOT_MODIFIED, [(header::ETAG, etag(version))]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn entity_tag_lists_parse() {
        for ok in ["*", "\"3\"", "W/\"3\"", "\"1\", W/\"2\"", "\"\"", "\"a-b\""] {
            assert!(tags(&HeaderValue::from_static(ok)).is_ok(), "{ok}");
        }
        for bad in ["3", "null", "\"3", "W/", "\"1\" \"2\"", "**"] {
            assert!(tags(&HeaderValue::from_static(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn entity_tags_compare_as_rfc_9110_says() {
        assert_eq!(if_match(&HeaderMap::new()), None);
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "*")),
            None,
            "any version"
        );
        assert_eq!(if_match(&headers(header::IF_MATCH, "\"7\"")), Some(7));
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "\"x\", \"9\"")),
            Some(9)
        );
        for none in ["W/\"7\"", "\"abc\"", "7", "\"7", "abc", "\"7\" \"8\"", ""] {
            assert_eq!(
                if_match(&headers(header::IF_MATCH, none)),
                Some(NO_VERSION),
                "{none:?}"
            );
        }
        let inm = |v: &str, version| if_none_match(&headers(header::IF_NONE_MATCH, v), version);
        assert!(inm("W/\"3\"", 3));
        assert!(inm("\"2\", \"3\"", 3));
        assert!(inm("*", 3));
        assert!(!inm("\"2\"", 3));
        assert!(!inm("3", 3), "not an entity tag: matches nothing");
        assert!(!if_none_match(&HeaderMap::new(), 3));
    }
}
