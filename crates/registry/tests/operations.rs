//! Health, readiness, metrics and listening errors.

mod common;

use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn health_readiness_and_metrics() {
    for &b in BACKENDS {
        let reg = start(b).await;
        let res = reg.client.get(reg.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = reg.client.get(reg.url("/readyz")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        reg.push_blob("metered", b"twelve bytes").await;
        let res = reg.client.get(reg.url("/v2/metered/manifests/missing")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let text = reg.client.get(reg.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(
            text.contains(r#"berth_registry_requests_total{method="POST",status="201"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"berth_registry_requests_total{method="GET",status="404"} 1"#),
            "{text}"
        );
        assert!(text.contains("berth_registry_bytes_received_total 12"), "{text}");
        assert!(text.contains("berth_registry_request_duration_seconds_count"), "{text}");
        assert!(text.contains("berth_registry_storage_blobs 1\n"), "{text}");
        assert!(text.contains("berth_registry_storage_bytes 12\n"), "{text}");
    }
}

#[tokio::test]
async fn a_taken_port_is_reported_like_docker() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = berth_registry::server::bind(&addr).await.unwrap_err();
    assert_eq!(err.to_string(), format!("listen tcp {addr}: bind: address already in use"));
    let err = berth_registry::server::bind("no-port-here").await.unwrap_err();
    assert!(err.to_string().contains("invalid listen address"), "{err}");
}

#[tokio::test]
async fn graceful_shutdown_lets_a_request_finish() {
    let dir = tempfile::tempdir().unwrap();
    let registry = berth_registry::open_local(dir.path(), Default::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = berth_registry::server::app(registry, None);
    let server = tokio::spawn(berth_registry::server::serve(listener, app, async {
        let _ = rx.await;
    }));
    // A streamed upload that is still sending when shutdown starts.
    let client = reqwest::Client::new();
    let res = client.post(format!("{base}/v2/slow/blobs/uploads/")).send().await.unwrap();
    let loc = format!("{base}{}", header(&res, "location"));
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let stream = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let patch = tokio::spawn(client.patch(&loc).body(reqwest::Body::wrap_stream(stream)).send());
    body_tx.send(Ok(b"first half ".to_vec())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    tx.send(()).unwrap();
    body_tx.send(Ok(b"second half".to_vec())).await.unwrap();
    drop(body_tx);
    let res = patch.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&res, "range"), "0-21");
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn serves_https_with_the_token_realm_on_https() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let tls =
        berth_registry::server::tls_config(&fixtures.join("tls.crt"), &fixtures.join("tls.key"))
            .unwrap();
    let registry = berth_registry::open_local(dir.path(), Default::default()).unwrap();
    let auth =
        berth_registry::auth::Auth::open(dir.path(), registry.metadata().clone(), "svc").unwrap();
    let options = berth_registry::server::Options {
        auth: Some(auth),
        gc: None,
        tls: true,
        web: Default::default(),
    };
    let app = berth_registry::server::build(registry, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(berth_registry::server::serve_tls(listener, app, tls, async {
        let _ = rx.await;
    }));
    let cert =
        reqwest::Certificate::from_pem(&std::fs::read(fixtures.join("tls.crt")).unwrap()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(cert).build().unwrap();
    let res = client.get(format!("https://localhost:{port}/v2/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&res, "www-authenticate"),
        format!(r#"Bearer realm="https://localhost:{port}/token",service="svc""#)
    );
    let res = client.get(format!("https://localhost:{port}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Over TLS the website's cookies are Secure and __Host- prefixed.
    let res = client.get(format!("https://localhost:{port}/login")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = header(&res, "set-cookie");
    assert!(cookie.starts_with("__Host-berth_csrf="), "{cookie}");
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly") && cookie.contains("Path=/")
    );
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new().get(format!("http://localhost:{port}/v2/")).send().await;
    assert!(plain.is_err());
    // Bad key material is reported, not served.
    let err =
        berth_registry::server::tls_config(&fixtures.join("tls.key"), &fixtures.join("tls.key"));
    assert!(err.unwrap_err().to_string().contains("no certificate"));
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_upload_survives_a_server_killed_mid_push() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |listener: tokio::net::TcpListener| {
        let registry = berth_registry::open_local(dir.path(), Default::default()).unwrap();
        let app = berth_registry::server::app(registry, None);
        tokio::spawn(berth_registry::server::serve(listener, app, std::future::pending()))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = serve(listener);
    let client = reqwest::Client::new();
    let res = client.post(format!("http://{addr}/v2/crash/blobs/uploads/")).send().await.unwrap();
    let loc = header(&res, "location");
    let res = client
        .patch(format!("http://{addr}{loc}"))
        .header("content-range", "0-4")
        .body(&b"01234"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // No graceful anything: the task is dropped, as a killed process would be.
    first.abort();
    let _ = first.await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _second = serve(listener);
    let res = client.get(format!("http://{addr}{loc}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&res, "range"), "0-4");
    let digest = berth_reference::Digest::sha256_of(b"0123456789");
    let res = client
        .put(format!("http://{addr}{loc}?digest={digest}"))
        .header("content-range", "5-9")
        .body(&b"56789"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = client.get(format!("http://{addr}/v2/crash/blobs/{digest}")).send().await.unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"0123456789");
}
