//! Docker Hub's official images with `--auth`: a one-component name is
//! `library/NAME` on every route; without accounts names stay literal.

mod common;

use berth_registry::Limits;
use common::*;
use reqwest::StatusCode;

/// A client that sends `user`'s Basic credentials on every request.
fn as_user(user: &str) -> reqwest::Client {
    use base64::Engine;
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{user}-pw"));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Basic {creds}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

async fn status(req: reqwest::RequestBuilder) -> StatusCode {
    req.send().await.unwrap().status()
}

async fn json(req: reqwest::RequestBuilder) -> serde_json::Value {
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_bare_name_is_the_official_image_on_every_route() {
    for &b in BACKENDS {
        let mut reg = start_auth(b).await;
        reg.client = as_user("admin");
        // Pushed as `busybox`, pulled as `library/busybox` and the other way round.
        let (_, d1) = reg.push_image("busybox", "musl", "one").await;
        let (_, d2) = reg.push_image("library/busybox", "glibc", "two").await;
        let c = as_user("alice");
        for (name, digest) in [("library/busybox", &d1), ("busybox", &d2)] {
            for tag in ["musl", "glibc"] {
                let url = reg.url(&format!("/v2/{name}/manifests/{tag}"));
                let res = c.get(&url).send().await.unwrap();
                assert_eq!(res.status(), StatusCode::OK, "{name}:{tag}");
                let res = c.head(&url).send().await.unwrap();
                assert_eq!(res.status(), StatusCode::OK, "HEAD {name}:{tag}");
            }
            let url = reg.url(&format!("/v2/{name}/manifests/{digest}"));
            assert_eq!(status(c.get(&url)).await, StatusCode::OK);
            let url = reg.url(&format!("/v2/{name}/referrers/{digest}"));
            assert_eq!(status(c.get(&url)).await, StatusCode::OK);
        }
        for name in ["busybox", "library/busybox"] {
            let tags = json(c.get(reg.url(&format!("/v2/{name}/tags/list")))).await;
            assert_eq!(tags["name"], "library/busybox");
            assert_eq!(tags["tags"], serde_json::json!(["glibc", "musl"]));
        }
        // One repository in the catalog and in search.
        let cat = json(c.get(reg.url("/v2/_catalog"))).await;
        assert_eq!(cat["repositories"], serde_json::json!(["library/busybox"]));
        let found = json(c.get(reg.url("/v1/search?q=busybox"))).await;
        assert_eq!(found["num_results"], 1);
        assert_eq!(found["results"][0]["name"], "busybox");
        assert_eq!(found["results"][0]["is_official"], true);
        // Only administrators push it, by either name.
        for name in ["busybox", "library/busybox"] {
            let url = reg.url(&format!("/v2/{name}/blobs/uploads/"));
            assert_eq!(status(c.post(&url)).await, StatusCode::FORBIDDEN, "{name}");
        }
        // The challenge names the repository as the client spelled it, and
        // a token asked for by that name works on it.
        let res = reqwest::Client::new()
            .post(reg.url("/v2/busybox/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        let challenge = header(&res, "www-authenticate");
        assert!(challenge.contains(r#"scope="repository:busybox:pull,push""#), "{challenge}");
        let token = json(
            as_user("admin")
                .get(reg.url("/token"))
                .query(&[("service", SERVICE), ("scope", "repository:busybox:pull,push")]),
        )
        .await;
        let bearer = token["token"].as_str().unwrap();
        let anon = reqwest::Client::new();
        let res = anon
            .post(reg.url("/v2/busybox/blobs/uploads/"))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let res = anon
            .get(reg.url("/v2/library/busybox/manifests/musl"))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // A mount from the bare name finds the official repository's blob.
        let config = br#"{"architecture":"amd64","os":"linux","seed":"one"}"#;
        let digest = berth_reference::Digest::sha256_of(config);
        let url = reg.url(&format!("/v2/alice/copy/blobs/uploads/?mount={digest}&from=busybox"));
        assert_eq!(status(c.post(&url)).await, StatusCode::CREATED);
        // Stars and the settings API by the bare name.
        let url = reg.url("/v1/repositories/busybox/star");
        assert_eq!(status(c.put(&url)).await, StatusCode::OK);
        let settings = json(c.get(reg.url("/v2/repositories/busybox/"))).await;
        assert_eq!(settings["star_count"], 1);
        assert_eq!(settings["namespace"], "library");
        assert_eq!(settings["is_official"], true);
        // Deleting by the bare name deletes the official image's manifest.
        let admin = as_user("admin");
        let url = reg.url(&format!("/v2/busybox/manifests/{d1}"));
        assert_eq!(status(admin.delete(&url)).await, StatusCode::ACCEPTED);
        let url = reg.url("/v2/library/busybox/manifests/musl");
        assert_eq!(status(c.get(&url)).await, StatusCode::NOT_FOUND);
        let url = reg.url("/v1/repositories/busybox/");
        assert_eq!(status(admin.delete(&url)).await, StatusCode::ACCEPTED);
        let url = reg.url("/v2/library/busybox/tags/list");
        assert_eq!(status(c.get(&url)).await, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn without_accounts_names_stay_literal() {
    for &b in BACKENDS {
        let reg = start(b).await;
        reg.push_image("busybox", "musl", "one").await;
        reg.push_image("library/busybox", "glibc", "two").await;
        let c = &reg.client;
        let tags = json(c.get(reg.url("/v2/busybox/tags/list"))).await;
        assert_eq!(tags["tags"], serde_json::json!(["musl"]));
        let tags = json(c.get(reg.url("/v2/library/busybox/tags/list"))).await;
        assert_eq!(tags["tags"], serde_json::json!(["glibc"]));
        let cat = json(c.get(reg.url("/v2/_catalog"))).await;
        assert_eq!(cat["repositories"], serde_json::json!(["busybox", "library/busybox"]));
    }
}

#[tokio::test]
async fn roots_made_without_accounts_are_merged_or_refused() {
    for &b in BACKENDS {
        // A bare name alone is moved to library/, with its tags and settings.
        let reg = start(b).await;
        let (_, digest) = reg.push_image("busybox", "musl", "one").await;
        reg.push_image("alice/app", "v1", "two").await;
        let dir = reg.stop();
        let registry = berth_registry::open_local(dir.path(), Limits::default()).unwrap();
        let meta = registry.metadata().clone();
        meta.set_repository_owner_description("busybox", Some("tiny"), None).await.unwrap();
        let hub = berth_registry::Hub::new(meta.clone());
        assert_eq!(hub.merge_official_names().await.unwrap(), ["busybox"]);
        assert!(!meta.repository_exists("busybox").await.unwrap());
        let summary = meta.repository_summary("library/busybox").await.unwrap().unwrap();
        assert_eq!(summary.description.as_deref(), Some("tiny"));
        assert!(hub.merge_official_names().await.unwrap().is_empty());
        drop((hub, meta, registry));
        let reg = start_in(b, dir, Limits::default(), true).await;
        let c = as_user("alice");
        let res = c.get(reg.url("/v2/busybox/manifests/musl")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "docker-content-digest"), digest.to_string());
        let url = reg.url("/v2/alice/app/manifests/v1");
        assert_eq!(status(c.get(&url)).await, StatusCode::OK);

        // Both names: refused, naming the clash, and nothing changes.
        let reg = start(b).await;
        reg.push_image("busybox", "a", "one").await;
        reg.push_image("library/busybox", "b", "two").await;
        reg.push_image("alpine", "c", "three").await;
        let dir = reg.stop();
        let registry = berth_registry::open_local(dir.path(), Limits::default()).unwrap();
        let meta = registry.metadata().clone();
        let hub = berth_registry::Hub::new(meta.clone());
        let err = hub.merge_official_names().await.unwrap_err().to_string();
        assert!(err.contains("busybox") && !err.contains("alpine"), "{err}");
        assert!(err.contains("library/NAME"), "{err}");
        for name in ["busybox", "library/busybox", "alpine"] {
            assert!(meta.repository_exists(name).await.unwrap(), "{name}");
        }
        assert!(!meta.repository_exists("library/alpine").await.unwrap());
    }
}
