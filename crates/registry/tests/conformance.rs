//! Conformance with the OCI Distribution Specification v1.1, endpoint by
//! endpoint, over real HTTP on loopback, against every backend.

mod common;

use berth_reference::{Algorithm, Digest};
use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    for b in all_backends() {
        let reg = start(b).await;
        let res = reg.client.get(reg.url("/v2/")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "docker-distribution-api-version"), "registry/2.0");
        let res = reg.client.get(reg.url("/v2/nothing/here/at/all")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn monolithic_post_then_head_and_get() {
    for b in all_backends() {
        let reg = start(b).await;
        let data = b"monolithic blob content";
        let digest = Digest::sha256_of(data);
        let res = reg
            .client
            .post(reg.url(&format!("/v2/a/b/c/blobs/uploads/?digest={digest}")))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(header(&res, "docker-content-digest"), digest.as_str());
        let loc = reg.location(&res);
        assert!(loc.ends_with(&format!("/v2/a/b/c/blobs/{digest}")), "{loc}");

        let res = reg.client.head(&loc).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "content-length"), data.len().to_string());
        assert_eq!(header(&res, "docker-content-digest"), digest.as_str());
        assert!(res.bytes().await.unwrap().is_empty());

        let res = reg.client.get(&loc).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "docker-content-digest"), digest.as_str());
        assert_eq!(res.bytes().await.unwrap().as_ref(), data);

        // The blob belongs to a/b/c only.
        let res = reg.client.get(reg.url(&format!("/v2/other/blobs/{digest}"))).send().await;
        assert_error(res.unwrap(), StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    }
}

#[tokio::test]
async fn post_then_put_with_the_whole_body() {
    for b in all_backends() {
        let reg = start(b).await;
        let res = reg.client.post(reg.url("/v2/repo/blobs/uploads/")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&res, "range"), "0-0");
        assert!(!header(&res, "docker-upload-uuid").is_empty());
        let loc = reg.location(&res);
        let data = b"post then put";
        let digest = Digest::sha256_of(data);
        let res = reg
            .client
            .put(format!("{loc}?digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(header(&res, "docker-content-digest"), digest.as_str());
        let got = reg.client.get(reg.location(&res)).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), data);
        // The upload is gone once completed.
        let res = reg.client.get(&loc).send().await.unwrap();
        assert_error(res, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    }
}

#[tokio::test]
async fn chunked_upload_with_content_range_and_progress() {
    for b in all_backends() {
        let reg = start(b).await;
        let res = reg.client.post(reg.url("/v2/chunky/blobs/uploads/")).send().await.unwrap();
        let loc = reg.location(&res);
        let patch = |range: &str, body: &'static [u8]| {
            reg.client
                .patch(&loc)
                .header("content-type", "application/octet-stream")
                .header("content-range", range)
                .body(body)
                .send()
        };
        let res = patch("0-4", b"01234").await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&res, "range"), "0-4");
        let loc2 = reg.location(&res);

        // Out of order: refused with 416, nothing appended.
        let res = patch("7-9", b"789").await.unwrap();
        assert_error(res, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
        // Content-Range disagreeing with the body length: refused.
        let res = patch("5-9", b"56").await.unwrap();
        assert_error(res, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;

        let res = reg.client.get(&loc2).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&res, "range"), "0-4");

        let res = patch("5-7", b"567").await.unwrap();
        assert_eq!(header(&res, "range"), "0-7");

        // Final chunk with the closing PUT.
        let digest = Digest::sha256_of(b"0123456789");
        let res = reg
            .client
            .put(format!("{loc}?digest={digest}"))
            .header("content-range", "8-9")
            .body(&b"89"[..])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
        let res = reg.client.get(reg.url(&format!("/v2/chunky/blobs/{digest}"))).send().await;
        assert_eq!(res.unwrap().bytes().await.unwrap().as_ref(), b"0123456789");
    }
}

#[tokio::test]
async fn streamed_patch_then_empty_put() {
    for b in all_backends() {
        let reg = start(b).await;
        let res = reg.client.post(reg.url("/v2/stream/blobs/uploads/")).send().await.unwrap();
        let loc = reg.location(&res);
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            big.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
        let res = reg
            .client
            .patch(&loc)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&res, "range"), format!("0-{}", big.len() - 1));
        let digest = Digest::sha256_of(&big);
        let res = reg.client.put(format!("{loc}?digest={digest}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let res = reg.client.get(reg.url(&format!("/v2/stream/blobs/{digest}"))).send().await;
        assert_eq!(res.unwrap().bytes().await.unwrap().as_ref(), &big[..]);
    }
}

#[tokio::test]
async fn wrong_digest_is_refused_and_nothing_stored() {
    for b in all_backends() {
        let reg = start(b).await;
        let claimed = Digest::sha256_of(b"what the client claims");
        let res = reg
            .client
            .post(reg.url(&format!("/v2/r/blobs/uploads/?digest={claimed}")))
            .body(&b"something else"[..])
            .send()
            .await
            .unwrap();
        assert_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        let res = reg.client.head(reg.url(&format!("/v2/r/blobs/{claimed}"))).send().await;
        assert_eq!(res.unwrap().status(), StatusCode::NOT_FOUND);

        // Same through an upload session.
        let res = reg.client.post(reg.url("/v2/r/blobs/uploads/")).send().await.unwrap();
        let loc = reg.location(&res);
        let res = reg
            .client
            .put(format!("{loc}?digest={claimed}"))
            .body(&b"other bytes"[..])
            .send()
            .await
            .unwrap();
        assert_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        let res = reg.client.head(reg.url(&format!("/v2/r/blobs/{claimed}"))).send().await;
        assert_eq!(res.unwrap().status(), StatusCode::NOT_FOUND);

        // Malformed and unsupported digests.
        let res = reg.client.post(reg.url("/v2/r/blobs/uploads/?digest=sha256:xyz")).send().await;
        assert_error(res.unwrap(), StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        let res = reg.client.get(reg.url("/v2/r/blobs/md5:abcdef")).send().await;
        assert_error(res.unwrap(), StatusCode::BAD_REQUEST, "UNSUPPORTED").await;
        // The failed upload is gone.
        let res = reg.client.put(format!("{loc}?digest={claimed}")).send().await.unwrap();
        assert_error(res, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        // Completing without a digest is refused.
        let res = reg.client.post(reg.url("/v2/r/blobs/uploads/")).send().await.unwrap();
        let res = reg.client.put(reg.location(&res)).send().await.unwrap();
        assert_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    }
}

#[tokio::test]
async fn upload_cancel_and_unknown_uploads() {
    for b in all_backends() {
        let reg = start(b).await;
        let res = reg.client.post(reg.url("/v2/mine/blobs/uploads/")).send().await.unwrap();
        let loc = reg.location(&res);
        let id = header(&res, "docker-upload-uuid");
        // Another repository cannot use this upload.
        let res = reg.client.get(reg.url(&format!("/v2/theirs/blobs/uploads/{id}"))).send().await;
        assert_error(res.unwrap(), StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        let res = reg.client.delete(&loc).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let res = reg.client.get(&loc).send().await.unwrap();
        assert_error(res, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        let res = reg.client.delete(&loc).send().await.unwrap();
        assert_error(res, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        // Ids that are not ours, including path tricks, are unknown uploads.
        for bad in ["not-a-uuid", "..%2F..%2Fetc", "00000000-0000-0000-0000-000000000000"] {
            let res = reg.client.get(reg.url(&format!("/v2/mine/blobs/uploads/{bad}"))).send();
            assert_error(res.await.unwrap(), StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        }
    }
}

#[tokio::test]
async fn blob_range_requests() {
    for b in all_backends() {
        let reg = start(b).await;
        let digest = reg.push_blob("ranged", b"0123456789").await;
        let url = reg.url(&format!("/v2/ranged/blobs/{digest}"));
        let res = reg.client.get(&url).header("range", "bytes=2-5").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(header(&res, "content-range"), "bytes 2-5/10");
        assert_eq!(header(&res, "content-length"), "4");
        assert_eq!(res.bytes().await.unwrap().as_ref(), b"2345");
        let res = reg.client.get(&url).header("range", "bytes=7-").send().await.unwrap();
        assert_eq!(res.bytes().await.unwrap().as_ref(), b"789");
        let res = reg.client.get(&url).header("range", "bytes=10-20").send().await.unwrap();
        assert_error(res, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    }
}

#[tokio::test]
async fn cross_repository_mount() {
    for b in all_backends() {
        let reg = start(b).await;
        let digest = reg.push_blob("source/repo", b"shared layer").await;
        let res = reg
            .client
            .post(
                reg.url(&format!("/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(header(&res, "docker-content-digest"), digest.as_str());
        assert!(reg.location(&res).ends_with(&format!("/v2/target/repo/blobs/{digest}")));
        let res = reg.client.head(reg.url(&format!("/v2/target/repo/blobs/{digest}"))).send();
        assert_eq!(res.await.unwrap().status(), StatusCode::OK);

        // Not in the source repository: an ordinary upload session instead.
        let absent = Digest::sha256_of(b"absent");
        let res = reg
            .client
            .post(
                reg.url(&format!("/v2/target/repo/blobs/uploads/?mount={absent}&from=source/repo")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        assert!(reg.location(&res).contains("/v2/target/repo/blobs/uploads/"));

        // Without `from`: a blob the registry stores is mounted.
        let res = reg
            .client
            .post(reg.url(&format!("/v2/third/blobs/uploads/?mount={digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let res = reg
            .client
            .post(reg.url(&format!("/v2/third/blobs/uploads/?mount={absent}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
}

#[tokio::test]
async fn mount_without_from_can_be_disabled() {
    for b in all_backends() {
        let limits = berth_registry::Limits { mount_without_from: false, ..Default::default() };
        let reg = start_with(b, limits).await;
        let digest = reg.push_blob("src", b"private-ish").await;
        let res = reg
            .client
            .post(reg.url(&format!("/v2/dst/blobs/uploads/?mount={digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
}

#[tokio::test]
async fn manifests_by_tag_and_digest() {
    for b in all_backends() {
        let reg = start(b).await;
        let (bytes, digest) = reg.push_image("my/app", "v1", "one").await;
        for reference in ["v1", digest.as_str()] {
            let url = reg.url(&format!("/v2/my/app/manifests/{reference}"));
            let res = reg.client.get(&url).header("accept", OCI_MANIFEST).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(header(&res, "content-type"), OCI_MANIFEST);
            assert_eq!(header(&res, "docker-content-digest"), digest.as_str());
            assert_eq!(header(&res, "content-length"), bytes.len().to_string());
            assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[..]);
            let res = reg.client.head(&url).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(header(&res, "content-length"), bytes.len().to_string());
            assert_eq!(header(&res, "docker-content-digest"), digest.as_str());
        }
        // Pushing by digest works too, and the Location names the digest.
        let res = reg.put_manifest("my/app", digest.as_str(), OCI_MANIFEST, &bytes).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        assert!(reg.location(&res).ends_with(&format!("/v2/my/app/manifests/{digest}")));

        let res = reg.client.get(reg.url("/v2/my/app/manifests/nope")).send().await.unwrap();
        assert_error(res, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
        let res = reg.client.head(reg.url("/v2/my/app/manifests/nope")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn retagging_moves_the_tag() {
    for b in all_backends() {
        let reg = start(b).await;
        let (_, first) = reg.push_image("re/tag", "latest", "first").await;
        let (_, second) = reg.push_image("re/tag", "latest", "second").await;
        assert_ne!(first, second);
        let res = reg.client.head(reg.url("/v2/re/tag/manifests/latest")).send().await.unwrap();
        assert_eq!(header(&res, "docker-content-digest"), second.as_str());
        let res = reg.client.head(reg.url(&format!("/v2/re/tag/manifests/{first}"))).send();
        assert_eq!(res.await.unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn docker_schema2_and_manifest_list() {
    for b in all_backends() {
        let reg = start(b).await;
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let c = reg.push_blob("d/img", config).await;
        let l = reg.push_blob("d/img", b"docker layer").await;
        let m =
            image_manifest(DOCKER_MANIFEST, (DOCKER_CONFIG, &c, config.len()), &[(&l, 12)], None);
        let res = reg.put_manifest("d/img", "amd64", DOCKER_MANIFEST, m.as_bytes()).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
        let md = Digest::sha256_of(m.as_bytes());
        let list = index(DOCKER_LIST, DOCKER_MANIFEST, &[(&md, m.len())]);
        let res = reg.put_manifest("d/img", "latest", DOCKER_LIST, list.as_bytes()).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
        let res = reg.client.get(reg.url("/v2/d/img/manifests/latest")).send().await.unwrap();
        assert_eq!(header(&res, "content-type"), DOCKER_LIST);
        assert_eq!(res.bytes().await.unwrap().as_ref(), list.as_bytes());
        let res = reg.client.get(reg.url("/v2/d/img/manifests/amd64")).send().await.unwrap();
        assert_eq!(header(&res, "content-type"), DOCKER_MANIFEST);
    }
}

#[tokio::test]
async fn oci_index_needs_its_children() {
    for b in all_backends() {
        // With sparse indexes turned off, every child must be pushed first.
        let reg =
            start_with(b, berth_registry::Limits { sparse_indexes: false, ..Default::default() })
                .await;
        let (child, cd) = reg.push_image("multi", "child", "c").await;
        let missing = Digest::sha256_of(b"no such manifest");
        let bad = index(OCI_INDEX, OCI_MANIFEST, &[(&cd, child.len()), (&missing, 10)]);
        let res = reg.put_manifest("multi", "latest", OCI_INDEX, bad.as_bytes()).await;
        assert_error(res, StatusCode::NOT_FOUND, "MANIFEST_BLOB_UNKNOWN").await;
        let res = reg.client.get(reg.url("/v2/multi/manifests/latest")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);

        let good = index(OCI_INDEX, OCI_MANIFEST, &[(&cd, child.len())]);
        let res = reg.put_manifest("multi", "latest", OCI_INDEX, good.as_bytes()).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let res = reg.client.get(reg.url("/v2/multi/manifests/latest")).send().await.unwrap();
        assert_eq!(header(&res, "content-type"), OCI_INDEX);
    }
}

#[tokio::test]
async fn sparse_index_is_accepted_by_default() {
    for b in all_backends() {
        let reg = start(b).await;
        let (child, cd) = reg.push_image("sparse", "child", "c").await;
        let (arm, arm_digest) = sparse_child("arm64");
        let idx = index(OCI_INDEX, OCI_MANIFEST, &[(&cd, child.len()), (&arm_digest, arm.len())]);
        let res = reg.put_manifest("sparse", "latest", OCI_INDEX, idx.as_bytes()).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
        let res = reg.client.get(reg.url("/v2/sparse/manifests/latest")).send().await.unwrap();
        assert_eq!(header(&res, "content-type"), OCI_INDEX);
        assert_eq!(res.bytes().await.unwrap().as_ref(), idx.as_bytes());
        let missing = reg.url(&format!("/v2/sparse/manifests/{arm_digest}"));
        let res = reg.client.get(&missing).send().await.unwrap();
        assert_error(res, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;

        // A child that is present must still match its descriptor.
        let lying = index(OCI_INDEX, OCI_MANIFEST, &[(&cd, child.len() + 1), (&arm_digest, 9)]);
        let res = reg.put_manifest("sparse", "lying", OCI_INDEX, lying.as_bytes()).await;
        assert_error(res, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        let res = reg.client.get(reg.url("/v2/sparse/manifests/lying")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);

        // The missing child may come later, by digest, and is then served.
        let config = reg.push_blob("sparse", SPARSE_CONFIG.as_bytes()).await;
        assert_eq!(config, Digest::sha256_of(SPARSE_CONFIG.as_bytes()));
        let res = reg.put_manifest("sparse", arm_digest.as_str(), OCI_MANIFEST, &arm).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
        let res = reg.client.get(&missing).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.bytes().await.unwrap().as_ref(), &arm[..]);

        // Docker manifest lists are indexes too.
        let list = index(DOCKER_LIST, DOCKER_MANIFEST, &[(&Digest::sha256_of(b"absent"), 3)]);
        let res = reg.put_manifest("sparse", "list", DOCKER_LIST, list.as_bytes()).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
    }
}

const SPARSE_CONFIG: &str = r#"{"architecture":"arm64","os":"linux"}"#;

/// An image manifest over [`SPARSE_CONFIG`] alone, and its digest: a child
/// an index can name before it is pushed.
fn sparse_child(seed: &str) -> (Vec<u8>, Digest) {
    let config = Digest::sha256_of(SPARSE_CONFIG.as_bytes());
    let extra = format!(r#""annotations":{{"seed":"{seed}"}}"#);
    let m =
        image_manifest(OCI_MANIFEST, (OCI_CONFIG, &config, SPARSE_CONFIG.len()), &[], Some(&extra));
    let digest = Digest::sha256_of(m.as_bytes());
    (m.into_bytes(), digest)
}

/// The `OCI-Tag` values of a response, split at commas as RFC 9110 lists are.
fn oci_tags(res: &reqwest::Response) -> Vec<String> {
    let mut tags: Vec<String> = res
        .headers()
        .get_all("oci-tag")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(',').map(|t| t.trim().to_owned()))
        .collect();
    tags.sort();
    tags
}

async fn put_with_tags(
    reg: &TestRegistry,
    repo: &str,
    reference: &str,
    tags: &[&str],
    body: &[u8],
) -> reqwest::Response {
    let query: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
    reg.client
        .put(reg.url(&format!("/v2/{repo}/manifests/{reference}?{}", query.join("&"))))
        .header("content-type", OCI_MANIFEST)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn manifest_push_by_digest_applies_tag_parameters() {
    for b in all_backends() {
        let reg = start(b).await;
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let repo = format!("tagged/{}", alg.as_str());
            let config =
                format!(r#"{{"architecture":"amd64","os":"linux","alg":"{}"}}"#, alg.as_str());
            let c = reg.push_blob_with(&repo, config.as_bytes(), alg).await;
            let l = reg.push_blob_with(&repo, b"tagged layer", alg).await;
            let m = image_manifest(OCI_MANIFEST, (OCI_CONFIG, &c, config.len()), &[(&l, 12)], None);
            let d = Digest::of(alg, m.as_bytes());
            // Ten tags, the least the spec asks a registry to take at once.
            let tags = ["1.2.3", "1.2", "1", "latest", "a", "b", "c", "d", "e", "f_G-h.9"];
            let res = put_with_tags(&reg, &repo, d.as_str(), &tags, m.as_bytes()).await;
            assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
            assert_eq!(header(&res, "docker-content-digest"), d.as_str());
            assert!(reg.location(&res).ends_with(&format!("/v2/{repo}/manifests/{d}")));
            let mut expected: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            expected.sort();
            assert_eq!(oci_tags(&res), expected);
            for tag in tags {
                let res = reg.client.get(reg.url(&format!("/v2/{repo}/manifests/{tag}"))).send();
                let res = res.await.unwrap();
                assert_eq!(res.status(), StatusCode::OK, "{tag}");
                assert_eq!(header(&res, "docker-content-digest"), d.as_str(), "{tag}");
                assert_eq!(res.bytes().await.unwrap().as_ref(), m.as_bytes());
            }
            let res = reg.client.get(reg.url(&format!("/v2/{repo}/tags/list"))).send().await;
            let list: serde_json::Value = res.unwrap().json().await.unwrap();
            assert_eq!(list["tags"], serde_json::json!(expected));

            // Again, a tag repeated: applied and answered once.
            let res =
                put_with_tags(&reg, &repo, d.as_str(), &["again", "again"], m.as_bytes()).await;
            assert_eq!(res.status(), StatusCode::CREATED);
            assert_eq!(oci_tags(&res), ["again"]);
            // A push by digest without parameters tags nothing and says so.
            let res = reg.put_manifest(&repo, d.as_str(), OCI_MANIFEST, m.as_bytes()).await;
            assert_eq!(res.status(), StatusCode::CREATED);
            assert!(res.headers().get("oci-tag").is_none());
        }
    }
}

#[tokio::test]
async fn invalid_tag_parameters_store_nothing() {
    for b in all_backends() {
        let reg = start(b).await;
        let (old, old_digest) = reg.push_image("strict/tags", "kept", "old").await;
        let config = br#"{"architecture":"amd64","os":"linux","new":true}"#;
        let c = reg.push_blob("strict/tags", config).await;
        let m = image_manifest(OCI_MANIFEST, (OCI_CONFIG, &c, config.len()), &[], None);
        let d = Digest::sha256_of(m.as_bytes());
        let by_digest = reg.url(&format!("/v2/strict/tags/manifests/{d}"));
        let resolves = |tag: &str| {
            let url = reg.url(&format!("/v2/strict/tags/manifests/{tag}"));
            let client = reg.client.clone();
            async move {
                let res = client.head(url).send().await.unwrap();
                (res.status() == StatusCode::OK).then(|| header(&res, "docker-content-digest"))
            }
        };

        let long = "x".repeat(129);
        let invalid = ["-dash", ".dot", "has%20space", "colon:x", long.as_str()];
        for bad in invalid {
            let res = put_with_tags(
                &reg,
                "strict/tags",
                d.as_str(),
                &["kept", "fresh", bad],
                m.as_bytes(),
            )
            .await;
            assert_error(res, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        }
        let res = put_with_tags(&reg, "strict/tags", d.as_str(), &["kept", ""], m.as_bytes()).await;
        assert_error(res, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;

        // More than a push takes: 414, as the spec allows.
        let many: Vec<String> =
            (0..=berth_registry::registry::TAGS_PER_PUSH_MAX).map(|i| format!("t{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let res = put_with_tags(&reg, "strict/tags", d.as_str(), &many, m.as_bytes()).await;
        assert_error(res, StatusCode::URI_TOO_LONG, "MANIFEST_INVALID").await;

        // Tag parameters belong to a push by digest; with a tag in the path
        // the push is refused whole.
        let res =
            put_with_tags(&reg, "strict/tags", "path", &["kept", "fresh"], m.as_bytes()).await;
        assert_error(res, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;

        // None of it stored the manifest, created a tag or moved one.
        assert_eq!(
            reg.client.get(&by_digest).send().await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(resolves("kept").await.as_deref(), Some(old_digest.as_str()));
        for tag in ["fresh", "path", "t0"] {
            assert_eq!(resolves(tag).await, None, "{tag}");
        }
        let res = reg.client.get(reg.url("/v2/strict/tags/tags/list")).send().await.unwrap();
        let list: serde_json::Value = res.json().await.unwrap();
        assert_eq!(list["tags"], serde_json::json!(["kept"]));
        let res = reg.client.get(reg.url("/v2/strict/tags/manifests/kept")).send().await.unwrap();
        assert_eq!(res.bytes().await.unwrap().as_ref(), &old[..]);
    }
}

#[tokio::test]
async fn manifest_with_unknown_blob_is_refused() {
    for b in all_backends() {
        let reg = start(b).await;
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let c = reg.push_blob("strict", config).await;
        let ghost = Digest::sha256_of(b"never pushed");
        let m = image_manifest(OCI_MANIFEST, (OCI_CONFIG, &c, config.len()), &[(&ghost, 12)], None);
        let res = reg.put_manifest("strict", "v1", OCI_MANIFEST, m.as_bytes()).await;
        assert_error(res, StatusCode::NOT_FOUND, "MANIFEST_BLOB_UNKNOWN").await;
        let d = Digest::sha256_of(m.as_bytes());
        let res = reg.client.get(reg.url(&format!("/v2/strict/manifests/{d}"))).send().await;
        assert_eq!(res.unwrap().status(), StatusCode::NOT_FOUND);

        // A blob in another repository does not count.
        let elsewhere = reg.push_blob("elsewhere", b"layer elsewhere").await;
        let m =
            image_manifest(OCI_MANIFEST, (OCI_CONFIG, &c, config.len()), &[(&elsewhere, 15)], None);
        let res = reg.put_manifest("strict", "v1", OCI_MANIFEST, m.as_bytes()).await;
        assert_error(res, StatusCode::NOT_FOUND, "MANIFEST_BLOB_UNKNOWN").await;

        // A descriptor with the wrong size is invalid.
        let m = image_manifest(OCI_MANIFEST, (OCI_CONFIG, &c, config.len() + 1), &[], None);
        let res = reg.put_manifest("strict", "v1", OCI_MANIFEST, m.as_bytes()).await;
        assert_error(res, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
}

#[tokio::test]
async fn malformed_and_oversized_manifests() {
    for b in all_backends() {
        let reg = start(b).await;
        let res = reg.put_manifest("bad", "v1", OCI_MANIFEST, b"{not json").await;
        assert_error(res, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        let res = reg.put_manifest("bad", "v1", OCI_MANIFEST, br#"{"schemaVersion":1}"#).await;
        assert_error(res, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        let (bytes, _) = reg.push_image("bad", "ok", "x").await;
        // Pushed by a digest it does not have.
        let wrong = Digest::sha256_of(b"other");
        let res = reg.put_manifest("bad", wrong.as_str(), OCI_MANIFEST, &bytes).await;
        assert_error(res, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        // Declared type disagreeing with the document.
        let res = reg.put_manifest("bad", "v2", OCI_INDEX, &bytes).await;
        assert_error(res, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        // An invalid tag.
        let res = reg.put_manifest("bad", "-dash", OCI_MANIFEST, &bytes).await;
        assert_error(res, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        // Over 4 MiB.
        let mut huge = bytes.clone();
        huge.resize(4 * 1024 * 1024 + 1, b' ');
        let res = reg.put_manifest("bad", "big", OCI_MANIFEST, &huge).await;
        assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
        // Also when streamed without a Content-Length.
        let chunks =
            huge.chunks(1 << 20).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>();
        let res = reg
            .client
            .put(reg.url("/v2/bad/manifests/big"))
            .header("content-type", OCI_MANIFEST)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
        let res = reg.client.get(reg.url("/v2/bad/tags/list")).send().await.unwrap();
        let tags: serde_json::Value = res.json().await.unwrap();
        assert_eq!(tags["tags"], serde_json::json!(["ok"]));
    }
}

#[tokio::test]
async fn subject_header_and_referrers() {
    for b in all_backends() {
        let reg = start(b).await;
        let (subject_bytes, subject) = reg.push_image("ref/app", "v1", "s").await;
        let empty = reg.push_blob("ref/app", b"{}").await;
        let subj = format!(
            r#""subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{}}}"#,
            subject_bytes.len()
        );
        let mut pushed = Vec::new();
        for (kind, note) in
            [("application/vnd.example.sig", "a"), ("application/vnd.example.sbom", "b")]
        {
            let extra =
                format!(r#""artifactType":"{kind}",{subj},"annotations":{{"note":"{note}"}}"#);
            let m = image_manifest(OCI_MANIFEST, (OCI_EMPTY, &empty, 2), &[], Some(&extra));
            let d = Digest::sha256_of(m.as_bytes());
            let res = reg.put_manifest("ref/app", d.as_str(), OCI_MANIFEST, m.as_bytes()).await;
            assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
            assert_eq!(header(&res, "oci-subject"), subject.as_str());
            pushed.push((kind, d, m.len()));
        }
        let url = reg.url(&format!("/v2/ref/app/referrers/{subject}"));
        let res = reg.client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "content-type"), OCI_INDEX);
        assert!(res.headers().get("oci-filters-applied").is_none());
        let idx: serde_json::Value = res.json().await.unwrap();
        assert_eq!(idx["schemaVersion"], 2);
        assert_eq!(idx["mediaType"], OCI_INDEX);
        let list = idx["manifests"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        for (kind, d, size) in &pushed {
            let e = list.iter().find(|e| e["digest"] == d.as_str()).expect("listed");
            assert_eq!(e["artifactType"], *kind);
            assert_eq!(e["size"], *size as u64);
            assert_eq!(e["mediaType"], OCI_MANIFEST);
            assert!(e["annotations"]["note"].is_string());
        }

        let res = reg
            .client
            .get(format!("{url}?artifactType=application%2Fvnd.example.sbom"))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&res, "oci-filters-applied"), "artifactType");
        let idx: serde_json::Value = res.json().await.unwrap();
        assert_eq!(idx["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(idx["manifests"][0]["digest"], pushed[1].1.as_str());

        // A subject nobody refers to (or that does not exist): an empty index.
        let other = Digest::sha256_of(b"lonely");
        let res = reg.client.get(reg.url(&format!("/v2/ref/app/referrers/{other}"))).send().await;
        let idx: serde_json::Value = res.unwrap().json().await.unwrap();
        assert_eq!(idx["manifests"], serde_json::json!([]));
        let res = reg.client.get(reg.url("/v2/ref/app/referrers/sha256:nothex")).send().await;
        assert_error(res.unwrap(), StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    }
}

#[tokio::test]
async fn manifest_with_missing_subject_is_accepted() {
    for b in all_backends() {
        let reg = start(b).await;
        let empty = reg.push_blob("orphan", b"{}").await;
        let ghost = Digest::sha256_of(b"subject not pushed yet");
        let extra = format!(
            r#""artifactType":"application/x.sig","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{ghost}","size":5}}"#
        );
        let m = image_manifest(OCI_MANIFEST, (OCI_EMPTY, &empty, 2), &[], Some(&extra));
        let res = reg.put_manifest("orphan", "sig", OCI_MANIFEST, m.as_bytes()).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(header(&res, "oci-subject"), ghost.as_str());
        let res = reg.client.get(reg.url(&format!("/v2/orphan/referrers/{ghost}"))).send().await;
        let idx: serde_json::Value = res.unwrap().json().await.unwrap();
        assert_eq!(idx["manifests"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn tag_list_pagination() {
    for b in all_backends() {
        let reg = start(b).await;
        let (bytes, _) = reg.push_image("paged", "a", "p").await;
        for tag in ["d", "b", "c", "e"] {
            let res = reg.put_manifest("paged", tag, OCI_MANIFEST, &bytes).await;
            assert_eq!(res.status(), StatusCode::CREATED);
        }
        let res = reg.client.get(reg.url("/v2/paged/tags/list")).send().await.unwrap();
        let all: serde_json::Value = res.json().await.unwrap();
        assert_eq!(all["name"], "paged");
        assert_eq!(all["tags"], serde_json::json!(["a", "b", "c", "d", "e"]));

        let res = reg.client.get(reg.url("/v2/paged/tags/list?n=2")).send().await.unwrap();
        let link = header(&res, "link");
        assert_eq!(link, r#"</v2/paged/tags/list?n=2&last=b>; rel="next""#);
        let page: serde_json::Value = res.json().await.unwrap();
        assert_eq!(page["tags"], serde_json::json!(["a", "b"]));
        let res = reg.client.get(reg.url("/v2/paged/tags/list?n=2&last=b")).send().await.unwrap();
        let page: serde_json::Value = res.json().await.unwrap();
        assert_eq!(page["tags"], serde_json::json!(["c", "d"]));
        let res = reg.client.get(reg.url("/v2/paged/tags/list?n=2&last=d")).send().await.unwrap();
        assert!(res.headers().get("link").is_none());
        let page: serde_json::Value = res.json().await.unwrap();
        assert_eq!(page["tags"], serde_json::json!(["e"]));
        let res = reg.client.get(reg.url("/v2/paged/tags/list?n=0")).send().await.unwrap();
        let page: serde_json::Value = res.json().await.unwrap();
        assert_eq!(page["tags"], serde_json::json!([]));

        let res = reg.client.get(reg.url("/v2/unknown/tags/list")).send().await.unwrap();
        assert_error(res, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    }
}

#[tokio::test]
async fn catalog_pagination() {
    for b in all_backends() {
        let reg = start(b).await;
        for repo in ["zeta", "alpha/one", "beta"] {
            reg.push_blob(repo, repo.as_bytes()).await;
        }
        let res = reg.client.get(reg.url("/v2/_catalog")).send().await.unwrap();
        let all: serde_json::Value = res.json().await.unwrap();
        assert_eq!(all["repositories"], serde_json::json!(["alpha/one", "beta", "zeta"]));
        let res = reg.client.get(reg.url("/v2/_catalog?n=1")).send().await.unwrap();
        assert_eq!(header(&res, "link"), r#"</v2/_catalog?n=1&last=alpha/one>; rel="next""#);
        let res = reg.client.get(reg.url("/v2/_catalog?n=5&last=alpha/one")).send().await.unwrap();
        let page: serde_json::Value = res.json().await.unwrap();
        assert_eq!(page["repositories"], serde_json::json!(["beta", "zeta"]));
    }
}

#[tokio::test]
async fn deletes() {
    for b in all_backends() {
        let reg = start(b).await;
        let (bytes, digest) = reg.push_image("del/me", "v1", "d").await;
        let res = reg.put_manifest("del/me", "v2", OCI_MANIFEST, &bytes).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        // Deleting a tag keeps the manifest and its other tags.
        let res = reg.client.delete(reg.url("/v2/del/me/manifests/v1")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let res = reg.client.get(reg.url("/v2/del/me/manifests/v1")).send().await.unwrap();
        assert_error(res, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
        let res = reg.client.get(reg.url(&format!("/v2/del/me/manifests/{digest}"))).send().await;
        assert_eq!(res.unwrap().status(), StatusCode::OK);
        // Deleting the manifest removes its remaining tags.
        let res = reg.client.delete(reg.url(&format!("/v2/del/me/manifests/{digest}"))).send();
        assert_eq!(res.await.unwrap().status(), StatusCode::ACCEPTED);
        let res = reg.client.get(reg.url("/v2/del/me/manifests/v2")).send().await.unwrap();
        assert_error(res, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
        let res = reg.client.delete(reg.url(&format!("/v2/del/me/manifests/{digest}"))).send();
        assert_error(res.await.unwrap(), StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;

        let blob = reg.push_blob("del/me", b"to delete").await;
        let url = reg.url(&format!("/v2/del/me/blobs/{blob}"));
        assert_eq!(reg.client.delete(&url).send().await.unwrap().status(), StatusCode::ACCEPTED);
        assert_eq!(reg.client.head(&url).send().await.unwrap().status(), StatusCode::NOT_FOUND);
        let res = reg.client.delete(&url).send().await.unwrap();
        assert_error(res, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    }
}

#[tokio::test]
async fn sha512_blobs_and_manifests() {
    for b in all_backends() {
        let reg = start(b).await;
        let config = br#"{"architecture":"arm64","os":"linux"}"#;
        let c = reg.push_blob_with("s512", config, Algorithm::Sha512).await;
        assert!(c.as_str().starts_with("sha512:"));
        let l = reg.push_blob_with("s512", b"sha512 layer", Algorithm::Sha512).await;
        let res = reg.client.get(reg.url(&format!("/v2/s512/blobs/{l}"))).send().await.unwrap();
        assert_eq!(res.bytes().await.unwrap().as_ref(), b"sha512 layer");
        let m = image_manifest(OCI_MANIFEST, (OCI_CONFIG, &c, config.len()), &[(&l, 12)], None);
        let d = Digest::of(Algorithm::Sha512, m.as_bytes());
        let res = reg.put_manifest("s512", d.as_str(), OCI_MANIFEST, m.as_bytes()).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
        assert_eq!(header(&res, "docker-content-digest"), d.as_str());
        let res = reg.client.get(reg.url(&format!("/v2/s512/manifests/{d}"))).send().await.unwrap();
        assert_eq!(header(&res, "docker-content-digest"), d.as_str());
        assert_eq!(res.bytes().await.unwrap().as_ref(), m.as_bytes());

        // Chunked sha512 upload.
        let res = reg.client.post(reg.url("/v2/s512/blobs/uploads/")).send().await.unwrap();
        let loc = reg.location(&res);
        reg.client.patch(&loc).body(&b"part one, "[..]).send().await.unwrap();
        let d = Digest::of(Algorithm::Sha512, b"part one, part two");
        let res = reg.client.put(format!("{loc}?digest={d}")).body(&b"part two"[..]).send();
        assert_eq!(res.await.unwrap().status(), StatusCode::CREATED);
    }
}

#[tokio::test]
async fn invalid_repository_names() {
    for b in all_backends() {
        let reg = start(b).await;
        let res = reg.client.get(reg.url("/v2/Upper/Case/tags/list")).send().await.unwrap();
        assert_error(res, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
        let long = "a".repeat(256);
        let res = reg.client.get(reg.url(&format!("/v2/{long}/manifests/latest"))).send().await;
        assert_error(res.unwrap(), StatusCode::BAD_REQUEST, "NAME_INVALID").await;
        let res = reg.client.post(reg.url("/v2/a__-b/blobs/uploads/")).send().await.unwrap();
        assert_error(res, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
        // Dot segments are sent raw: an HTTP client would normalise them away.
        assert_eq!(raw_status(&reg, "GET /v2/a/../b/manifests/x HTTP/1.1").await, 400);
        assert_eq!(raw_status(&reg, "POST /v2/../../etc/blobs/uploads/ HTTP/1.1").await, 400);
        // Nothing was created by any of it.
        let res = reg.client.get(reg.url("/v2/_catalog")).send().await.unwrap();
        let all: serde_json::Value = res.json().await.unwrap();
        assert_eq!(all["repositories"], serde_json::json!([]));
    }
}

#[tokio::test]
async fn concurrent_pushes_of_the_same_content() {
    for b in all_backends() {
        let reg = std::sync::Arc::new(start(b).await);
        let mut tasks = Vec::new();
        // 50 clients at once, as the reliability requirement says.
        for i in 0..50 {
            let reg = reg.clone();
            tasks.push(tokio::spawn(async move {
                // Everyone pushes the same blobs and the same tag; half also their own tag.
                let (_, d) = reg.push_image("race/app", "latest", "same").await;
                if i % 2 == 0 {
                    reg.push_image("race/app", &format!("t{i}"), &format!("own{i}")).await;
                }
                d
            }));
        }
        let mut digests = Vec::new();
        for t in tasks {
            digests.push(t.await.unwrap());
        }
        assert!(digests.windows(2).all(|w| w[0] == w[1]));
        let res = reg.client.get(reg.url("/v2/race/app/manifests/latest")).send().await.unwrap();
        let bytes = res.bytes().await.unwrap();
        assert_eq!(Digest::sha256_of(&bytes), digests[0]);
        let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let layer = m["layers"][0]["digest"].as_str().unwrap();
        let res = reg.client.get(reg.url(&format!("/v2/race/app/blobs/{layer}"))).send().await;
        let data = res.unwrap().bytes().await.unwrap();
        assert_eq!(Digest::sha256_of(&data).as_str(), layer);
        let res = reg.client.get(reg.url("/v2/race/app/tags/list")).send().await.unwrap();
        let tags: serde_json::Value = res.json().await.unwrap();
        assert_eq!(tags["tags"].as_array().unwrap().len(), 26);
    }
}
