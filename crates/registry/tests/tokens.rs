//! Personal access tokens: a password stand-in limited to a scope,
//! revocable, with a last-used time.

mod common;

use berth_registry::auth::pat::TokenScope;
use common::*;
use reqwest::StatusCode;

async fn make_token(reg: &TestRegistry, user: &str, scope: TokenScope) -> (String, String) {
    let meta =
        berth_registry::metadata::SqliteMetadata::open(&reg.root().join("metadata.db")).unwrap();
    let (record, text) =
        berth_registry::auth::create_access_token(&meta, user, "test", scope).await.unwrap();
    (record.id, text)
}

fn basic(c: reqwest::RequestBuilder, user: &str, password: &str) -> reqwest::RequestBuilder {
    c.basic_auth(user, Some(password))
}

#[tokio::test]
async fn tokens_stand_in_for_the_password_within_their_scope() {
    for &b in BACKENDS {
        let mut reg = start_auth(b).await;
        let (read_id, read) = make_token(&reg, "alice", TokenScope::Read).await;
        let (_, write) = make_token(&reg, "alice", TokenScope::Write).await;
        let (_, delete) = make_token(&reg, "alice", TokenScope::Delete).await;
        let c = reqwest::Client::new();
        // Push with the write token (Basic on every request).
        {
            use base64::Engine;
            let creds = base64::engine::general_purpose::STANDARD.encode(format!("alice:{write}"));
            let mut h = reqwest::header::HeaderMap::new();
            h.insert("authorization", format!("Basic {creds}").parse().unwrap());
            reg.client = reqwest::Client::builder().default_headers(h).build().unwrap();
        }
        let (_, digest) = reg.push_image("alice/app", "v1", "tok").await;
        let url = reg.url("/v2/alice/app/manifests/v1");
        assert_eq!(
            basic(c.get(&url), "alice", &read).send().await.unwrap().status(),
            StatusCode::OK
        );
        // A read token cannot push; a write token cannot delete.
        let up = reg.url("/v2/alice/app/blobs/uploads/");
        let res = basic(c.post(&up), "alice", &read).send().await.unwrap();
        assert_error(res, StatusCode::FORBIDDEN, "DENIED").await;
        let del = reg.url(&format!("/v2/alice/app/manifests/{digest}"));
        let res = basic(c.delete(&del), "alice", &write).send().await.unwrap();
        assert_error(res, StatusCode::FORBIDDEN, "DENIED").await;
        // A token only works with its own user's name.
        let res = basic(c.get(&url), "bob", &read).send().await.unwrap();
        assert_error(res, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        // The token flow grants no more than the token's scope.
        let res = basic(c.get(reg.url("/token")), "alice", &read)
            .query(&[("service", SERVICE), ("scope", "repository:alice/app:pull,push,delete")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: serde_json::Value = res.json().await.unwrap();
        let t = body["token"].as_str().unwrap();
        use base64::Engine;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').nth(1).unwrap())
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
        // `docker login` with a token: the refresh token it keeps keeps the
        // token's scope and dies with it.
        let res = c
            .post(reg.url("/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", &read),
                ("access_type", "offline"),
                ("service", SERVICE),
                ("client_id", "docker"),
                ("scope", "repository:alice/app:pull,push"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: serde_json::Value = res.json().await.unwrap();
        let refresh = body["refresh_token"].as_str().unwrap().to_owned();
        let redeem = || {
            c.post(reg.url("/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("service", SERVICE),
                    ("client_id", "docker"),
                    ("scope", "repository:alice/app:pull,push"),
                ])
                .send()
        };
        let res = redeem().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: serde_json::Value = res.json().await.unwrap();
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body["token"].as_str().unwrap().split('.').nth(1).unwrap())
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
        // The delete token deletes.
        let res = basic(c.delete(&del), "alice", &delete).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        // Use is recorded; revoking ends the token and its refresh token.
        let meta = berth_registry::metadata::SqliteMetadata::open(&reg.root().join("metadata.db"))
            .unwrap();
        use berth_registry::metadata::prelude::*;
        let listed = meta.list_access_tokens("alice").await.unwrap();
        assert_eq!(listed.len(), 3);
        let rec = listed.iter().find(|t| t.id == read_id).unwrap();
        assert!(rec.last_used.is_some());
        assert!(!rec.hash.is_empty() && !read.contains(&rec.hash));
        assert!(meta.delete_access_token("alice", &read_id).await.unwrap());
        let res = basic(c.get(&url), "alice", &read).send().await.unwrap();
        assert_error(res, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        assert_eq!(redeem().await.unwrap().status(), StatusCode::UNAUTHORIZED);
        // Removing the user removes its tokens.
        assert!(meta.delete_user("alice").await.unwrap());
        assert!(meta.list_access_tokens("alice").await.unwrap().is_empty());
        let res = basic(c.get(reg.url("/v2/")), "alice", &write).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}
