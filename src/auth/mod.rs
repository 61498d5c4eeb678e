//! JWT verification for both front doors, and dev-token minting.
//! Algorithms are pinned by configuration; `exp` is required.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::config::{JwtConfig, JwtKey};
use crate::domain::UserId;

mod dev;

pub use dev::{load_or_create_dev_secret, mint_hs256};

/// The authenticated caller, built from verified token claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub role: Option<Role>,
    pub name: Option<String>,
    pub email: Option<String>,
    /// When the token stops being accepted: its `exp` plus the configured
    /// leeway, as at the handshake (a socket is disconnected then).
    pub expires_at: DateTime<Utc>,
}

impl User {
    /// What others see as this user's name (PROTOCOL.md §4 `userName`).
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.id.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Salon,
}

/// Why a token was refused. `Display` is exactly the `connect_error`
/// message of PROTOCOL.md §1, so it never says more than the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unauthorized")]
    Unauthorized,
    #[error("token_expired")]
    Expired,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Claims {
    user_id: Option<String>,
    sub: Option<String>,
    role: Option<String>,
    email: Option<String>,
    name: Option<String>,
    exp: i64,
}

/// Verifies tokens with the one configured key and algorithm.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    leeway: chrono::Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JWT_PUBLIC_KEY_FILE: not a valid {algorithm:?} PEM public key")]
    BadPublicKey { algorithm: Algorithm },
    #[error("cannot read or create the dev JWT secret at {path}")]
    DevSecret {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the dev JWT secret must be loaded before building an Authenticator")]
    DevSecretNotLoaded,
}

impl Authenticator {
    pub fn new(config: &JwtConfig) -> Result<Self, KeyError> {
        let (key, algorithm) = match &config.key {
            JwtKey::Hs256 { secret, .. } => (
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                Algorithm::HS256,
            ),
            JwtKey::PublicKey { algorithm, pem } => {
                let key = match algorithm {
                    Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
                    _ => DecodingKey::from_rsa_pem(pem),
                }
                .map_err(|_| KeyError::BadPublicKey {
                    algorithm: *algorithm,
                })?;
                (key, *algorithm)
            }
            JwtKey::DevGenerated { .. } => return Err(KeyError::DevSecretNotLoaded),
        };
        // `Validation::new` pins `algorithms` to exactly this one, so `alg:
        // none` and any other algorithm are refused before the signature check.
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway_secs;
        // A token not valid yet is refused like an expired one would be.
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        validation.validate_aud = false;
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &config.audience {
            validation.set_audience(&[aud]);
            validation.validate_aud = true;
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let leeway = i64::try_from(config.leeway_secs)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .unwrap_or(chrono::Duration::MAX);
        Ok(Self {
            key,
            validation,
            leeway,
        })
    }

    /// Verifies a raw token and returns the caller.
    pub fn verify(&self, token: &str) -> Result<User, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Unauthorized,
            },
        )?;
        let claims = data.claims;
        let raw_id = claims
            .user_id
            .or(claims.sub)
            .ok_or(AuthError::Unauthorized)?;
        let id = UserId::parse("userId", &raw_id).map_err(|_| AuthError::Unauthorized)?;
        let role = match claims.role.as_deref() {
            None => None,
            Some("client") => Some(Role::Client),
            Some("salon") => Some(Role::Salon),
            Some(_) => return Err(AuthError::Unauthorized),
        };
        let expires_at = DateTime::from_timestamp(claims.exp, 0)
            .and_then(|exp| exp.checked_add_signed(self.leeway))
            .ok_or(AuthError::Unauthorized)?;
        // Shown to others and kept in shared state: a name or address that
        // is not plain text is ignored (the user id stands in for the name).
        let printable = |s: &String| !s.chars().any(char::is_control);
        let name = claims
            .name
            .filter(|n| !n.trim().is_empty() && n.chars().count() <= 128 && printable(n));
        let email = claims
            .email
            .filter(|e| e.chars().count() <= 254 && printable(e));
        Ok(User {
            id,
            role,
            name,
            email,
            expires_at,
        })
    }
}

/// Extracts the token from an `Authorization: Bearer …` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use secrecy::SecretString;

    use super::*;
    use crate::config::JwtConfig;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn hs_config() -> JwtConfig {
        JwtConfig {
            key: JwtKey::Hs256 {
                secret: SecretString::from(SECRET.to_owned()),
                generated: false,
            },
            issuer: None,
            audience: None,
            leeway_secs: 0,
        }
    }

    fn sign(claims: serde_json::Value, alg: Algorithm, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn future() -> i64 {
        Utc::now().timestamp() + 600
    }

    #[test]
    fn valid_token_yields_the_user() {
        let auth = Authenticator::new(&hs_config()).unwrap();
        let t = sign(
            serde_json::json!({"userId": "alice", "role": "client", "name": "Alice", "exp": future()}),
            Algorithm::HS256,
            SECRET,
        );
        let u = auth.verify(&t).unwrap();
        assert_eq!(u.id.as_str(), "alice");
        assert_eq!(u.role, Some(Role::Client));
        assert_eq!(u.display_name(), "Alice");
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let auth = Authenticator::new(&hs_config()).unwrap();
        let now = Utc::now().timestamp();
        let early = sign(
            serde_json::json!({"userId": "dave", "nbf": now + 300, "exp": future()}),
            Algorithm::HS256,
            SECRET,
        );
        assert_eq!(auth.verify(&early).unwrap_err(), AuthError::Unauthorized);
        let ripe = sign(
            serde_json::json!({"userId": "dave", "nbf": now - 5, "exp": future()}),
            Algorithm::HS256,
            SECRET,
        );
        assert!(auth.verify(&ripe).is_ok());
    }

    #[test]
    fn the_leeway_that_admits_a_token_also_delays_its_expiry() {
        let config = JwtConfig {
            leeway_secs: 60,
            ..hs_config()
        };
        let auth = Authenticator::new(&config).unwrap();
        let exp = Utc::now().timestamp() - 30;
        let t = sign(
            serde_json::json!({"userId": "erin", "exp": exp}),
            Algorithm::HS256,
            SECRET,
        );
        let user = auth.verify(&t).expect("within the leeway");
        assert_eq!(user.expires_at.timestamp(), exp + 60);
    }

    #[test]
    fn a_name_or_email_that_is_not_plain_text_is_ignored() {
        let auth = Authenticator::new(&hs_config()).unwrap();
        let t = sign(
            serde_json::json!({"userId": "carol", "name": "Ca\u{0}rol", "email": "c\u{0}@x.example", "exp": future()}),
            Algorithm::HS256,
            SECRET,
        );
        let u = auth.verify(&t).unwrap();
        assert_eq!(u.display_name(), "carol", "the id stands in for the name");
        assert_eq!(u.email, None);
    }

    #[test]
    fn sub_is_used_when_user_id_is_absent() {
        let auth = Authenticator::new(&hs_config()).unwrap();
        let t = sign(
            serde_json::json!({"sub": "bob", "exp": future()}),
            Algorithm::HS256,
            SECRET,
        );
        assert_eq!(auth.verify(&t).unwrap().display_name(), "bob");
    }

    #[test]
    fn refusals_say_only_unauthorized_or_token_expired() {
        let auth = Authenticator::new(&hs_config()).unwrap();
        let forged = sign(
            serde_json::json!({"userId": "a", "exp": future()}),
            Algorithm::HS256,
            "another-secret-another-secret-xx",
        );
        assert_eq!(auth.verify(&forged), Err(AuthError::Unauthorized));
        let other_alg = sign(
            serde_json::json!({"userId": "a", "exp": future()}),
            Algorithm::HS512,
            SECRET,
        );
        assert_eq!(auth.verify(&other_alg), Err(AuthError::Unauthorized));
        let no_exp = sign(serde_json::json!({"userId": "a"}), Algorithm::HS256, SECRET);
        assert_eq!(auth.verify(&no_exp), Err(AuthError::Unauthorized));
        let bad_role = sign(
            serde_json::json!({"userId": "a", "role": "admin", "exp": future()}),
            Algorithm::HS256,
            SECRET,
        );
        assert_eq!(auth.verify(&bad_role), Err(AuthError::Unauthorized));
        let expired = sign(
            serde_json::json!({"userId": "a", "exp": Utc::now().timestamp() - 5}),
            Algorithm::HS256,
            SECRET,
        );
        assert_eq!(auth.verify(&expired), Err(AuthError::Expired));
        // alg: none, unsigned
        use base64::Engine as _;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let none = format!(
            "{}.{}.",
            b64(serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(serde_json::json!({"userId": "a", "exp": future()}))
        );
        assert_eq!(auth.verify(&none), Err(AuthError::Unauthorized));
        assert_eq!(auth.verify("garbage"), Err(AuthError::Unauthorized));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let auth = Authenticator::new(&JwtConfig {
            issuer: Some("idp".into()),
            audience: Some("parloir".into()),
            ..hs_config()
        })
        .unwrap();
        let good = sign(
            serde_json::json!({"userId": "a", "iss": "idp", "aud": "parloir", "exp": future()}),
            Algorithm::HS256,
            SECRET,
        );
        assert!(auth.verify(&good).is_ok());
        let wrong_iss = sign(
            serde_json::json!({"userId": "a", "iss": "evil", "aud": "parloir", "exp": future()}),
            Algorithm::HS256,
            SECRET,
        );
        assert_eq!(auth.verify(&wrong_iss), Err(AuthError::Unauthorized));
        let no_aud = sign(
            serde_json::json!({"userId": "a", "iss": "idp", "exp": future()}),
            Algorithm::HS256,
            SECRET,
        );
        assert_eq!(auth.verify(&no_aud), Err(AuthError::Unauthorized));
    }

    #[test]
    fn minted_dev_tokens_verify() {
        let auth = Authenticator::new(&hs_config()).unwrap();
        let user = UserId::parse("u", "alice").unwrap();
        let t = mint_hs256(
            &SecretString::from(SECRET.to_owned()),
            &user,
            Some(Role::Salon),
            Some("Alice"),
            None,
            chrono::Duration::hours(1),
        )
        .unwrap();
        assert_eq!(auth.verify(&t).unwrap().role, Some(Role::Salon));
    }

    #[test]
    fn bearer_header_is_parsed() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[tokio::test]
    async fn dev_secret_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dev-jwt-secret");
        let a = load_or_create_dev_secret(&path).await.unwrap();
        let b = load_or_create_dev_secret(&path).await.unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
    }
}
