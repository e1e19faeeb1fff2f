//! The contract suites every metadata implementation must pass, one per
//! concern ([`distribution`], [`uploads`], [`accounts`], [`hub`],
//! [`collection`]). Call [`run_suite`] (all of them) from a
//! `#[tokio::test]` with a fresh, empty store.

use std::collections::BTreeMap;

use berth_reference::Digest;

use super::{Accounts, ManifestRecord, MetadataStore, UploadRecord, Uploads, UserRecord};
use crate::storage::UploadId;

fn d(s: &str) -> Digest {
    Digest::sha256_of(s.as_bytes())
}

fn record(name: &str, subject: Option<&str>, children: &[&str]) -> ManifestRecord {
    ManifestRecord {
        digest: d(name),
        media_type: berth_oci::media_type::OCI_MANIFEST.to_owned(),
        size: 100,
        subject: subject.map(d),
        artifact_type: Some("application/x.test".into()),
        annotations: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
        blobs: vec![d("config"), d("layer")],
        children: children.iter().map(|c| d(c)).collect(),
    }
}

/// Links the blobs [`record`] names, as a push would before the manifest.
async fn link_record_blobs(store: &dyn MetadataStore, repo: &str) {
    store.link_blob(repo, &d("config"), 1).await.unwrap();
    store.link_blob(repo, &d("layer"), 1).await.unwrap();
}

/// Runs every suite against `store`, panicking on the first failure.
pub async fn run_suite(store: &dyn MetadataStore) {
    distribution(store).await;
    uploads(store).await;
    accounts(store).await;
    hub(store).await;
    collection(store).await;
    browse(store).await;
}

/// [`super::Distribution`]: blob links, manifests, tags, referrers, listing.
pub async fn distribution(store: &dyn MetadataStore) {
    blob_links(store).await;
    manifests_and_tags(store).await;
    several_tags_at_once(store).await;
    referrers(store).await;
    listing_pagination(store).await;
    delete_repository(store).await;
}

/// [`Uploads`].
pub async fn uploads(store: &dyn Uploads) {
    upload_records(store).await;
}

/// [`Accounts`]: users and organisations in one namespace.
pub async fn accounts(store: &dyn Accounts) {
    users_and_orgs(store).await;
    shared_secrets(store).await;
}

/// [`super::HubSettings`]: privacy, descriptions, search and stars.
pub async fn hub(store: &dyn MetadataStore) {
    privacy(store).await;
    search_and_stars(store).await;
}

/// [`super::browse`]: access tokens, sessions, paged listings, renames.
pub async fn browse(store: &dyn MetadataStore) {
    access_tokens(store).await;
    sessions(store).await;
    listings(store).await;
    tag_pages(store).await;
    renames(store).await;
}

/// [`super::Collection`]: what garbage collection sees and removes.
pub async fn collection(store: &dyn MetadataStore) {
    gc_view(store).await;
    gc_view_links(store).await;
}

async fn blob_links(store: &dyn MetadataStore) {
    assert!(!store.repository_exists("links/a").await.unwrap());
    assert_eq!(store.blob_link("links/a", &d("x")).await.unwrap(), None);
    store.link_blob("links/a", &d("x"), 7).await.unwrap();
    store.link_blob("links/a", &d("x"), 7).await.unwrap();
    assert!(store.repository_exists("links/a").await.unwrap());
    assert_eq!(store.blob_link("links/a", &d("x")).await.unwrap(), Some(7));
    assert_eq!(store.blob_link("links/b", &d("x")).await.unwrap(), None);
    assert!(store.unlink_blob("links/a", &d("x")).await.unwrap());
    assert!(!store.unlink_blob("links/a", &d("x")).await.unwrap());
    assert_eq!(store.blob_link("links/a", &d("x")).await.unwrap(), None);
    // Which repositories hold a blob (for mounts without `from`).
    store.link_blob("links/c", &d("y"), 2).await.unwrap();
    store.link_blob("links/b", &d("y"), 2).await.unwrap();
    assert_eq!(store.blob_repositories(&d("y"), 10).await.unwrap(), ["links/b", "links/c"]);
    assert_eq!(store.blob_repositories(&d("y"), 1).await.unwrap(), ["links/b"]);
    assert!(store.blob_repositories(&d("x"), 10).await.unwrap().is_empty());
}

async fn manifests_and_tags(store: &dyn MetadataStore) {
    let repo = "tags/repo";
    link_record_blobs(store, repo).await;
    let m1 = record("m1", None, &[]);
    let index = record("index", None, &["m1"]);
    store.put_manifest(repo, &m1, &["v1"]).await.unwrap();
    store.put_manifest(repo, &m1, &["v1"]).await.unwrap();
    store.put_manifest(repo, &index, &["latest"]).await.unwrap();
    assert_eq!(store.manifest(repo, &d("m1")).await.unwrap(), Some(m1.clone()));
    assert_eq!(store.manifest(repo, &d("index")).await.unwrap(), Some(index.clone()));
    assert_eq!(store.manifest("tags/other", &d("m1")).await.unwrap(), None);
    assert_eq!(store.resolve_tag(repo, "v1").await.unwrap(), Some(d("m1")));
    // Re-pointing a tag moves it.
    store.put_manifest(repo, &index, &["v1"]).await.unwrap();
    assert_eq!(store.resolve_tag(repo, "v1").await.unwrap(), Some(d("index")));
    store.put_manifest(repo, &m1, &["v2"]).await.unwrap();
    assert_eq!(store.list_tags(repo, None, 100).await.unwrap(), ["latest", "v1", "v2"]);
    assert!(store.delete_tag(repo, "v2").await.unwrap());
    assert!(!store.delete_tag(repo, "v2").await.unwrap());
    assert_eq!(store.manifest(repo, &d("m1")).await.unwrap(), Some(m1));
    // Deleting a manifest removes its tags.
    assert!(store.delete_manifest(repo, &d("index")).await.unwrap());
    assert!(!store.delete_manifest(repo, &d("index")).await.unwrap());
    assert_eq!(store.resolve_tag(repo, "latest").await.unwrap(), None);
    assert_eq!(store.list_tags(repo, None, 100).await.unwrap(), Vec::<String>::new());
}

/// A push by digest with `?tag=` parameters: every tag or none.
async fn several_tags_at_once(store: &dyn MetadataStore) {
    let repo = "tags/several";
    link_record_blobs(store, repo).await;
    let first = record("several-1", None, &[]);
    let second = record("several-2", None, &[]);
    store.put_manifest(repo, &first, &["1.2.3", "1.2", "latest"]).await.unwrap();
    for tag in ["1.2.3", "1.2", "latest"] {
        assert_eq!(store.resolve_tag(repo, tag).await.unwrap(), Some(d("several-1")), "{tag}");
    }
    // Again with an overlapping set: idempotent for the manifest, and moves what it names.
    store.put_manifest(repo, &second, &["1.2", "latest", "1"]).await.unwrap();
    store.put_manifest(repo, &second, &["1.2", "latest", "1"]).await.unwrap();
    assert_eq!(store.resolve_tag(repo, "1.2.3").await.unwrap(), Some(d("several-1")));
    for tag in ["1.2", "latest", "1"] {
        assert_eq!(store.resolve_tag(repo, tag).await.unwrap(), Some(d("several-2")), "{tag}");
    }
    assert_eq!(store.list_tags(repo, None, 100).await.unwrap(), ["1", "1.2", "1.2.3", "latest"]);
    // A manifest that fails its check moves no tag and creates none.
    let mut unlinked = record("several-3", None, &[]);
    unlinked.blobs.push(d("never linked"));
    let err = store.put_manifest(repo, &unlinked, &["latest", "new"]).await.unwrap_err();
    assert!(matches!(err, super::MetadataError::MissingBlob(_)), "{err:?}");
    assert_eq!(store.resolve_tag(repo, "latest").await.unwrap(), Some(d("several-2")));
    assert_eq!(store.resolve_tag(repo, "new").await.unwrap(), None);
    assert_eq!(store.manifest(repo, &d("several-3")).await.unwrap(), None);
    // Children need not exist: a sparse index is recorded with all of them.
    let sparse = record("several-index", None, &["several-1", "never pushed"]);
    store.put_manifest(repo, &sparse, &["index"]).await.unwrap();
    let stored = store.manifest(repo, &d("several-index")).await.unwrap().unwrap();
    assert_eq!(stored.children, [d("several-1"), d("never pushed")]);
}

async fn referrers(store: &dyn MetadataStore) {
    let repo = "ref/repo";
    link_record_blobs(store, repo).await;
    link_record_blobs(store, "ref/second").await;
    store.put_manifest(repo, &record("sig", Some("target"), &[]), &[]).await.unwrap();
    store.put_manifest(repo, &record("sbom", Some("target"), &[]), &[]).await.unwrap();
    store.put_manifest(repo, &record("other", Some("elsewhere"), &[]), &[]).await.unwrap();
    store.put_manifest("ref/second", &record("x", Some("target"), &[]), &[]).await.unwrap();
    let mut got: Vec<Digest> =
        store.referrers(repo, &d("target")).await.unwrap().into_iter().map(|r| r.digest).collect();
    got.sort();
    let mut want = vec![d("sig"), d("sbom")];
    want.sort();
    assert_eq!(got, want);
    assert!(store.referrers(repo, &d("nothing")).await.unwrap().is_empty());
}

async fn listing_pagination(store: &dyn MetadataStore) {
    let repo = "page/repo";
    link_record_blobs(store, repo).await;
    let m = record("paged", None, &[]);
    for tag in ["c", "a", "b", "d"] {
        store.put_manifest(repo, &m, &[tag]).await.unwrap();
    }
    assert_eq!(store.list_tags(repo, None, 2).await.unwrap(), ["a", "b"]);
    assert_eq!(store.list_tags(repo, Some("b"), 2).await.unwrap(), ["c", "d"]);
    assert!(store.list_tags(repo, Some("d"), 2).await.unwrap().is_empty());
    let all = store.list_repositories(None, 1000).await.unwrap();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    assert!(all.contains(&repo.to_owned()));
    let after = store.list_repositories(Some(repo), 1000).await.unwrap();
    assert!(after.iter().all(|r| r.as_str() > repo));
}

async fn upload_records(store: &dyn Uploads) {
    let id = UploadId::generate();
    let rec = UploadRecord { id: id.clone(), repository: "up/repo".into(), started: 1234 };
    store.create_upload(&rec).await.unwrap();
    assert_eq!(store.upload(&id).await.unwrap(), Some(rec.clone()));
    assert!(store.list_uploads().await.unwrap().contains(&rec));
    assert!(store.delete_upload(&id).await.unwrap());
    assert_eq!(store.upload(&id).await.unwrap(), None);
    assert!(!store.delete_upload(&id).await.unwrap());
}

async fn delete_repository(store: &dyn MetadataStore) {
    let repo = "gone/repo";
    store.link_blob(repo, &d("b"), 1).await.unwrap();
    link_record_blobs(store, repo).await;
    store.put_manifest(repo, &record("gm", None, &[]), &["t"]).await.unwrap();
    store.set_repository_owner_description(repo, Some("old words"), Some("old")).await.unwrap();
    assert!(store.delete_repository(repo).await.unwrap());
    assert!(!store.repository_exists(repo).await.unwrap());
    assert_eq!(store.resolve_tag(repo, "t").await.unwrap(), None);
    assert_eq!(store.manifest(repo, &d("gm")).await.unwrap(), None);
    assert_eq!(store.blob_link(repo, &d("b")).await.unwrap(), None);
    // The name can be used again from scratch.
    link_record_blobs(store, repo).await;
    store.put_manifest(repo, &record("gm", None, &[]), &["t"]).await.unwrap();
    assert_eq!(store.resolve_tag(repo, "t").await.unwrap(), Some(d("gm")));
    let fresh = store.repository_summary(repo).await.unwrap().unwrap();
    assert_eq!((fresh.description, fresh.full_description), (None, None));
    assert!(!store.delete_repository("never/was").await.unwrap());
}

async fn users_and_orgs(store: &dyn Accounts) {
    let alice = UserRecord { name: "alice".into(), password_hash: "$2b$x".into(), admin: false };
    assert!(store.create_user(&alice).await.unwrap());
    assert!(!store.create_user(&alice).await.unwrap());
    assert_eq!(store.user("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user("nobody").await.unwrap(), None);
    assert!(store.set_password("alice", "$2b$y").await.unwrap());
    assert_eq!(store.user("alice").await.unwrap().unwrap().password_hash, "$2b$y");
    assert!(!store.set_password("nobody", "$2b$y").await.unwrap());
    let root = UserRecord { name: "root".into(), password_hash: "$2b$z".into(), admin: true };
    store.create_user(&root).await.unwrap();
    let names: Vec<String> =
        store.list_users().await.unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["alice", "root"]);
    let page = |offset, limit| async move {
        let (users, total) = store.users_page(offset, limit).await.unwrap();
        (users.into_iter().map(|u| u.name).collect::<Vec<_>>(), total)
    };
    assert_eq!(page(0, 1).await, (vec!["alice".to_owned()], 2));
    assert_eq!(page(1, 5).await, (vec!["root".to_owned()], 2));
    assert_eq!(page(2, 5).await, (vec![], 2));

    // Users and organisations share the namespace.
    assert!(!store.create_org("alice").await.unwrap());
    assert!(store.create_org("acme").await.unwrap());
    assert!(!store.create_org("acme").await.unwrap());
    let squatter = UserRecord { name: "acme".into(), ..alice.clone() };
    assert!(!store.create_user(&squatter).await.unwrap());
    assert!(store.add_org_member("acme", "alice").await.unwrap());
    assert!(!store.add_org_member("acme", "ghost").await.unwrap());
    assert!(!store.add_org_member("ghost-org", "alice").await.unwrap());
    assert!(store.set_org_verified("acme", true).await.unwrap());
    let acme = store.org("acme").await.unwrap().unwrap();
    assert!(acme.verified);
    assert_eq!(acme.members, ["alice"]);
    assert!(store.remove_org_member("acme", "alice").await.unwrap());
    assert!(store.org("acme").await.unwrap().unwrap().members.is_empty());
    store.add_org_member("acme", "alice").await.unwrap();
    assert!(store.delete_user("alice").await.unwrap());
    assert!(!store.delete_user("alice").await.unwrap());
    assert!(store.org("acme").await.unwrap().unwrap().members.is_empty());
}

async fn privacy(store: &dyn MetadataStore) {
    // Visibility may be set before the first push.
    assert!(!store.repository_private("acme/secret").await.unwrap());
    store.set_repository_private("acme/secret", true).await.unwrap();
    assert!(store.repository_private("acme/secret").await.unwrap());
    assert!(!store.repository_exists("acme/secret").await.unwrap());
    store.set_repository_private("acme/secret", false).await.unwrap();
    assert!(!store.repository_private("acme/secret").await.unwrap());
}

async fn search_and_stars(store: &dyn MetadataStore) {
    store.link_blob("find/alpha", &d("s"), 1).await.unwrap();
    store.link_blob("find/beta", &d("s"), 1).await.unwrap();
    store.link_blob("other/gamma", &d("s"), 1).await.unwrap();
    store.set_repository_description("other/gamma", Some("An ALPHA tool")).await.unwrap();
    store.set_repository_private("find/beta", true).await.unwrap();
    assert!(store.star("u1", "find/beta").await.unwrap());
    assert!(!store.star("u1", "find/beta").await.unwrap());
    assert!(store.star("u2", "find/beta").await.unwrap());
    let hits = store.search_repositories("ALPHA", 10).await.unwrap();
    let names: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["find/alpha", "other/gamma"]);
    assert_eq!(hits[1].description.as_deref(), Some("An ALPHA tool"));
    let hits = store.search_repositories("find", 10).await.unwrap();
    assert_eq!(hits[0].name, "find/beta");
    assert_eq!(hits[0].stars, 2);
    assert!(hits[0].private);
    assert_eq!(store.search_repositories("find", 1).await.unwrap().len(), 1);
    assert!(store.unstar("u2", "find/beta").await.unwrap());
    assert!(!store.unstar("u2", "find/beta").await.unwrap());
    assert_eq!(store.search_repositories("beta", 10).await.unwrap()[0].stars, 1);
    // The owner's description wins over the label's; an empty one yields to it.
    store.set_repository_owner_description("other/gamma", Some("Owner words"), None).await.unwrap();
    let hit = store.repository_summary("other/gamma").await.unwrap().unwrap();
    assert_eq!(hit.description.as_deref(), Some("Owner words"));
    assert_eq!(hit.full_description, None);
    assert!(
        store
            .search_repositories("alpha", 10)
            .await
            .unwrap()
            .iter()
            .all(|h| h.name != "other/gamma")
    );
    assert_eq!(store.search_repositories("owner w", 10).await.unwrap()[0].name, "other/gamma");
    store.set_repository_owner_description("other/gamma", None, Some("# Long")).await.unwrap();
    let hit = store.repository_summary("other/gamma").await.unwrap().unwrap();
    assert_eq!(hit.description.as_deref(), Some("Owner words"));
    assert_eq!(hit.full_description.as_deref(), Some("# Long"));
    store.set_repository_owner_description("other/gamma", Some(""), None).await.unwrap();
    let hit = store.repository_summary("other/gamma").await.unwrap().unwrap();
    assert_eq!(hit.description.as_deref(), Some("An ALPHA tool"));
    assert_eq!(store.repository_summary("no/such").await.unwrap(), None);
    store.set_repository_description("other/gamma", None).await.unwrap();
    assert_eq!(store.search_repositories("gamma", 10).await.unwrap()[0].description, None);
}

/// What garbage collection reads in batches and removes, for a store that
/// is also the object ledger (both built-in ones are), and its lease.
pub async fn ledger_collection<S: MetadataStore + crate::storage::ObjectLedger>(store: &S) {
    use crate::storage::ObjectEntry;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    let names = ["lc-linked", "lc-ref", "lc-manifest", "lc-free", "lc-young", "lc-stale"];
    for name in names {
        // Recorded long ago, but for the young one.
        let created = if name == "lc-young" { now } else { 100 };
        let entry = ObjectEntry { key: format!("key/{name}"), size: 5, created };
        assert!(store.object_insert(&d(name), &entry).await.unwrap());
    }
    store.link_blob("lc/a", &d("lc-linked"), 5).await.unwrap();
    store.link_blob("lc/s", &d("lc-stale"), 5).await.unwrap();
    store.link_blob("lc/m", &d("lc-ref"), 5).await.unwrap();
    let m = ManifestRecord {
        digest: d("lc-manifest"),
        blobs: vec![d("lc-ref")],
        children: vec![],
        ..record("lc-manifest", None, &[])
    };
    store.put_manifest("lc/m", &m, &[]).await.unwrap();
    let ours = |v: Vec<(Digest, ObjectEntry)>| -> Vec<Digest> {
        v.into_iter().map(|(d, _)| d).filter(|x| names.iter().any(|n| d(n) == *x)).collect()
    };
    let sorted = |mut v: Vec<Digest>| {
        v.sort();
        v
    };
    // Every link counts; or, as a dry run sees it, none made before the cutoff.
    let unkept = ours(store.unkept_objects(None, None, 100).await.unwrap());
    assert_eq!(unkept, sorted(vec![d("lc-free"), d("lc-young")]));
    let dry = ours(store.unkept_objects(None, Some(now + 10), 100).await.unwrap());
    let all_links_stale = vec![d("lc-free"), d("lc-young"), d("lc-stale"), d("lc-linked")];
    assert_eq!(dry, sorted(all_links_stale));
    // Keyset pages of one.
    let mut paged = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = store.unkept_objects(after.as_ref(), None, 1).await.unwrap();
        assert!(page.len() <= 1);
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        paged.extend(ours(page));
    }
    assert_eq!(paged, unkept);
    let all: Vec<Digest> = names.iter().map(|n| d(n)).collect();
    let kept = store.blobs_kept(&all, None).await.unwrap();
    let expected: std::collections::HashSet<Digest> =
        ["lc-linked", "lc-ref", "lc-manifest", "lc-stale"].iter().map(|n| d(n)).collect();
    assert_eq!(kept, expected);
    let kept_dry = store.blobs_kept(&all, Some(now + 10)).await.unwrap();
    assert_eq!(kept_dry, [d("lc-ref"), d("lc-manifest")].into_iter().collect());
    // Removal re-checks: only the old entry nothing keeps goes.
    let removed = store.remove_unkept_objects(&all, now - 10).await.unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].0, d("lc-free"));
    assert_eq!(removed[0].1.key, "key/lc-free");
    assert!(store.object_get(&d("lc-free")).await.unwrap().is_none());
    assert!(store.object_get(&d("lc-young")).await.unwrap().is_some());
    // A touch makes an old entry young again; a removed one cannot be touched.
    assert!(!store.object_touch(&d("lc-free"), now).await.unwrap());
    let old = ObjectEntry { key: "key/lc-touched".into(), size: 1, created: 100 };
    assert!(store.object_insert(&d("lc-touched"), &old).await.unwrap());
    assert!(store.object_touch(&d("lc-touched"), now).await.unwrap());
    assert!(store.remove_unkept_objects(&[d("lc-touched")], now - 10).await.unwrap().is_empty());
    // A touch never moves an entry back in time.
    assert!(store.object_touch(&d("lc-touched"), 5).await.unwrap());
    assert_eq!(store.object_get(&d("lc-touched")).await.unwrap().unwrap().created, now);

    // Stale links: made before the cutoff, used by no manifest of their repository.
    let stale = store.stale_links(None, now + 10, 100).await.unwrap();
    let stale: Vec<_> = stale.into_iter().filter(|(r, _)| r.starts_with("lc/")).collect();
    assert_eq!(stale, [("lc/a".to_owned(), d("lc-linked")), ("lc/s".to_owned(), d("lc-stale"))]);
    assert!(store.stale_links(None, 0, 100).await.unwrap().is_empty(), "none that old");
    let first = store.stale_links(Some(("lc/a", &d("lc-linked"))), now + 10, 1).await.unwrap();
    assert_eq!(first, [("lc/s".to_owned(), d("lc-stale"))]);
    let with_used = [stale.clone(), vec![("lc/m".to_owned(), d("lc-ref"))]].concat();
    assert_eq!(store.unlink_stale_blobs(&with_used, now + 10).await.unwrap(), 2);
    assert_eq!(store.blob_link("lc/m", &d("lc-ref")).await.unwrap(), Some(5));
    assert_eq!(store.blob_link("lc/s", &d("lc-stale")).await.unwrap(), None);

    // One lease at a time, free again once dropped.
    let lease = store.lease_collection().await.unwrap();
    let err = store.lease_collection().await.err().expect("a second lease is refused");
    assert!(matches!(err, super::MetadataError::CollectionRunning), "{err:?}");
    assert_eq!(err.to_string(), "garbage collection is already running on another replica");
    lease.release().await;
    let lease = store.lease_collection().await.expect("free at once when released");
    drop(lease);
    // Dropped unreleased: the session's end reaches the server a moment later.
    let mut again = store.lease_collection().await;
    for _ in 0..50 {
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        again = store.lease_collection().await;
    }
    assert!(again.is_ok(), "the lease is free once dropped");
}

async fn gc_view(store: &dyn MetadataStore) {
    let repo = "gc/view";
    store.link_blob(repo, &d("gc-linked"), 3).await.unwrap();
    link_record_blobs(store, repo).await;
    store.put_manifest(repo, &record("gc-m", None, &[]), &["t"]).await.unwrap();
    assert_eq!(store.blob_linked_anywhere(&d("gc-linked")).await.unwrap(), Some(3));
    assert_eq!(store.blob_linked_anywhere(&d("gc-none")).await.unwrap(), None);
    let snap = store.gc_snapshot().await.unwrap();
    assert!(snap.links.iter().any(|(r, b, t)| r == repo && *b == d("gc-linked") && *t > 0));
    assert!(snap.tags.contains(&(repo.to_owned(), d("gc-m"))));
    let (_, m, created) =
        snap.manifests.iter().find(|(r, m, _)| r == repo && m.digest == d("gc-m")).unwrap();
    assert_eq!(m.blobs, [d("config"), d("layer")]);
    assert!(*created > 0);
}

async fn gc_view_links(store: &dyn MetadataStore) {
    let repo = "gc/links";
    let far_future = i64::MAX;
    // A manifest cannot name a blob its repository does not hold.
    let err = store.put_manifest(repo, &record("needs-blobs", None, &[]), &[]).await.unwrap_err();
    assert!(matches!(err, super::MetadataError::MissingBlob(_)), "{err:?}");
    assert_eq!(store.manifest(repo, &d("needs-blobs")).await.unwrap(), None);
    store.link_blob(repo, &d("config"), 1).await.unwrap();
    store.link_blob(repo, &d("layer"), 1).await.unwrap();
    store.link_blob(repo, &d("loose"), 1).await.unwrap();
    store.put_manifest(repo, &record("uses", None, &[]), &[]).await.unwrap();
    // Links a manifest uses stay; a loose one goes, but only if old enough.
    assert!(!store.unlink_stale_blob(repo, &d("layer"), far_future).await.unwrap());
    assert!(!store.unlink_stale_blob(repo, &d("loose"), 0).await.unwrap());
    assert!(store.blob_in_use(&d("loose")).await.unwrap());
    assert!(store.unlink_stale_blob(repo, &d("loose"), far_future).await.unwrap());
    assert!(!store.blob_in_use(&d("loose")).await.unwrap());
    assert!(store.blob_in_use(&d("uses")).await.unwrap());
    assert!(store.blob_in_use(&d("layer")).await.unwrap());
}

async fn shared_secrets(store: &dyn Accounts) {
    let first = store.shared_secret("token-key", b"first").await.unwrap();
    assert_eq!(first, b"first");
    // Whoever asks later gets the stored one, not its own candidate.
    assert_eq!(store.shared_secret("token-key", b"second").await.unwrap(), b"first");
    assert_eq!(store.shared_secret("other", b"x").await.unwrap(), b"x");
}

async fn access_tokens(store: &dyn MetadataStore) {
    use super::browse::AccessTokenRecord;
    let user = UserRecord { name: "tokuser".into(), password_hash: "$2b$x".into(), admin: false };
    assert!(store.create_user(&user).await.unwrap());
    let token = |id: &str, created: i64| AccessTokenRecord {
        id: id.into(),
        user: "tokuser".into(),
        description: format!("token {id}"),
        scope: "read".into(),
        hash: "ab".repeat(32),
        created,
        last_used: None,
    };
    assert!(store.create_access_token(&token("t1", 10)).await.unwrap());
    assert!(store.create_access_token(&token("t2", 20)).await.unwrap());
    let mut orphan = token("t3", 30);
    orphan.user = "nobody".into();
    assert!(!store.create_access_token(&orphan).await.unwrap(), "the user must exist");
    assert_eq!(store.access_token("t1").await.unwrap(), Some(token("t1", 10)));
    assert_eq!(store.access_token("nope").await.unwrap(), None);
    let ids: Vec<String> =
        store.list_access_tokens("tokuser").await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["t2", "t1"], "newest first");
    store.touch_access_token("t1", 99).await.unwrap();
    assert_eq!(store.access_token("t1").await.unwrap().unwrap().last_used, Some(99));
    assert!(!store.delete_access_token("someone", "t1").await.unwrap(), "only its user's");
    assert!(store.delete_access_token("tokuser", "t1").await.unwrap());
    assert!(!store.delete_access_token("tokuser", "t1").await.unwrap());
    assert!(store.delete_user("tokuser").await.unwrap());
    assert_eq!(store.access_token("t2").await.unwrap(), None, "removed with the user");
}

async fn sessions(store: &dyn MetadataStore) {
    use super::browse::SessionRecord;
    let user = UserRecord { name: "sesuser".into(), password_hash: "$2b$x".into(), admin: false };
    assert!(store.create_user(&user).await.unwrap());
    let s = |hash: &str, expires: i64| SessionRecord {
        hash: hash.into(),
        user: "sesuser".into(),
        created: 100,
        expires,
    };
    assert!(store.create_session(&s("h1", 200)).await.unwrap());
    assert!(store.create_session(&s("h2", 300)).await.unwrap());
    let mut orphan = s("h3", 300);
    orphan.user = "nobody".into();
    assert!(!store.create_session(&orphan).await.unwrap());
    assert_eq!(store.session("h1", 150).await.unwrap(), Some(s("h1", 200)));
    assert_eq!(store.session("h1", 200).await.unwrap(), None, "expired");
    assert!(store.delete_session("h1").await.unwrap());
    assert_eq!(store.session("h1", 150).await.unwrap(), None);
    assert_eq!(store.delete_user_sessions("sesuser").await.unwrap(), 1);
    assert_eq!(store.session("h2", 150).await.unwrap(), None);
    assert!(store.create_session(&s("h4", 300)).await.unwrap());
    assert!(store.delete_user("sesuser").await.unwrap());
    assert_eq!(store.session("h4", 150).await.unwrap(), None, "removed with the user");
}

async fn listings(store: &dyn MetadataStore) {
    use super::browse::{RepoOrder, RepoQuery, Viewer};
    for repo in ["lst/one", "lst/two", "lst/hidden", "lstorg/tool", "library/lstofficial"] {
        link_record_blobs(store, repo).await;
        store.put_manifest(repo, &record(repo, None, &[]), &["v1"]).await.unwrap();
        store.record_pusher(repo, "v1", "someone").await.unwrap();
    }
    store.set_repository_private("lst/hidden", true).await.unwrap();
    store.set_repository_description("lst/two", Some("Second LST")).await.unwrap();
    assert!(store.star("fan", "lst/two").await.unwrap());
    assert!(store.create_org("lstorg").await.unwrap());
    assert!(store.set_org_verified("lstorg", true).await.unwrap());
    let query = |text: Option<&str>, viewer: Viewer| RepoQuery {
        text: text.map(str::to_owned),
        namespace: None,
        official: false,
        verified: false,
        viewer,
        order: RepoOrder::Stars,
        offset: 0,
        limit: 10,
        count: true,
    };
    let names = |p: &super::browse::RepoPage| -> Vec<String> {
        p.items.iter().map(|r| r.summary.name.clone()).collect()
    };
    // Anonymous: public ones only, in the count too; stars first.
    let page =
        store.query_repositories(&query(Some("lst"), Viewer::Namespaces(vec![]))).await.unwrap();
    assert_eq!(names(&page), ["lst/two", "library/lstofficial", "lst/one", "lstorg/tool"]);
    assert_eq!(page.total, 4);
    assert_eq!(page.items[0].summary.stars, 1);
    assert_eq!(page.items[0].summary.description.as_deref(), Some("Second LST"));
    // The namespace's members and administrators see the private one.
    let page = store
        .query_repositories(&query(Some("lst"), Viewer::Namespaces(vec!["lst".into()])))
        .await
        .unwrap();
    assert_eq!(page.total, 5);
    assert!(names(&page).contains(&"lst/hidden".to_owned()));
    assert_eq!(
        store.query_repositories(&query(Some("lst"), Viewer::Everything)).await.unwrap().total,
        5
    );
    // Paging keeps the total.
    let mut q = query(Some("lst"), Viewer::Namespaces(vec![]));
    q.offset = 1;
    q.limit = 2;
    let page = store.query_repositories(&q).await.unwrap();
    assert_eq!(names(&page), ["library/lstofficial", "lst/one"]);
    assert_eq!(page.total, 4);
    // Filters: official, verified publisher, namespace; by name.
    let mut q = query(Some("lst"), Viewer::Everything);
    q.official = true;
    assert_eq!(names(&store.query_repositories(&q).await.unwrap()), ["library/lstofficial"]);
    let mut q = query(Some("lst"), Viewer::Everything);
    q.verified = true;
    let page = store.query_repositories(&q).await.unwrap();
    assert_eq!(names(&page), ["lstorg/tool"]);
    assert!(page.items[0].verified);
    let mut q = query(None, Viewer::Namespaces(vec![]));
    q.namespace = Some("lst".into());
    q.order = RepoOrder::Name;
    assert_eq!(names(&store.query_repositories(&q).await.unwrap()), ["lst/one", "lst/two"]);
    let mut q = query(None, Viewer::Everything);
    q.order = RepoOrder::Updated;
    let page = store.query_repositories(&q).await.unwrap();
    assert!(page.items.windows(2).all(|w| w[0].updated >= w[1].updated));
    assert!(page.items.iter().all(|r| r.updated > 0));
    // Everything by stars: starred first, then by name; pages agree.
    let everything =
        store.query_repositories(&query(None, Viewer::Namespaces(vec![]))).await.unwrap();
    assert!(everything.items.iter().all(|r| !r.summary.private));
    assert!(everything.items.windows(2).all(|w| {
        let (a, b) = (&w[0].summary, &w[1].summary);
        a.stars > b.stars || (a.stars == b.stars && a.name < b.name)
    }));
    let mut q = query(None, Viewer::Namespaces(vec![]));
    q.offset = 1;
    q.limit = 3;
    let part = store.query_repositories(&q).await.unwrap();
    assert_eq!(names(&part), names(&everything)[1..4]);
    let mut by_name = query(None, Viewer::Namespaces(vec![]));
    by_name.order = RepoOrder::Name;
    assert_eq!(part.total, store.query_repositories(&by_name).await.unwrap().total);
    assert!(everything.items.iter().any(|r| r.summary.stars > 0));
    // Text search follows description changes (owner's over the label's).
    assert_eq!(
        names(
            &store
                .query_repositories(&query(Some("second lst"), Viewer::Everything))
                .await
                .unwrap()
        ),
        ["lst/two"]
    );
    store.set_repository_owner_description("lst/two", Some("Renamed words"), None).await.unwrap();
    assert!(
        store
            .query_repositories(&query(Some("second lst"), Viewer::Everything))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        names(
            &store.query_repositories(&query(Some("NAMED WO"), Viewer::Everything)).await.unwrap()
        ),
        ["lst/two"]
    );
    store.set_repository_owner_description("lst/two", Some(""), None).await.unwrap();
    assert_eq!(
        store
            .query_repositories(&query(Some("second lst"), Viewer::Everything))
            .await
            .unwrap()
            .total,
        1
    );
    // Short texts too (under three characters).
    assert!(
        store.query_repositories(&query(Some("tw"), Viewer::Everything)).await.unwrap().total >= 1
    );
    assert_eq!(store.orgs_of("nobody").await.unwrap(), Vec::<String>::new());
    assert!(store.starred("fan", "lst/two").await.unwrap());
    assert!(!store.starred("fan", "lst/one").await.unwrap());
}

async fn tag_pages(store: &dyn MetadataStore) {
    use super::browse::TagOrder;
    let repo = "tagpage/repo";
    link_record_blobs(store, repo).await;
    let m = record("tagpage", None, &[]);
    for tag in ["b", "a", "c"] {
        store.put_manifest(repo, &m, &[tag]).await.unwrap();
    }
    store.record_pusher(repo, "a", "alice").await.unwrap();
    let page = store.tag_details(repo, TagOrder::Name, 0, 2).await.unwrap();
    assert_eq!(page.total, 3);
    let names: Vec<&str> = page.items.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(page.items[0].pushed_by.as_deref(), Some("alice"));
    assert_eq!(page.items[1].pushed_by, None);
    assert_eq!(page.items[0].digest, d("tagpage"));
    assert_eq!(page.items[0].media_type, berth_oci::media_type::OCI_MANIFEST);
    let page = store.tag_details(repo, TagOrder::Newest, 2, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    // A deleted and pushed again tag has no pusher until one is recorded.
    assert!(store.delete_tag(repo, "a").await.unwrap());
    store.put_manifest(repo, &m, &["a"]).await.unwrap();
    let page = store.tag_details(repo, TagOrder::Name, 0, 1).await.unwrap();
    assert_eq!((page.items[0].name.as_str(), page.items[0].pushed_by.as_deref()), ("a", None));
    assert_eq!(store.tag_details("tagpage/none", TagOrder::Name, 0, 10).await.unwrap().total, 0);
}

async fn renames(store: &dyn MetadataStore) {
    use super::browse::RenameOutcome;
    let from = "renamebare";
    link_record_blobs(store, from).await;
    store.put_manifest(from, &record("rn", None, &[]), &["t"]).await.unwrap();
    store.set_repository_owner_description(from, Some("words"), None).await.unwrap();
    store.set_repository_private(from, true).await.unwrap();
    assert!(store.star("u", from).await.unwrap());
    assert!(store.bare_repositories().await.unwrap().contains(&from.to_owned()));
    let to = "library/renamebare";
    assert_eq!(store.rename_repository(from, to).await.unwrap(), RenameOutcome::Renamed);
    assert!(!store.repository_exists(from).await.unwrap());
    assert_eq!(store.resolve_tag(to, "t").await.unwrap(), Some(d("rn")));
    assert!(store.manifest(to, &d("rn")).await.unwrap().is_some());
    assert_eq!(store.blob_link(to, &d("layer")).await.unwrap(), Some(1));
    let summary = store.repository_summary(to).await.unwrap().unwrap();
    assert_eq!(summary.description.as_deref(), Some("words"));
    assert!(summary.private);
    assert_eq!(summary.stars, 1);
    assert!(!store.bare_repositories().await.unwrap().contains(&from.to_owned()));
    let found = store
        .query_repositories(&super::browse::RepoQuery {
            text: Some("renamebare".into()),
            namespace: None,
            official: false,
            verified: false,
            viewer: super::browse::Viewer::Everything,
            order: super::browse::RepoOrder::Name,
            offset: 0,
            limit: 10,
            count: true,
        })
        .await
        .unwrap();
    let found: Vec<&str> = found.items.iter().map(|r| r.summary.name.as_str()).collect();
    assert_eq!(found, [to], "search knows the new name only");
    assert_eq!(store.rename_repository(from, to).await.unwrap(), RenameOutcome::NoSource);
    link_record_blobs(store, from).await;
    assert_eq!(store.rename_repository(from, to).await.unwrap(), RenameOutcome::TargetExists);
    assert!(store.repository_exists(from).await.unwrap(), "nothing moved");
}
