//! The test suite every [`BlobStore`] implementation must pass. Call
//! [`run_suite`] from a `#[tokio::test]` with a fresh, empty store.

use berth_reference::{Algorithm, Digest};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::{BlobStore, ByteRange, ByteStream, ChunkLength, StorageError, UploadId, bytes_stream};

fn chunks(parts: &[&'static [u8]]) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(futures_util::stream::iter(items))
}

async fn read_all(store: &dyn BlobStore, d: &Digest, range: Option<ByteRange>) -> Vec<u8> {
    let mut out = Vec::new();
    store.get(d, range).await.expect("get").read_to_end(&mut out).await.expect("read");
    // The streamed form serves the same bytes.
    let mut streamed = Vec::new();
    let mut stream = store.get_stream(d, range).await.expect("get_stream");
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        streamed.extend_from_slice(&chunk.expect("stream"));
    }
    assert_eq!(streamed, out, "get_stream and get disagree");
    out
}

/// Runs every contract check against `store`, panicking on the first failure.
pub async fn run_suite(store: &dyn BlobStore) {
    put_get_stat_delete(store).await;
    large_blobs_stream_whole(store).await;
    put_refuses_wrong_digest_and_oversize(store).await;
    ranges(store).await;
    uploads_append_and_commit(store).await;
    upload_commit_verifies(store).await;
    upload_offsets_and_limits(store).await;
    sha512(store).await;
    touch_and_guarded_delete(store).await;
}

/// What garbage collection relies on: a touch refreshes a stored blob, and
/// a guarded delete spares one written or touched since its cutoff.
async fn touch_and_guarded_delete(store: &dyn BlobStore) {
    let data = b"touched by a push";
    let d = Digest::sha256_of(data);
    assert!(!store.touch(&d).await.unwrap(), "nothing to touch");
    store.put(&d, bytes_stream(Bytes::from_static(data)), 1 << 20).await.unwrap();
    assert!(store.touch(&d).await.unwrap());
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    assert_eq!(store.delete_unless_touched(&d, hour_ago).await.unwrap(), None);
    assert_eq!(read_all(store, &d, None).await, data, "a fresh blob is spared");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    assert_eq!(store.delete_unless_touched(&d, later).await.unwrap(), Some(data.len() as u64));
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(!store.touch(&d).await.unwrap());
    assert_eq!(store.delete_unless_touched(&d, later).await.unwrap(), None);
}

async fn put_get_stat_delete(store: &dyn BlobStore) {
    let data = b"hello, berth";
    let d = Digest::sha256_of(data);
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(matches!(store.get(&d, None).await, Err(StorageError::NotFound)));
    let n = store.put(&d, chunks(&[b"hello, ", b"berth"]), 1 << 20).await.unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(store.stat(&d).await.unwrap().unwrap().size, data.len() as u64);
    assert_eq!(read_all(store, &d, None).await, data);
    // Putting the same content again is harmless.
    store.put(&d, bytes_stream(Bytes::from_static(data)), 1 << 20).await.unwrap();
    assert!(store.list().await.unwrap().iter().any(|b| b.digest == d && b.size == 12));
    assert!(store.delete(&d).await.unwrap());
    assert!(!store.delete(&d).await.unwrap());
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(!store.list().await.unwrap().iter().any(|b| b.digest == d));
}

async fn put_refuses_wrong_digest_and_oversize(store: &dyn BlobStore) {
    let claimed = Digest::sha256_of(b"something else");
    let err = store.put(&claimed, chunks(&[b"actual"]), 1 << 20).await.unwrap_err();
    assert!(matches!(err, StorageError::DigestMismatch { .. }), "{err:?}");
    assert_eq!(store.stat(&claimed).await.unwrap(), None);

    let big = Digest::sha256_of(b"0123456789");
    let err = store.put(&big, chunks(&[b"01234", b"56789"]), 9).await.unwrap_err();
    assert!(matches!(err, StorageError::TooLarge { limit: 9 }), "{err:?}");
    assert_eq!(store.stat(&big).await.unwrap(), None);
}

async fn large_blobs_stream_whole(store: &dyn BlobStore) {
    // Larger than any one read, and not a multiple of a power of two.
    let data: Vec<u8> = (0..5_000_003u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256_of(&data);
    store.put(&d, bytes_stream(Bytes::from(data.clone())), 1 << 30).await.unwrap();
    assert_eq!(read_all(store, &d, None).await, data);
    let tail = ByteRange { first: 4_000_000, last: 5_000_002 };
    assert_eq!(read_all(store, &d, Some(tail)).await, &data[4_000_000..]);
    store.delete(&d).await.unwrap();
}

async fn ranges(store: &dyn BlobStore) {
    let data = b"0123456789";
    let d = Digest::sha256_of(data);
    store.put(&d, chunks(&[data]), 100).await.unwrap();
    assert_eq!(read_all(store, &d, Some(ByteRange { first: 2, last: 4 })).await, b"234");
    assert_eq!(read_all(store, &d, Some(ByteRange { first: 9, last: 9 })).await, b"9");
    let past_end = store.get(&d, Some(ByteRange { first: 5, last: 10 })).await;
    assert!(matches!(past_end, Err(StorageError::InvalidRange)));
    let past_end = store.get_stream(&d, Some(ByteRange { first: 5, last: 10 })).await;
    assert!(matches!(past_end, Err(StorageError::InvalidRange)));
    let absent = store.get_stream(&Digest::sha256_of(b"absent"), None).await;
    assert!(matches!(absent, Err(StorageError::NotFound)));
    store.delete(&d).await.unwrap();
}

async fn uploads_append_and_commit(store: &dyn BlobStore) {
    let id = UploadId::generate();
    store.upload_start(&id).await.unwrap();
    assert_eq!(store.upload_size(&id).await.unwrap(), 0);
    assert_eq!(
        store.upload_append(&id, 0, chunks(&[b"abc"]), ChunkLength::AtMost(100)).await.unwrap(),
        3
    );
    assert_eq!(
        store
            .upload_append(&id, 3, chunks(&[b"de", b"f"]), ChunkLength::AtMost(100))
            .await
            .unwrap(),
        6
    );
    assert_eq!(store.upload_size(&id).await.unwrap(), 6);
    assert!(store.upload_list().await.unwrap().iter().any(|(u, _)| *u == id));
    let d = Digest::sha256_of(b"abcdef");
    assert_eq!(store.upload_commit(&id, &d).await.unwrap(), 6);
    assert_eq!(read_all(store, &d, None).await, b"abcdef");
    assert!(matches!(store.upload_size(&id).await, Err(StorageError::UploadNotFound)));
    assert!(!store.upload_list().await.unwrap().iter().any(|(u, _)| *u == id));
    store.delete(&d).await.unwrap();

    let gone = UploadId::generate();
    store.upload_start(&gone).await.unwrap();
    store.upload_abort(&gone).await.unwrap();
    assert!(matches!(store.upload_abort(&gone).await, Err(StorageError::UploadNotFound)));
    let r = store.upload_append(&gone, 0, chunks(&[b"x"]), ChunkLength::AtMost(10)).await;
    assert!(matches!(r, Err(StorageError::UploadNotFound)));
}

async fn upload_commit_verifies(store: &dyn BlobStore) {
    let id = UploadId::generate();
    store.upload_start(&id).await.unwrap();
    store.upload_append(&id, 0, chunks(&[b"real"]), ChunkLength::AtMost(100)).await.unwrap();
    let wrong = Digest::sha256_of(b"fake");
    let err = store.upload_commit(&id, &wrong).await.unwrap_err();
    assert!(matches!(err, StorageError::DigestMismatch { .. }), "{err:?}");
    assert_eq!(store.stat(&wrong).await.unwrap(), None);
    assert_eq!(store.stat(&Digest::sha256_of(b"real")).await.unwrap(), None);
}

async fn upload_offsets_and_limits(store: &dyn BlobStore) {
    let id = UploadId::generate();
    store.upload_start(&id).await.unwrap();
    store.upload_append(&id, 0, chunks(&[b"abc"]), ChunkLength::AtMost(100)).await.unwrap();
    let err =
        store.upload_append(&id, 5, chunks(&[b"x"]), ChunkLength::AtMost(100)).await.unwrap_err();
    assert!(matches!(err, StorageError::OffsetMismatch { expected: 3, given: 5 }), "{err:?}");
    let err = store
        .upload_append(&id, 3, chunks(&[b"1234", b"5678"]), ChunkLength::AtMost(6))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::TooLarge { .. }), "{err:?}");
    // A chunk shorter than declared is refused too (the client was cut off).
    let err = store.upload_append(&id, 3, chunks(&[b"12"]), ChunkLength::Exact(5)).await;
    assert!(matches!(err, Err(StorageError::Short { expected: 5, received: 2 })), "{err:?}");
    // A refused chunk leaves the upload where it was, and it still commits.
    assert_eq!(store.upload_size(&id).await.unwrap(), 3);
    store.upload_append(&id, 3, chunks(&[b"d"]), ChunkLength::AtMost(100)).await.unwrap();
    let d = Digest::sha256_of(b"abcd");
    store.upload_commit(&id, &d).await.unwrap();
    assert_eq!(read_all(store, &d, None).await, b"abcd");
    store.delete(&d).await.unwrap();
}

async fn sha512(store: &dyn BlobStore) {
    let data = b"sha512 content";
    let d = Digest::of(Algorithm::Sha512, data);
    store.put(&d, chunks(&[data]), 100).await.unwrap();
    assert_eq!(read_all(store, &d, None).await, data);
    let id = UploadId::generate();
    store.upload_start(&id).await.unwrap();
    store
        .upload_append(&id, 0, chunks(&[b"sha512 ", b"upload"]), ChunkLength::AtMost(100))
        .await
        .unwrap();
    let d2 = Digest::of(Algorithm::Sha512, b"sha512 upload");
    store.upload_commit(&id, &d2).await.unwrap();
    assert_eq!(read_all(store, &d2, None).await, b"sha512 upload");
    store.delete(&d).await.unwrap();
    store.delete(&d2).await.unwrap();
}
