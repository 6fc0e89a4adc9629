//! REST bearer tokens: who may publish and who may administer. When no token is configured, a
//! random admin token is generated on first start and kept in `<data-dir>/admin-token`
//! (mode 0600), so a fresh node is secure by default.

use crate::config::{Config, Secret, TokenRole};
use rand::RngCore;
use std::io::Write;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// File name of the generated admin token inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Name recorded as `publishedBy`.
    pub name: String,
    /// What the caller may do.
    pub role: TokenRole,
}

impl Identity {
    /// True when the caller may publish, update and deprecate.
    pub fn can_publish(&self) -> bool {
        matches!(self.role, TokenRole::Publisher | TokenRole::Admin)
    }

    /// True when the caller may use admin endpoints.
    pub fn is_admin(&self) -> bool {
        self.role == TokenRole::Admin
    }
}

/// The set of accepted tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<(Secret, Identity)>,
    /// Where a generated admin token was written, if one was.
    pub generated_at: Option<PathBuf>,
}

impl Tokens {
    /// Builds the token set from config, generating (or reusing) the admin token file when
    /// no token is configured at all.
    pub fn from_config(config: &Config) -> std::io::Result<Self> {
        let mut tokens = Tokens::default();
        if let Some(admin) = &config.admin_token {
            tokens.add(admin.clone(), "admin", TokenRole::Admin);
        }
        for t in &config.tokens {
            tokens.add(t.token.clone(), &t.identity, t.role);
        }
        if tokens.entries.is_empty() {
            let path = config.data_dir.join(ADMIN_TOKEN_FILE);
            let token = load_or_generate(&path)?;
            tokens.add(token, "admin", TokenRole::Admin);
            tokens.generated_at = Some(path);
        }
        Ok(tokens)
    }

    fn add(&mut self, token: Secret, identity: &str, role: TokenRole) {
        self.entries.push((
            token,
            Identity {
                name: identity.to_owned(),
                role,
            },
        ));
    }

    /// The identity of a bearer token, compared in constant time.
    pub fn authenticate(&self, presented: &str) -> Option<Identity> {
        let mut found = None;
        for (secret, identity) in &self.entries {
            if bool::from(secret.expose().as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(identity.clone());
            }
        }
        found
    }
}

fn load_or_generate(path: &Path) -> std::io::Result<Secret> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let token = existing.trim().to_owned();
        if !token.is_empty() {
            return Ok(Secret(token));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    tracing::warn!(
        path = %path.display(),
        "no REST token configured: generated an admin token and stored it in this file"
    );
    Ok(Secret(token))
}
