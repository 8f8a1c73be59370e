//! Coinbase CDP API-key authentication: a JWT signed ES256 (raw `r||s`, base64url) per request,
//! header `{alg, kid = key name, nonce, typ}`, claims `{iss: "cdp", sub: key name, nbf, exp =
//! nbf + 120, uri: "METHOD host/path"}` (no `uri` for the websocket).

use super::config::CoinbaseCredentials;
use base64::Engine as _;
use p256::ecdsa::{signature::Signer, Signature};
use rand::RngCore;
use serde_json::json;

/// Lifetime of a token, seconds.
pub const TOKEN_LIFETIME: i64 = 120;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The `uri` claim for a REST call: `GET api.coinbase.com/api/v3/brokerage/accounts` (host with
/// its port when the base URL has one, path without the query).
pub fn request_uri(method: &str, rest_url: &str, path: &str) -> String {
    let host = url::Url::parse(rest_url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_default();
    format!("{method} {host}{path}")
}

/// A signed token valid from `now` (unix seconds) for [`TOKEN_LIFETIME`].
pub fn jwt(creds: &CoinbaseCredentials, uri: Option<&str>, now: i64) -> String {
    let mut nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    let header = json!({
        "alg": "ES256",
        "kid": creds.key_name,
        "nonce": hex::encode(nonce),
        "typ": "JWT",
    });
    let mut claims = json!({
        "iss": "cdp",
        "sub": creds.key_name,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME,
    });
    if let Some(u) = uri {
        claims["uri"] = json!(u);
    }
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig: Signature = creds.key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&sig.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::{signature::Verifier, VerifyingKey};

    const PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIN8FhrAA+me6WYj0McbA2wQhSWRaP/6FvBEHGa5fxCo9oAoGCCqGSM49\nAwEHoUQDQgAErsntrczwhMMgERDCYG7QelyIlkbbcMwJdQK9K+DNnfirUnSp/SjL\nawXffj0BhFpr6t0caG0dTE2aCkr3A5dvFA==\n-----END EC PRIVATE KEY-----\n";
    const PKCS8: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3wWGsAD6Z7pZiPQx\nxsDbBCFJZFo//oW8EQcZrl/EKj2hRANCAASuye2tzPCEwyAREMJgbtB6XIiWRttw\nzAl1Ar0r4M2d+KtSdKn9KMtrBd9+PQGEWmvq3RxobR1MTZoKSvcDl28U\n-----END PRIVATE KEY-----\n";

    #[test]
    fn token_has_documented_shape_and_verifies() {
        let creds = CoinbaseCredentials::new("organizations/o/apiKeys/k", PEM).unwrap();
        let uri = request_uri(
            "POST",
            "https://api.coinbase.com",
            "/api/v3/brokerage/orders",
        );
        assert_eq!(uri, "POST api.coinbase.com/api/v3/brokerage/orders");
        assert_eq!(
            request_uri("GET", "http://127.0.0.1:4000", "/x"),
            "GET 127.0.0.1:4000/x"
        );
        let t = jwt(&creds, Some(&uri), 1_700_000_000);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let dec = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        let h: serde_json::Value = serde_json::from_slice(&dec(parts[0])).unwrap();
        let c: serde_json::Value = serde_json::from_slice(&dec(parts[1])).unwrap();
        assert_eq!(h["alg"], "ES256");
        assert_eq!(h["kid"], "organizations/o/apiKeys/k");
        assert_eq!(h["nonce"].as_str().unwrap().len(), 32);
        assert_eq!(c["iss"], "cdp");
        assert_eq!(c["sub"], "organizations/o/apiKeys/k");
        assert_eq!(c["exp"].as_i64().unwrap() - c["nbf"].as_i64().unwrap(), 120);
        assert_eq!(c["uri"], uri);
        let sig = Signature::from_slice(&dec(parts[2])).unwrap();
        VerifyingKey::from(&creds.key)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        // PKCS#8 and escaped newlines are accepted too; garbage is not.
        assert!(CoinbaseCredentials::new("k", &PEM.replace('\n', "\\n")).is_ok());
        let p8 = CoinbaseCredentials::new("k", PKCS8).unwrap();
        assert_eq!(VerifyingKey::from(&p8.key), VerifyingKey::from(&creds.key));
        assert!(CoinbaseCredentials::new("k", "not a key").is_err());
        assert!(!format!("{creds:?}").contains("apiKeys"));
    }
}
