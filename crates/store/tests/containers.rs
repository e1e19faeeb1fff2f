//! Containers as records: names, lookups, state, and the image they pin.

mod common;

use berth_store::{ContainerRecord, Store, StoreError};
use common::*;

fn record(id: &str, name: &str, image: &berth_store::Digest) -> ContainerRecord {
    ContainerRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        image_id: image.clone(),
        image_name: "app:1".into(),
        command: "\"/bin/sh -c true\"".into(),
        running: true,
        created: 1_700_000_000,
        exit_code: None,
        finished: None,
        config: b"{}".to_vec(),
    }
}

#[test]
fn containers_are_found_by_name_id_or_prefix_and_pin_their_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = commit(&store, &[layer_tar("a", b"x")], "2024-01-01T00:00:00Z", &["app:1"]);
    let a = "a".repeat(64);
    let b = format!("ab{}", "0".repeat(62));
    store.create_container(&record(&a, "first", &image)).unwrap();
    store.create_container(&record(&b, "second", &image)).unwrap();
    let err = store.create_container(&record(&"c".repeat(64), "first", &image)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Conflict. The container name \"/first\" is already in use by container \"{a}\". You have to remove (or rename) that container to be able to reuse that name."
        )
    );
    assert_eq!(store.container("first").unwrap().id, a);
    assert_eq!(store.container(&b).unwrap().name, "second");
    assert_eq!(store.container("ab0").unwrap().id, b);
    assert!(
        matches!(store.container("a"), Err(StoreError::NoSuchContainer(_))),
        "ambiguous prefix"
    );
    assert_eq!(store.container("nope").unwrap_err().to_string(), "No such container: nope");

    // A running container's image cannot be removed, even by force.
    let err = store.remove(id_hex(&image), true).unwrap_err();
    assert!(err.to_string().contains("cannot be forced"), "{err}");
    store.set_container_state(&a, false, Some(3), Some(1_700_000_100)).unwrap();
    let c = store.container("first").unwrap();
    assert_eq!((c.running, c.exit_code, c.finished), (false, Some(3), Some(1_700_000_100)));
    assert!(store.delete_container(&a).unwrap());
    assert!(store.delete_container(&b).unwrap());
    assert!(!store.delete_container(&b).unwrap());
    assert!(store.list_containers().unwrap().is_empty());
    store.remove("app:1", false).unwrap();
}

fn id_hex(id: &berth_store::Digest) -> &str {
    id.hex()
}
