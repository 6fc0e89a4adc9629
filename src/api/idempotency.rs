//! The `Idempotency-Key` request header (IETF httpapi draft `idempotency-key-header`) and the
//! `Idempotent-Replayed` answer header.
//!
//! The draft defines the key as an RFC 8941 string item, `Idempotency-Key: "8e03…"`; many
//! clients send the bare value (`Idempotency-Key: 8e03…`), which is taken as it is. What makes
//! a key valid (length, characters) is the register's rule,
//! [`crate::register::validation::idempotency_key`].

use super::error::ApiError;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// The request header carrying the key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The answer header marking an answer replayed from an earlier identical request.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The request's idempotency key, if it sent one; 400 when the header is malformed.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(malformed("send one Idempotency-Key header, not several"));
    }
    parse(value).map(Some)
}

fn parse(value: &HeaderValue) -> Result<String, ApiError> {
    let text = value
        .to_str()
        .map_err(|_| malformed("the value must be printable ASCII"))?
        .trim();
    if text.starts_with('"') {
        let item: sfv::Item = sfv::Parser::new(text)
            .parse()
            .map_err(|e| malformed(&format!("not a structured-field string ({e})")))?;
        return match item.bare_item.as_string() {
            Some(s) => Ok(s.as_str().to_owned()),
            None => Err(malformed("not a structured-field string")),
        };
    }
    // A comma may be two header lines joined by a proxy; a quote belongs to a string.
    if let Some(c) = text
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | ','))
    {
        return Err(malformed(&format!(
            "the character {c:?} needs the key in quotes (a structured-field string)"
        )));
    }
    Ok(text.to_owned())
}

fn malformed(why: &str) -> ApiError {
    ApiError::new(
        crate::error_code::ErrorCode::InvalidIdempotencyKey,
        format!("Idempotency-Key is malformed: {why}"),
    )
}

/// Marks `headers` of an answer replayed from an earlier request.
pub fn mark_replayed(headers: &mut HeaderMap) {
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Result<Option<String>, u16> {
        let mut headers = HeaderMap::new();
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_str(raw).unwrap());
        key(&headers).map_err(|e| e.status().as_u16())
    }

    #[test]
    fn quoted_and_bare_keys_are_read_and_malformed_ones_refused() {
        assert_eq!(parsed(r#""a-1""#), Ok(Some("a-1".into())));
        assert_eq!(parsed(r#""a \"b\" c""#), Ok(Some(r#"a "b" c"#.into())));
        assert_eq!(parsed(r#""k";v=1"#), Ok(Some("k".into())));
        assert_eq!(
            parsed("8e03978e-40d5-43e8-bc93-6894a57f9324"),
            Ok(Some("8e03978e-40d5-43e8-bc93-6894a57f9324".into()))
        );
        assert_eq!(parsed(r#""unterminated"#), Err(400));
        assert_eq!(parsed("two words"), Err(400));
        assert_eq!(parsed(r#"a"b"#), Err(400));
        assert_eq!(parsed("a, b"), Err(400));
        assert_eq!(key(&HeaderMap::new()).ok(), Some(None));
    }
}
