//! Role resolution (SPEC §4): `hub`, `peer`, or `auto` from hostname and configuration.

use crate::config::{Config, ConfigError, Role};
use regex::Regex;

/// The role a node runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvedRole {
    /// Authoritative register, accepts peers.
    Hub,
    /// Replica of a hub's register.
    Peer,
}

impl ResolvedRole {
    /// `hub` or `peer`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolvedRole::Hub => "hub",
            ResolvedRole::Peer => "peer",
        }
    }
}

/// Decides the role. `auto`: hub when the hostname matches `hub.hostnamePattern` or
/// `hub.enabled`; peer when hubs are configured; otherwise a standalone hub. With
/// `hub.enabled` and `hub.validateHostname`, a hostname that does not match stops start-up.
/// `hostname_rule` is `hub.hostnamePattern` as validation compiled it.
pub fn resolve(
    config: &Config,
    hostname_rule: &Regex,
    hostname: &str,
) -> Result<ResolvedRole, ConfigError> {
    let matches = hostname_rule.is_match(hostname);
    if config.hub.enabled && config.hub.validate_hostname && !matches {
        return Err(ConfigError(format!(
            "hub.enabled and hub.validateHostname are set, but hostname '{hostname}' does not match \
             hub.hostnamePattern '{}'",
            config.hub.hostname_pattern
        )));
    }
    Ok(match config.role {
        Role::Hub => ResolvedRole::Hub,
        Role::Peer => ResolvedRole::Peer,
        Role::Auto if matches || config.hub.enabled => ResolvedRole::Hub,
        Role::Auto if !config.hubs.is_empty() => ResolvedRole::Peer,
        Role::Auto => ResolvedRole::Hub,
    })
}

/// This machine's hostname.
pub fn system_hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_role() {
        let resolve = |c: &Config, hostname: &str| {
            resolve(c, &Regex::new(&c.hub.hostname_pattern).unwrap(), hostname)
        };
        let mut c = Config::default();
        assert_eq!(resolve(&c, "laptop").ok(), Some(ResolvedRole::Hub));
        c.hubs = vec!["http://n0.sorcha.dev:5000".into()];
        assert_eq!(resolve(&c, "laptop").ok(), Some(ResolvedRole::Peer));
        assert_eq!(resolve(&c, "n1.sorcha.dev").ok(), Some(ResolvedRole::Hub));
        c.hub.enabled = true;
        assert_eq!(resolve(&c, "laptop").ok(), Some(ResolvedRole::Hub));
        c.hub.validate_hostname = true;
        let err = resolve(&c, "laptop").unwrap_err().to_string();
        assert!(err.contains("laptop") && err.contains("sorcha"), "{err}");
    }
}
