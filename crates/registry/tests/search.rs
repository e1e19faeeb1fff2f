//! `docker search` (`/v1/_ping`, `/v1/search`), stars, descriptions and
//! whole-repository deletion.

mod common;

use common::*;
use reqwest::StatusCode;

/// Pushes an image whose config carries a description label, tagged `latest`.
async fn push_described(reg: &TestRegistry, repo: &str, description: &str, auth: Option<&str>) {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"org.opencontainers.image.description":"{description}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    );
    let digest = berth_reference::Digest::sha256_of(config.as_bytes());
    let mut req = reg
        .client
        .post(reg.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
        .body(config.clone());
    if let Some(u) = auth {
        req = req.basic_auth(u, Some(format!("{u}-pw")));
    }
    assert_eq!(req.send().await.unwrap().status(), StatusCode::CREATED);
    let m = image_manifest(OCI_MANIFEST, (OCI_CONFIG, &digest, config.len()), &[], None);
    let mut req = reg
        .client
        .put(reg.url(&format!("/v2/{repo}/manifests/latest")))
        .header("content-type", OCI_MANIFEST)
        .body(m);
    if let Some(u) = auth {
        req = req.basic_auth(u, Some(format!("{u}-pw")));
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
}

async fn search(reg: &TestRegistry, query: &str, user: Option<&str>) -> serde_json::Value {
    let mut req = reg.client.get(reg.url(&format!("/v1/search?{query}")));
    if let Some(u) = user {
        req = req.basic_auth(u, Some(format!("{u}-pw")));
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn search_in_docker_hub_format() {
    for b in all_backends() {
        let reg = start(b).await;
        let res = reg.client.get(reg.url("/v1/_ping")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        push_described(&reg, "team/nanoserver", "A tiny server", None).await;
        push_described(&reg, "nanotools", "Official tools", None).await;
        push_described(&reg, "library/busybox", "Nano utilities in one binary", None).await;
        push_described(&reg, "other/thing", "Unrelated", None).await;

        let v = search(&reg, "q=nano", None).await;
        assert_eq!(v["query"], "nano");
        assert_eq!(v["num_results"], 3);
        assert_eq!(v["page_size"], 25);
        assert_eq!(v["page"], 1);
        assert_eq!(names(&v), ["busybox", "nanotools", "team/nanoserver"]);
        let first = &v["results"][0];
        assert_eq!(first["description"], "Nano utilities in one binary");
        assert_eq!(first["is_official"], true);
        assert_eq!(first["is_automated"], false);
        assert_eq!(first["star_count"], 0);
        assert_eq!(v["results"][2]["is_official"], false);
        assert_eq!(v["results"][2]["description"], "A tiny server");

        let v = search(&reg, "q=nano&n=2", None).await;
        assert_eq!(names(&v).len(), 2);
        assert_eq!(v["num_results"], 3);
        assert_eq!(v["num_pages"], 2);
        let v = search(&reg, "q=nano&n=2&page=2", None).await;
        assert_eq!(names(&v), ["team/nanoserver"]);
        // At most 100 per page.
        let v = search(&reg, "q=nano&n=1000", None).await;
        assert_eq!(v["page_size"], 100);
        let res = reg.client.get(reg.url("/v1/search?q=x&n=zero")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(names(&search(&reg, "q=nothing-matches", None).await).is_empty());
    }
}

#[tokio::test]
async fn private_repositories_only_to_those_who_may_pull() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        push_described(&reg, "alice/public-tool", "tool for all", Some("alice")).await;
        push_described(&reg, "alice/private-tool", "tool for alice", Some("alice")).await;
        let meta = reg.meta.clone();
        meta.set_repository_private("alice/private-tool", true).await.unwrap();

        assert_eq!(names(&search(&reg, "q=tool", None).await), ["alice/public-tool"]);
        assert_eq!(names(&search(&reg, "q=tool", Some("bob")).await), ["alice/public-tool"]);
        let mine = names(&search(&reg, "q=tool", Some("alice")).await);
        assert_eq!(mine, ["alice/private-tool", "alice/public-tool"]);
        let res =
            reg.client.get(reg.url("/v1/search?q=tool")).basic_auth("alice", Some("x")).send();
        assert_eq!(res.await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn stars_and_repository_deletion() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        push_described(&reg, "alice/app", "starred app", Some("alice")).await;
        push_described(&reg, "alice/zapp", "starred app too", Some("alice")).await;
        let star = |user: &str, method: reqwest::Method, repo: &str| {
            reg.client
                .request(method, reg.url(&format!("/v1/repositories/{repo}/star")))
                .basic_auth(user, Some(format!("{user}-pw")))
                .send()
        };
        assert_eq!(
            star("bob", reqwest::Method::PUT, "alice/zapp").await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(
            star("admin", reqwest::Method::PUT, "alice/zapp").await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(
            star("bob", reqwest::Method::PUT, "alice/app").await.unwrap().status(),
            StatusCode::OK
        );
        let res = star("bob", reqwest::Method::PUT, "alice/missing").await.unwrap();
        assert_error(res, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
        let v = search(&reg, "q=starred", None).await;
        // Most starred first.
        assert_eq!(names(&v), ["alice/zapp", "alice/app"]);
        assert_eq!(v["results"][0]["star_count"], 2);
        assert_eq!(
            star("admin", reqwest::Method::DELETE, "alice/zapp").await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(search(&reg, "q=zapp", None).await["results"][0]["star_count"], 1);
        let res = reg.client.put(reg.url("/v1/repositories/alice/app/star")).send().await.unwrap();
        assert_error(res, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

        // Deleting a whole repository: anonymous no, others no, the owner yes.
        let del = |user: Option<&str>| {
            let mut r = reg.client.delete(reg.url("/v1/repositories/alice/app/"));
            if let Some(u) = user {
                r = r.basic_auth(u, Some(format!("{u}-pw")));
            }
            r.send()
        };
        assert_error(del(None).await.unwrap(), StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        assert_error(del(Some("bob")).await.unwrap(), StatusCode::FORBIDDEN, "DENIED").await;
        assert_eq!(del(Some("alice")).await.unwrap().status(), StatusCode::ACCEPTED);
        assert_error(del(Some("alice")).await.unwrap(), StatusCode::NOT_FOUND, "NAME_UNKNOWN")
            .await;
        let res = reg
            .client
            .get(reg.url("/v2/alice/app/manifests/latest"))
            .basic_auth("alice", Some("alice-pw"))
            .send()
            .await
            .unwrap();
        assert_error(res, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
        assert_eq!(names(&search(&reg, "q=starred", None).await), ["alice/zapp"]);
        // An administrator may delete anyone's repository.
        let res = reg
            .client
            .delete(reg.url("/v1/repositories/alice/zapp"))
            .basic_auth("admin", Some("admin-pw"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
}

/// `PATCH /v2/repositories/<name>/` with a JSON body, as `user`.
async fn describe(
    reg: &TestRegistry,
    repo: &str,
    body: &str,
    user: Option<&str>,
) -> reqwest::Response {
    let mut req = reg
        .client
        .patch(reg.url(&format!("/v2/repositories/{repo}/")))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(u) = user {
        req = req.basic_auth(u, Some(format!("{u}-pw")));
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn owners_set_descriptions_that_win_over_the_label() {
    for b in all_backends() {
        let reg = start_auth(b).await;
        push_described(&reg, "alice/app", "from the label", Some("alice")).await;
        push_described(&reg, "acme/tool", "acme label", Some("bob")).await;
        let first = |v: serde_json::Value| v["results"][0]["description"].clone();
        assert_eq!(first(search(&reg, "q=alice/app", None).await), "from the label");

        // Anonymous: 401. Someone else: DENIED. Nothing changes.
        let body = r#"{"description":"Owner's words","full_description":"Long text"}"#;
        let res = describe(&reg, "alice/app", body, None).await;
        assert_error(res, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        let res = describe(&reg, "alice/app", body, Some("bob")).await;
        assert_error(res, StatusCode::FORBIDDEN, "DENIED").await;
        assert_eq!(first(search(&reg, "q=alice/app", None).await), "from the label");

        // The owner: set, and search shows it instead of the label.
        let res = describe(&reg, "alice/app", body, Some("alice")).await;
        assert_eq!(res.status(), StatusCode::OK);
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["namespace"], "alice");
        assert_eq!(v["name"], "app");
        assert_eq!(v["description"], "Owner's words");
        assert_eq!(v["full_description"], "Long text");
        assert_eq!(first(search(&reg, "q=alice/app", None).await), "Owner's words");
        assert_eq!(names(&search(&reg, "q=owner", None).await), ["alice/app"]);
        // A later push with a label does not undo it.
        push_described(&reg, "alice/app", "newer label", Some("alice")).await;
        assert_eq!(first(search(&reg, "q=alice/app", None).await), "Owner's words");
        let res = reg.client.get(reg.url("/v2/repositories/alice/app/")).send().await.unwrap();
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["full_description"], "Long text");
        // Clearing the owner's description lets the label show again.
        let res = describe(&reg, "alice/app", r#"{"description":""}"#, Some("alice")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(first(search(&reg, "q=alice/app", None).await), "newer label");

        // Organisation members and administrators may; others may not.
        let res = describe(&reg, "acme/tool", r#"{"description":"by bob"}"#, Some("bob")).await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = describe(&reg, "acme/tool", r#"{"description":"x"}"#, Some("alice")).await;
        assert_error(res, StatusCode::FORBIDDEN, "DENIED").await;
        let res = describe(&reg, "acme/tool", r#"{"description":"by admin"}"#, Some("admin")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(first(search(&reg, "q=acme", None).await), "by admin");

        // Bad input: clear errors, nothing stored.
        let res = describe(&reg, "alice/app", "not json", Some("alice")).await;
        assert_error(res, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
        let res = describe(&reg, "alice/app", "{}", Some("alice")).await;
        assert_error(res, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
        let long = format!(r#"{{"description":"{}"}}"#, "x".repeat(1001));
        let res = describe(&reg, "alice/app", &long, Some("alice")).await;
        assert_error(res, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
        assert_eq!(first(search(&reg, "q=alice/app", None).await), "newer label");
        let res = describe(&reg, "alice/missing", r#"{"description":"x"}"#, Some("alice")).await;
        assert_error(res, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
        let res = describe(&reg, "Alice/App", r#"{"description":"x"}"#, Some("alice")).await;
        assert_error(res, StatusCode::BAD_REQUEST, "NAME_INVALID").await;

        // Docker Hub's path also deletes a repository (owner only).
        let del = |user: &str| {
            reg.client
                .delete(reg.url("/v2/repositories/acme/tool/"))
                .basic_auth(user, Some(format!("{user}-pw")))
                .send()
        };
        assert_error(del("alice").await.unwrap(), StatusCode::FORBIDDEN, "DENIED").await;
        assert_eq!(del("bob").await.unwrap().status(), StatusCode::ACCEPTED);
        assert!(names(&search(&reg, "q=acme", None).await).is_empty());
    }
}

#[tokio::test]
async fn a_repository_named_repositories_still_works() {
    for b in all_backends() {
        let reg = start(b).await;
        // Distribution routes of `repositories/x` are not taken for settings.
        reg.push_image("repositories/x", "v1", "named like the settings path").await;
        let res = reg.client.get(reg.url("/v2/repositories/x/tags/list")).send().await.unwrap();
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["tags"], serde_json::json!(["v1"]));
        // Without --auth anyone may describe, as anyone may push.
        let res = describe(&reg, "repositories/x", r#"{"description":"open"}"#, None).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(search(&reg, "q=repositories", None).await["results"][0]["description"], "open");
    }
}
