//! Loading the configuration: defaults < TOML file < environment < flags, with environment
//! names mapped to keys and unknown file keys refused.

use super::{Config, ConfigError};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use std::path::Path;

/// Turns `HUB__VALIDATE_HOSTNAME` into `hub.validateHostname`.
fn env_key_to_path(key: &str) -> String {
    key.split("__")
        .map(|section| {
            let mut out = String::new();
            for (i, word) in section.split('_').filter(|w| !w.is_empty()).enumerate() {
                let word = word.to_ascii_lowercase();
                if i == 0 {
                    out.push_str(&word);
                } else {
                    let mut chars = word.chars();
                    if let Some(c) = chars.next() {
                        out.push(c.to_ascii_uppercase());
                        out.extend(chars);
                    }
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(".")
}

impl Config {
    /// Loads defaults < `file` < environment < `overrides` (flags, as a serializable value with
    /// absent flags skipped) and validates the result.
    pub fn load(file: Option<&Path>, overrides: impl Serialize) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            check_known_keys(file)?;
            figment = figment.merge(Toml::file(file));
        }
        // Client-only variables are not node configuration.
        let env = Env::prefixed("SORCHA_")
            .ignore(&["SERVER", "TOKEN", "CA_CERT", "OUTPUT", "LOG_FORMAT"])
            .map(|key| env_key_to_path(key.as_str()).into())
            .lowercase(false);
        figment = figment.merge(env).merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }
}

/// Refuses a TOML file with a key the configuration does not have (a misspelt section or key
/// would otherwise be ignored and its default used), naming the key and the closest known one.
fn check_known_keys(file: &Path) -> Result<(), ConfigError> {
    use figment::Provider;
    let data = Toml::file(file)
        .data()
        .map_err(|e| ConfigError(format!("{}: {e}", file.display())))?;
    let Some(dict) = data.into_values().next() else {
        return Ok(());
    };
    let value = figment::value::Value::from(dict);
    let mut unknown = Vec::new();
    // Values are checked by the real extraction; only the keys matter here.
    let _ = serde_ignored::deserialize(&value, |path| unknown.push(path.to_string()))
        .map(|_: Config| ());
    let Some(key) = unknown.into_iter().next() else {
        return Ok(());
    };
    let hint = closest_known_key(&key)
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    Err(ConfigError(format!(
        "{}: unknown key `{key}`{hint}; docs/operations.md lists every key",
        file.display()
    )))
}

/// The known key nearest to `path` (same section, small edit distance), if any.
fn closest_known_key(path: &str) -> Option<String> {
    let defaults = serde_json::to_value(Config::default()).ok()?;
    let (section, name) = path.rsplit_once('.').unwrap_or(("", path));
    let mut siblings = &defaults;
    for part in section.split('.').filter(|p| !p.is_empty()) {
        siblings = siblings.get(part)?;
    }
    siblings
        .as_object()?
        .keys()
        .map(|k| (strsim::damerau_levenshtein(k, name), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1))
        .min()
        .map(|(_, k)| {
            if section.is_empty() {
                k.clone()
            } else {
                format!("{section}.{k}")
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_map_to_camel_case_paths() {
        assert_eq!(env_key_to_path("LISTEN"), "listen");
        assert_eq!(env_key_to_path("ADMIN_TOKEN"), "adminToken");
        assert_eq!(
            env_key_to_path("HUB__VALIDATE_HOSTNAME"),
            "hub.validateHostname"
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused_with_the_closest_known_one() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            (
                "[hbu]\nenabled = true\n",
                "unknown key `hbu` (did you mean `hub`?)",
            ),
            (
                "[hub]\nheartbeatIntervl = \"5s\"\n",
                "unknown key `hub.heartbeatIntervl` (did you mean `hub.heartbeatInterval`?)",
            ),
            (
                "[hub.rateLimits.connect]\nbrust = 3\n",
                "`hub.rateLimits.connect.burst`",
            ),
            ("lissten = \"127.0.0.1:1\"\n", "(did you mean `listen`?)"),
            (
                "[[tokens]]\ntoken = \"0123456789abcdefgh\"\nidentity = \"ci\"\nrole = \"reader\"\nrol = 1\n",
                "unknown key `tokens.0.rol`",
            ),
            (
                "completelyUnrelatedThing = 1\n",
                "unknown key `completelyUnrelatedThing`;",
            ),
        ] {
            let file = dir.path().join("c.toml");
            std::fs::write(&file, text).unwrap();
            let e = Config::load(Some(&file), serde_json::json!({})).unwrap_err();
            assert!(e.0.contains(expected), "{text}: {e}");
        }
        let file = dir.path().join("ok.toml");
        std::fs::write(
            &file,
            "[hub]\nheartbeatInterval = \"5s\"\n[cors]\nallowedOrigins = [\"http://a.example\"]\n",
        )
        .unwrap();
        assert!(Config::load(Some(&file), serde_json::json!({})).is_ok());
    }
}

#[cfg(test)]
mod flag_tests {
    use crate::cli::Cli;
    use crate::config::{Config, HubOrder};
    use clap::Parser;

    #[test]
    fn the_hub_order_flag_reaches_the_peer_section() {
        let cli = Cli::try_parse_from(["sorcha-peer", "serve", "--hub-order", "spread"]).unwrap();
        let crate::cli::Command::Serve(args) = cli.command else {
            panic!("serve");
        };
        let config = Config::load(None, args.overrides()).unwrap();
        assert_eq!(config.peer.hub_order, HubOrder::Spread);
        assert!(
            Cli::try_parse_from(["sorcha-peer", "serve", "--hub-order", "random"]).is_err(),
            "only priority or spread"
        );
    }

    #[test]
    fn the_serve_downstream_flag_makes_a_relay() {
        let parse = |flags: &[&str]| {
            let cli = Cli::try_parse_from(flags).unwrap();
            let crate::cli::Command::Serve(args) = cli.command else {
                panic!("serve");
            };
            Config::load(None, args.overrides()).unwrap()
        };
        assert!(!parse(&["sorcha-peer", "serve"]).peer.serve_downstream);
        assert!(
            parse(&["sorcha-peer", "serve", "--serve-downstream"])
                .peer
                .serve_downstream
        );
    }
}
