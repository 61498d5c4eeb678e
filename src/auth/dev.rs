//! Dev tokens: HS256 tokens minted by `parloir token`, the demo page's
//! sign-in, tests and the load generator, and the dev secret that a node
//! with no JWT settings generates once and keeps in its data directory.

use std::path::Path;

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::{KeyError, Role};
use crate::domain::UserId;

/// Claims of a dev token minted by `parloir token`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DevClaims<'a> {
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    iat: i64,
    exp: i64,
}

/// Signs an HS256 token (dev sign-in, tests and the load generator).
pub fn mint_hs256(
    secret: &SecretString,
    user: &UserId,
    role: Option<Role>,
    name: Option<&str>,
    email: Option<&str>,
    ttl: chrono::Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = Utc::now();
    let claims = DevClaims {
        user_id: user.as_str(),
        role,
        name,
        email,
        iat: now.timestamp(),
        exp: (now + ttl).timestamp(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
}

/// Loads the dev secret from `path`, creating it (random, 0600) on first use
/// so that restarts keep issued tokens valid.
pub async fn load_or_create_dev_secret(path: &Path) -> Result<SecretString, KeyError> {
    let err = |source| KeyError::DevSecret {
        path: path.display().to_string(),
        source,
    };
    match tokio::fs::read_to_string(path).await {
        Ok(s) if s.trim().len() >= 32 => return Ok(SecretString::from(s.trim().to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(err)?;
    }
    let secret = {
        use base64::Engine as _;
        let bytes: [u8; 32] = rand::random();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    write_private(path, &secret).await.map_err(err)?;
    Ok(SecretString::from(secret))
}

async fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    use tokio::io::AsyncWriteExt as _;
    let mut f = options.open(path).await?;
    f.write_all(contents.as_bytes()).await?;
    f.flush().await
}
