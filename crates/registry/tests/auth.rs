//! Docker Hub semantics with `--auth`: accounts, namespaces, private
//! repositories, Basic auth and the token flow.

mod common;

use berth_registry::auth::{Access, Claims, TokenKey};
use common::*;
use reqwest::StatusCode;

/// Asks the token endpoint for `scope`, as `user` (or anonymously).
async fn token(reg: &TestRegistry, user: Option<&str>, scope: &str) -> (String, serde_json::Value) {
    let mut req = reg.client.get(reg.url("/token")).query(&[
        ("service", SERVICE),
        ("scope", scope),
        ("client_id", "docker"),
    ]);
    if let Some(u) = user {
        req = req.basic_auth(u, Some(format!("{u}-pw")));
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    let t = body["token"].as_str().unwrap().to_owned();
    let payload = t.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    (t, serde_json::from_slice(&claims).unwrap())
}

/// Starts an upload with a bearer token; returns the response.
async fn start_upload(reg: &TestRegistry, repo: &str, bearer: &str) -> reqwest::Response {
    reg.client
        .post(reg.url(&format!("/v2/{repo}/blobs/uploads/")))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn base_endpoint_challenges_anonymous_callers() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        let res = reg.client.get(reg.url("/v2/")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let challenge = header(&res, "www-authenticate");
        assert_eq!(
            challenge,
            format!(r#"Bearer realm="http://{}/token",service="{SERVICE}""#, reg.addr)
        );
        let res = reg.client.get(reg.url("/v2/")).basic_auth("alice", Some("alice-pw")).send();
        assert_eq!(res.await.unwrap().status(), StatusCode::OK);
        let res = reg.client.get(reg.url("/v2/")).basic_auth("alice", Some("nope")).send();
        assert_error(res.await.unwrap(), StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        let (t, _) = token(&reg, Some("alice"), "").await;
        let res = reg.client.get(reg.url("/v2/")).bearer_auth(&t).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn token_grants_the_intersection_of_asked_and_allowed() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        let (_, c) = token(&reg, Some("alice"), "repository:alice/app:pull,push").await;
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["aud"], SERVICE);
        assert_eq!(c["access"][0]["name"], "alice/app");
        assert_eq!(c["access"][0]["actions"], serde_json::json!(["pull", "push"]));
        // Someone else's namespace: pull only. Official images: pull only.
        let (_, c) = token(&reg, Some("alice"), "repository:bob/app:pull,push").await;
        assert_eq!(c["access"][0]["actions"], serde_json::json!(["pull"]));
        let (_, c) = token(&reg, Some("alice"), "repository:mynanoserver:push,pull").await;
        assert_eq!(c["access"][0]["actions"], serde_json::json!(["pull"]));
        // Anonymous: pull of public repositories.
        let (_, c) = token(&reg, None, "repository:alice/app:pull,push").await;
        assert_eq!(c["sub"], "");
        assert_eq!(c["access"][0]["actions"], serde_json::json!(["pull"]));
        // Organisation members and administrators.
        let (_, c) = token(&reg, Some("bob"), "repository:acme/tool:pull,push").await;
        assert_eq!(c["access"][0]["actions"], serde_json::json!(["pull", "push"]));
        let (_, c) = token(&reg, Some("alice"), "repository:acme/tool:pull,push").await;
        assert_eq!(c["access"][0]["actions"], serde_json::json!(["pull"]));
        let (_, c) = token(&reg, Some("admin"), "repository:library/busybox:*").await;
        assert_eq!(c["access"][0]["actions"], serde_json::json!(["pull", "push", "delete"]));
        // A wrong password gets no token at all.
        let res = reg
            .client
            .get(reg.url("/token"))
            .query(&[("scope", "repository:alice/app:pull")])
            .basic_auth("alice", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_error(res, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
}

#[tokio::test]
async fn the_workshop_push_is_denied_until_namespaced() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        // `docker push mynanoserver:dev`, anonymous then logged in: denied.
        for user in [None, Some("alice")] {
            let (t, _) = token(&reg, user, "repository:mynanoserver:push,pull").await;
            let res = start_upload(&reg, "mynanoserver", &t).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            let challenge = header(&res, "www-authenticate");
            assert!(challenge.contains(r#"error="insufficient_scope""#), "{challenge}");
            assert!(
                challenge.contains(r#"scope="repository:mynanoserver:pull,push""#),
                "{challenge}"
            );
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(body["errors"][0]["code"], "DENIED");
            assert_eq!(body["errors"][0]["message"], "requested access to the resource is denied");
        }
        // Without any token the client is told where to get one.
        let res = reg.client.post(reg.url("/v2/mynanoserver/blobs/uploads/")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&res, "www-authenticate").starts_with("Bearer realm="));
        // `alice/mynanoserver:dev` pushes, and anyone can pull it.
        let (t, _) = token(&reg, Some("alice"), "repository:alice/mynanoserver:push,pull").await;
        let res = start_upload(&reg, "alice/mynanoserver", &t).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let data = b"nanoserver layer";
        let digest = berth_reference::Digest::sha256_of(data);
        let res = reg
            .client
            .put(format!("{}?digest={digest}", reg.location(&res)))
            .bearer_auth(&t)
            .body(&data[..])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let (anon, _) = token(&reg, None, "repository:alice/mynanoserver:pull").await;
        let res = reg
            .client
            .get(reg.url(&format!("/v2/alice/mynanoserver/blobs/{digest}")))
            .bearer_auth(&anon)
            .send()
            .await
            .unwrap();
        assert_eq!(res.bytes().await.unwrap().as_ref(), data);
        // An administrator may push official images.
        let (t, _) = token(&reg, Some("admin"), "repository:mynanoserver:push,pull").await;
        assert_eq!(start_upload(&reg, "mynanoserver", &t).await.status(), StatusCode::ACCEPTED);
    }
}

#[tokio::test]
async fn basic_auth_on_requests() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        let post = |repo: &str, user: &str, pw: &str| {
            reg.client
                .post(reg.url(&format!("/v2/{repo}/blobs/uploads/")))
                .basic_auth(user, Some(pw))
                .send()
        };
        assert_eq!(
            post("alice/x", "alice", "alice-pw").await.unwrap().status(),
            StatusCode::ACCEPTED
        );
        assert_error(
            post("bob/x", "alice", "alice-pw").await.unwrap(),
            StatusCode::FORBIDDEN,
            "DENIED",
        )
        .await;
        assert_error(
            post("alice/x", "alice", "bad").await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        )
        .await;
    }
}

#[tokio::test]
async fn private_repositories_are_invisible_to_others() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        // alice pushes with Basic auth, then makes the repository private.
        let push = |repo: &'static str| {
            reg.client
                .post(reg.url(&format!(
                    "/v2/{repo}/blobs/uploads/?digest={}",
                    berth_reference::Digest::sha256_of(b"x")
                )))
                .basic_auth("alice", Some("alice-pw"))
                .body(&b"x"[..])
                .send()
        };
        assert_eq!(push("alice/secret").await.unwrap().status(), StatusCode::CREATED);
        assert_eq!(push("alice/open").await.unwrap().status(), StatusCode::CREATED);
        let meta = reg.meta.clone();
        meta.set_repository_private("alice/secret", true).await.unwrap();

        let url = reg.url("/v2/alice/secret/tags/list");
        let res = reg.client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let (bob, c) = token(&reg, Some("bob"), "repository:alice/secret:pull").await;
        assert_eq!(c["access"], serde_json::json!([]));
        let res = reg.client.get(&url).bearer_auth(&bob).send().await.unwrap();
        assert_error(res, StatusCode::UNAUTHORIZED, "DENIED").await;
        let (alice, _) = token(&reg, Some("alice"), "repository:alice/secret:pull").await;
        let res = reg.client.get(&url).bearer_auth(&alice).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);

        // The catalog shows it only to its owner (and administrators).
        let list = |user: &'static str| {
            reg.client
                .get(reg.url("/v2/_catalog"))
                .basic_auth(user, Some(format!("{user}-pw")))
                .send()
        };
        let seen: serde_json::Value = list("bob").await.unwrap().json().await.unwrap();
        assert_eq!(seen["repositories"], serde_json::json!(["alice/open"]));
        let seen: serde_json::Value = list("alice").await.unwrap().json().await.unwrap();
        assert_eq!(seen["repositories"], serde_json::json!(["alice/open", "alice/secret"]));
        let seen: serde_json::Value = list("admin").await.unwrap().json().await.unwrap();
        assert_eq!(seen["repositories"].as_array().unwrap().len(), 2);
    }
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_refused() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let claims = |exp: u64, aud: &str| Claims {
            iss: "berth-registry".into(),
            sub: "alice".into(),
            aud: aud.into(),
            exp,
            nbf: now - 10,
            iat: now - 10,
            jti: "t".into(),
            access: vec![Access {
                kind: "repository".into(),
                name: "alice/app".into(),
                actions: vec!["pull".into(), "push".into()],
            }],
        };
        let real_key = TokenKey::load_or_create(&reg.root().join("token.key")).unwrap();
        let url = reg.url("/v2/alice/app/blobs/uploads/");
        let try_token = |t: String| reg.client.post(&url).bearer_auth(t).send();
        // The real key, valid claims: accepted (proves the others fail for their flaw).
        let ok = try_token(real_key.sign(&claims(now + 60, SERVICE))).await.unwrap();
        assert_eq!(ok.status(), StatusCode::ACCEPTED);
        let expired = try_token(real_key.sign(&claims(now - 1, SERVICE))).await.unwrap();
        assert_error(expired, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        let foreign = try_token(real_key.sign(&claims(now + 60, "other-service"))).await.unwrap();
        assert_error(foreign, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        let forged = TokenKey::from_bytes([42; 32]).sign(&claims(now + 60, SERVICE));
        let res = try_token(forged).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&res, "www-authenticate").starts_with("Bearer realm="));
        // A valid token for another repository does not open this one.
        let (t, _) = token(&reg, Some("alice"), "repository:alice/other:pull,push").await;
        let res = try_token(t).await.unwrap();
        assert_error(res, StatusCode::UNAUTHORIZED, "DENIED").await;
    }
}

#[tokio::test]
async fn wrong_passwords_are_throttled() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        let attempt =
            |pw: &'static str| reg.client.get(reg.url("/v2/")).basic_auth("bob", Some(pw)).send();
        for _ in 0..5 {
            assert_eq!(attempt("guess").await.unwrap().status(), StatusCode::UNAUTHORIZED);
        }
        let res = attempt("guess").await.unwrap();
        assert_eq!(header(&res, "retry-after"), "1", "the first lockout lasts a second");
        assert_error(res, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
        // Even the right password waits out the lockout; other users are unaffected.
        assert_eq!(attempt("bob-pw").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
        let res = reg.client.get(reg.url("/v2/")).basic_auth("alice", Some("alice-pw")).send();
        assert_eq!(res.await.unwrap().status(), StatusCode::OK);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        assert_eq!(attempt("bob-pw").await.unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn oauth2_password_grant() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        let form = |pw: &str| {
            format!(
                "grant_type=password&username=alice&password={pw}&service={SERVICE}&client_id=containerd&scope=repository%3Aalice%2Fapp%3Apull%2Cpush"
            )
        };
        let res = reg
            .client
            .post(reg.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form("alice-pw"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: serde_json::Value = res.json().await.unwrap();
        let t = body["access_token"].as_str().unwrap();
        let res = start_upload(&reg, "alice/app", t).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let res = reg.client.post(reg.url("/token")).body(form("wrong")).send().await.unwrap();
        assert_error(res, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        // Without access_type=offline, no refresh token.
        assert!(body.get("refresh_token").is_none(), "{body}");
        let res = reg
            .client
            .post(reg.url("/token"))
            .body("grant_type=client_credentials&client_id=x")
            .send()
            .await
            .unwrap();
        assert_error(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED").await;
    }
}

/// `POST /token` form fields, URL-encoded.
async fn post_token(reg: &TestRegistry, fields: &[(&str, &str)]) -> reqwest::Response {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| s.replace('%', "%25").replace(':', "%3A").replace('/', "%2F");
            format!("{}={}", enc(k), enc(v).replace(' ', "+").replace(',', "%2C"))
        })
        .collect();
    reg.client
        .post(reg.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await
        .unwrap()
}

/// Trades a refresh token for an access token to `scope`.
async fn refresh(reg: &TestRegistry, refresh_token: &str, scope: &str) -> reqwest::Response {
    post_token(
        reg,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("service", SERVICE),
            ("client_id", "docker"),
            ("scope", scope),
        ],
    )
    .await
}

#[tokio::test]
async fn refresh_tokens_stand_in_for_the_password() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        // What `docker login` asks: Basic credentials and offline_token=true.
        let login = |user: &'static str, offline: bool| {
            let mut q = vec![("service", SERVICE), ("client_id", "docker"), ("account", user)];
            if offline {
                q.push(("offline_token", "true"));
            }
            reg.client
                .get(reg.url("/token"))
                .query(&q)
                .basic_auth(user, Some(format!("{user}-pw")))
                .send()
        };
        let body: serde_json::Value = login("alice", true).await.unwrap().json().await.unwrap();
        let alice_refresh = body["refresh_token"].as_str().expect("a refresh token").to_owned();
        let body: serde_json::Value = login("alice", false).await.unwrap().json().await.unwrap();
        assert!(body.get("refresh_token").is_none(), "{body}");
        // Anonymous callers get none.
        let res = reg.client.get(reg.url("/token")).query(&[("offline_token", "true")]).send();
        let body: serde_json::Value = res.await.unwrap().json().await.unwrap();
        assert!(body.get("refresh_token").is_none(), "{body}");

        // The refresh token buys access tokens without the password.
        let res = refresh(&reg, &alice_refresh, "repository:alice/app:pull,push").await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: serde_json::Value = res.json().await.unwrap();
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(start_upload(&reg, "alice/app", access).await.status(), StatusCode::ACCEPTED);
        // ... for what alice may do, no more.
        let res = refresh(&reg, &alice_refresh, "repository:bob/app:pull,push").await;
        let body: serde_json::Value = res.json().await.unwrap();
        let access = body["access_token"].as_str().unwrap();
        let res = start_upload(&reg, "bob/app", access).await;
        assert_error(res, StatusCode::UNAUTHORIZED, "DENIED").await;

        // The password grant with access_type=offline also hands one out.
        let res = post_token(
            &reg,
            &[
                ("grant_type", "password"),
                ("username", "bob"),
                ("password", "bob-pw"),
                ("access_type", "offline"),
                ("scope", "repository:bob/app:push"),
            ],
        )
        .await;
        let body: serde_json::Value = res.json().await.unwrap();
        let bob_refresh = body["refresh_token"].as_str().expect("a refresh token").to_owned();
        assert_eq!(
            refresh(&reg, &bob_refresh, "repository:bob/app:push").await.status(),
            StatusCode::OK
        );

        // Neither kind of token passes for the other.
        let res = reg.client.get(reg.url("/v2/")).bearer_auth(&alice_refresh).send().await;
        assert_error(res.unwrap(), StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        let (access, _) = token(&reg, Some("alice"), "repository:alice/app:pull").await;
        let res = refresh(&reg, &access, "repository:alice/app:pull").await;
        assert_error(res, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        let res = post_token(&reg, &[("grant_type", "refresh_token")]).await;
        assert_error(res, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
}

#[tokio::test]
async fn forged_expired_and_revoked_refresh_tokens_are_refused() {
    for b in all_backends() {
        use berth_registry::auth::RefreshClaims;
        let reg = start_auth(b).await;
        let meta = reg.meta.clone();
        let key = TokenKey::load_or_create(&reg.root().join("token.key")).unwrap();
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let alice_hash = meta.user("alice").await.unwrap().unwrap().password_hash;
        let bob_hash = meta.user("bob").await.unwrap().unwrap().password_hash;
        let claims = |sub: &str, exp: u64, hash: &str| RefreshClaims {
            iss: "berth-registry".into(),
            sub: sub.into(),
            aud: SERVICE.into(),
            exp,
            iat: now - 10,
            jti: "r".into(),
            fp: key.fingerprint(hash),
            pat: None,
        };
        let scope = "repository:alice/app:pull,push";
        // Well made: accepted (so each refusal below is for its one flaw).
        let good = key.sign_refresh(&claims("alice", now + 60, &alice_hash));
        assert_eq!(refresh(&reg, &good, scope).await.status(), StatusCode::OK);
        let expired = key.sign_refresh(&claims("alice", now - 1, &alice_hash));
        assert_error(
            refresh(&reg, &expired, scope).await,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        )
        .await;
        let forged = TokenKey::from_bytes([42; 32]).sign_refresh(&claims("alice", now + 60, ""));
        assert_error(refresh(&reg, &forged, scope).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
            .await;
        // Claims re-signed by nobody: alice's token edited to say bob.
        let parts: Vec<&str> = good.split('.').collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let edited = b64.encode(serde_json::to_vec(&claims("bob", now + 60, &bob_hash)).unwrap());
        let tampered = format!("{}.{edited}.{}", parts[0], parts[2]);
        assert_error(
            refresh(&reg, &tampered, scope).await,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        )
        .await;
        // Bound to the user: alice's name with bob's account fingerprint.
        let wrong_user = key.sign_refresh(&claims("alice", now + 60, &bob_hash));
        assert_error(
            refresh(&reg, &wrong_user, scope).await,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        )
        .await;
        let unknown = key.sign_refresh(&claims("mallory", now + 60, &alice_hash));
        assert_error(
            refresh(&reg, &unknown, scope).await,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        )
        .await;

        // A password change revokes alice's token, and her old password at once.
        let res = reg.client.get(reg.url("/v2/")).basic_auth("alice", Some("alice-pw")).send();
        assert_eq!(res.await.unwrap().status(), StatusCode::OK);
        let new_hash = berth_registry::auth::password::hash("new-pw");
        assert!(meta.set_password("alice", &new_hash).await.unwrap());
        assert_error(refresh(&reg, &good, scope).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
            .await;
        let res = reg.client.get(reg.url("/v2/")).basic_auth("alice", Some("alice-pw")).send();
        assert_error(res.await.unwrap(), StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        let res = reg.client.get(reg.url("/v2/")).basic_auth("alice", Some("new-pw")).send();
        assert_eq!(res.await.unwrap().status(), StatusCode::OK);

        // Removing bob revokes his, even if an account of that name comes back.
        let bobs = key.sign_refresh(&claims("bob", now + 60, &bob_hash));
        let bob_scope = "repository:bob/app:pull";
        assert_eq!(refresh(&reg, &bobs, bob_scope).await.status(), StatusCode::OK);
        assert!(meta.delete_user("bob").await.unwrap());
        assert_error(
            refresh(&reg, &bobs, bob_scope).await,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        )
        .await;
        let again = berth_registry::metadata::UserRecord {
            name: "bob".into(),
            password_hash: berth_registry::auth::password::hash("bob-pw"),
            admin: false,
        };
        assert!(meta.create_user(&again).await.unwrap());
        assert_error(
            refresh(&reg, &bobs, bob_scope).await,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        )
        .await;
    }
}

#[tokio::test]
async fn mount_without_from_only_from_repositories_the_caller_may_pull() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        let meta = reg.meta.clone();
        let push = |repo: &str, data: &'static [u8]| {
            let digest = berth_reference::Digest::sha256_of(data);
            reg.client
                .post(reg.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
                .basic_auth("alice", Some("alice-pw"))
                .body(data)
                .send()
        };
        let secret = berth_reference::Digest::sha256_of(b"only in a private repository");
        let shared = berth_reference::Digest::sha256_of(b"also in a public repository");
        let res = push("alice/secret", b"only in a private repository").await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let res = push("alice/secret", b"also in a public repository").await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let res = push("alice/open", b"also in a public repository").await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        meta.set_repository_private("alice/secret", true).await.unwrap();
        let mount = |user: &'static str, repo: &'static str, d: &berth_reference::Digest| {
            reg.client
                .post(reg.url(&format!("/v2/{repo}/blobs/uploads/?mount={d}")))
                .basic_auth(user, Some(format!("{user}-pw")))
                .send()
        };

        // bob cannot read alice/secret: exactly the answer for an unknown blob.
        let unknown = berth_reference::Digest::sha256_of(b"nowhere");
        let res = mount("bob", "bob/app", &secret).await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        assert!(header(&res, "location").contains("/v2/bob/app/blobs/uploads/"));
        assert_eq!(mount("bob", "bob/app", &unknown).await.unwrap().status(), StatusCode::ACCEPTED);
        let res = reg.client.head(reg.url(&format!("/v2/bob/app/blobs/{secret}")));
        let res = res.basic_auth("bob", Some("bob-pw")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);

        // A blob also in a public repository mounts, for bob too.
        let res = mount("bob", "bob/app", &shared).await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(header(&res, "docker-content-digest"), shared.as_str());
        assert_eq!(meta.blob_link("bob/app", &shared).await.unwrap(), Some(27));
        assert_eq!(meta.blob_link("bob/app", &secret).await.unwrap(), None);

        // alice may read her private repository: her mount (into another
        // private one, so bob still cannot reach the blob) succeeds.
        meta.set_repository_private("alice/other", true).await.unwrap();
        assert_eq!(
            mount("alice", "alice/other", &secret).await.unwrap().status(),
            StatusCode::CREATED
        );

        // The same with tokens issued for the target only.
        let (bob, _) = token(&reg, Some("bob"), "repository:bob/tok:pull,push").await;
        let url =
            |d: &berth_reference::Digest| reg.url(&format!("/v2/bob/tok/blobs/uploads/?mount={d}"));
        let res = reg.client.post(url(&secret)).bearer_auth(&bob).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let res = reg.client.post(url(&shared)).bearer_auth(&bob).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let (alice, _) = token(&reg, Some("alice"), "repository:alice/tok:pull,push").await;
        let res = reg
            .client
            .post(reg.url(&format!("/v2/alice/tok/blobs/uploads/?mount={secret}")))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }
}
