//! The stylesheet and script, embedded in the binary and served under
//! content-hashed names (`/static/app.<hash>.css`), so a page always loads
//! the version it was rendered with and browsers may cache them forever.

use std::sync::LazyLock;

use sha2::Digest as _;

pub struct Asset {
    /// The URL path that serves it.
    pub path: String,
    pub body: &'static [u8],
    pub content_type: &'static str,
}

fn asset(stem: &str, ext: &str, body: &'static [u8], content_type: &'static str) -> Asset {
    let hash = hex::encode(&sha2::Sha256::digest(body)[..6]);
    Asset { path: format!("/static/{stem}.{hash}.{ext}"), body, content_type }
}

pub static CSS: LazyLock<Asset> = LazyLock::new(|| {
    asset("app", "css", include_bytes!("static/app.css"), "text/css; charset=utf-8")
});

pub static JS: LazyLock<Asset> = LazyLock::new(|| {
    asset("app", "js", include_bytes!("static/app.js"), "text/javascript; charset=utf-8")
});

/// The asset served at `path`, if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    [&*CSS, &*JS].into_iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_follow_content_and_the_script_stays_small() {
        assert!(super::CSS.path.starts_with("/static/app.") && super::CSS.path.ends_with(".css"));
        assert!(super::find(&super::JS.path).is_some());
        assert!(super::find("/static/app.000000000000.js").is_none());
        assert!(super::JS.body.len() < 2048, "the site's own JavaScript stays under 2 KB");
    }
}
