//! Opt-in validation of blueprint documents against a JSON Schema (`validation.blueprintSchema`):
//! `none`, `sorcha` (the Sorcha blueprint format, `schemas/sorcha-blueprint.schema.json`, compiled
//! in) or a path to a schema file. The hub applies it to every document it publishes or updates;
//! peers do not re-validate (the hub's entry is in the chain). Validation is by the `jsonschema`
//! crate, draft 2020-12 unless the schema's `$schema` says otherwise; references are never
//! fetched from the network.

use super::validation::ValidationError;
use std::path::Path;

/// The Sorcha blueprint format as a JSON Schema (draft 2020-12).
pub const SORCHA_SCHEMA: &str = include_str!("../../schemas/sorcha-blueprint.schema.json");

/// At most this many violations are reported for one document.
pub const MAX_VIOLATIONS: usize = 20;

/// One way a document breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// Where in the document (a JSON pointer; `""` is the document itself).
    pub pointer: String,
    /// What is wrong there.
    pub message: String,
}

/// A compiled blueprint schema.
pub struct BlueprintSchema {
    /// `sorcha` or the file's path, for messages.
    name: String,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for BlueprintSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlueprintSchema")
            .field("name", &self.name)
            .finish()
    }
}

impl BlueprintSchema {
    /// The schema `setting` names: `None` for `none`; an error naming the file when it cannot
    /// be read, is not JSON or is not a valid schema.
    pub fn load(setting: &str) -> Result<Option<Self>, String> {
        let (name, text) = match setting {
            "none" => return Ok(None),
            "sorcha" => ("sorcha".to_owned(), SORCHA_SCHEMA.to_owned()),
            path => {
                let text = std::fs::read_to_string(Path::new(path))
                    .map_err(|e| format!("validation.blueprintSchema: cannot read {path}: {e}"))?;
                (path.to_owned(), text)
            }
        };
        let schema: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("validation.blueprintSchema: {name} is not JSON: {e}"))?;
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&schema)
            .map_err(|e| {
                format!("validation.blueprintSchema: {name} is not a valid JSON Schema: {e}")
            })?;
        Ok(Some(Self { name, validator }))
    }

    /// Checks `document`; the error lists up to [`MAX_VIOLATIONS`] violations.
    pub fn check(&self, document: &serde_json::Value) -> Result<(), ValidationError> {
        let violations: Vec<Violation> = self
            .validator
            .iter_errors(document)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                pointer: e.instance_path().as_str().to_owned(),
                message: e.to_string(),
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(ValidationError::Schema {
                schema: self.name.clone(),
                violations,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_genesis_document_is_a_sorcha_blueprint() {
        let schema = BlueprintSchema::load("sorcha").unwrap().unwrap();
        let genesis = super::super::genesis::genesis_entry();
        let document: serde_json::Value = serde_json::from_slice(&genesis.document).unwrap();
        assert_eq!(schema.check(&document), Ok(()));
    }

    #[test]
    fn violations_name_their_pointers() {
        let schema = BlueprintSchema::load("sorcha").unwrap().unwrap();
        let doc = serde_json::json!({
            "id": "x", "title": "ab", "description": "long enough",
            "participants": [{"id": "p"}], "actions": [{"id": "one", "title": "t"}]
        });
        let Err(ValidationError::Schema { violations, .. }) = schema.check(&doc) else {
            panic!("invalid");
        };
        let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        for expected in [
            "/title",
            "/participants",
            "/participants/0",
            "/actions/0/id",
        ] {
            assert!(pointers.contains(&expected), "{pointers:?}");
        }
        let many = serde_json::json!({"actions": (0..50).map(|_| serde_json::json!({})).collect::<Vec<_>>()});
        let Err(ValidationError::Schema { violations, .. }) = schema.check(&many) else {
            panic!("invalid");
        };
        assert_eq!(violations.len(), MAX_VIOLATIONS);
        assert!(BlueprintSchema::load("none").unwrap().is_none());
        let e = BlueprintSchema::load("/nonexistent/schema.json").unwrap_err();
        assert!(e.contains("/nonexistent/schema.json"), "{e}");
    }
}
