//! Image references in Docker's grammar, normalised the way Docker does.
//!
//! ```text
//! reference       := name [ ":" tag ] [ "@" digest ]
//! name            := [ domain "/" ] path
//! domain          := host [ ":" port ]
//! host            := domain-component ( "." domain-component )* | "[" ipv6 "]"
//! domain-component:= [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! port            := [0-9]+
//! path            := path-component ( "/" path-component )*
//! path-component  := alnum ( separator alnum )*
//! alnum           := [a-z0-9]+
//! separator       := "." | "_" | "__" | "-"+
//! tag             := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest          := algorithm ":" hex          (see `Digest`)
//! ```
//!
//! The first component is a domain only when it contains `.` or `:`, is
//! `localhost`, or has an uppercase letter; otherwise the domain is
//! `docker.io`. `index.docker.io` is the same registry as `docker.io`. A
//! one-component path on `docker.io` is an official image: `library/NAME`.
//! The normalised name (domain and path) is at most 255 characters.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The registry Docker uses when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's legacy name, normalised to [`DEFAULT_DOMAIN`].
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of official images on Docker Hub.
pub const OFFICIAL_NAMESPACE: &str = "library";
/// The tag assumed when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// Longest name (normalised domain and path).
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Longest tag.
pub const TAG_LENGTH_MAX: usize = 128;

/// Why a string is not a valid reference. The texts are Docker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    InvalidFormat,
    #[error("invalid reference format: repository name must be lowercase")]
    Uppercase,
    #[error("repository name must have at least one component")]
    Empty,
    #[error("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong,
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexadecimalName(String),
    #[error("invalid reference format: {0}")]
    Digest(#[from] DigestError),
}

/// A repository: registry domain and path, e.g. `docker.io` + `library/busybox`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    domain: String,
    path: String,
}

impl Repository {
    /// Parses a repository name (no tag, no digest), normalised.
    pub fn parse(s: &str) -> Result<Repository, ReferenceError> {
        let r = Reference::parse(s)?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(ReferenceError::InvalidFormat);
        }
        Ok(r.repository)
    }

    /// A repository from parts already known to be valid (for example a
    /// registry's own repositories, which carry no domain).
    pub fn from_parts(domain: &str, path: &str) -> Result<Repository, ReferenceError> {
        validate_domain(domain)?;
        validate_path(path)?;
        Ok(Repository { domain: domain.to_owned(), path: path.to_owned() })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The path within the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The fully qualified name, e.g. `docker.io/library/busybox`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short form users type and docker prints: `busybox`,
    /// `user/app`, `127.0.0.1:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.full_name();
        }
        // A bare 64-hex name would read as an image ID: keep `library/` then.
        let short = match self.path.strip_prefix("library/") {
            Some(rest) if !rest.contains('/') && !is_hex_id(rest) => rest,
            _ => &self.path,
        };
        // `docker.io/a.b/c` must not shorten to `a.b/c`, which names registry `a.b`.
        match short.split_once('/') {
            Some((first, _)) if looks_like_domain(first) => self.full_name(),
            _ => short.to_owned(),
        }
    }

    /// Whether this is an official image (`docker.io/library/NAME`).
    pub fn is_official(&self) -> bool {
        self.domain == DEFAULT_DOMAIN
            && self.path.strip_prefix("library/").is_some_and(|r| !r.contains('/'))
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)
    }
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Repository({}/{})", self.domain, self.path)
    }
}

/// A parsed, normalised image reference.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    repository: Repository,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses `s` the way `docker` parses an image argument
    /// (`ParseNormalizedNamed`): domain, `library/` and nothing else filled in.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_hex_id(s) {
            return Err(ReferenceError::HexadecimalName(s.to_owned()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::InvalidFormat);
        }
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        let (domain, path) = split_domain(name);
        validate_domain(domain)?;
        validate_path(path)?;
        let domain = if domain == LEGACY_DEFAULT_DOMAIN { DEFAULT_DOMAIN } else { domain };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path.to_owned()
        };
        // Docker applies the limit to the normalised name, so that the full
        // form berth prints always parses again.
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        Ok(Reference {
            repository: Repository { domain: domain.to_owned(), path },
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// Parses `s` and adds `:latest` when it names neither tag nor digest
    /// (what `docker pull`, `tag` and `push` do).
    pub fn parse_with_default_tag(s: &str) -> Result<Reference, ReferenceError> {
        Ok(Reference::parse(s)?.with_default_tag())
    }

    /// This reference, with `:latest` if it has neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_owned());
        }
        self
    }

    /// A tagged reference in `repository`.
    pub fn tagged(repository: Repository, tag: &str) -> Result<Reference, ReferenceError> {
        validate_tag(tag)?;
        Ok(Reference { repository, tag: Some(tag.to_owned()), digest: None })
    }

    /// A reference by digest in `repository`.
    pub fn digested(repository: Repository, digest: Digest) -> Reference {
        Reference { repository, tag: None, digest: Some(digest) }
    }

    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    pub fn domain(&self) -> &str {
        &self.repository.domain
    }

    pub fn path(&self) -> &str {
        &self.repository.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The short form docker prints: `busybox:musl`, `user/app@sha256:...`.
    pub fn familiar(&self) -> String {
        self.render(self.repository.familiar_name())
    }

    /// The fully qualified form: `docker.io/library/busybox:musl`.
    pub fn full(&self) -> String {
        self.render(self.repository.full_name())
    }

    fn render(&self, mut name: String) -> String {
        if let Some(tag) = &self.tag {
            name.push(':');
            name.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            name.push('@');
            name.push_str(digest.as_str());
        }
        name
    }
}

impl fmt::Display for Reference {
    /// The fully qualified form, so that printing and re-parsing is lossless.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({})", self.full())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Splits the domain off a name as Docker does (`splitDockerDomain`).
fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (first, rest),
        _ => (DEFAULT_DOMAIN, name),
    }
}

/// Whether `s` has the shape of a full image ID (64 lowercase hex characters).
fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether the first component of a name is a registry rather than a path.
fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// A repository path as a registry serves it, with no domain: the `<name>`
/// of `/v2/<name>/...` (`a/b/c`: lowercase path components, at most 255
/// characters). Literal: no `library/` is added.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

/// Why a string is not a [`RepoName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRepoName {
    #[error("repository name must not be longer than {NAME_TOTAL_LENGTH_MAX} characters")]
    TooLong,
    #[error("{name:?}: {reason}")]
    Invalid { name: String, reason: ReferenceError },
}

impl RepoName {
    pub fn parse(s: &str) -> Result<RepoName, InvalidRepoName> {
        if s.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(InvalidRepoName::TooLong);
        }
        validate_path(s)
            .map_err(|reason| InvalidRepoName::Invalid { name: s.to_owned(), reason })?;
        Ok(RepoName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a tag: `[\w][\w.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= TAG_LENGTH_MAX
        && word(bytes[0])
        && bytes[1..].iter().all(|&b| word(b) || b == b'.' || b == b'-');
    if ok { Ok(()) } else { Err(ReferenceError::InvalidFormat) }
}

/// Checks a repository path (no domain): lowercase components separated by `/`.
/// A path that would be valid in lowercase gets the "must be lowercase" error.
pub fn validate_path(path: &str) -> Result<(), ReferenceError> {
    if path.is_empty() {
        return Err(ReferenceError::InvalidFormat);
    }
    if path.split('/').all(is_path_component) {
        return Ok(());
    }
    if path.to_ascii_lowercase().split('/').all(is_path_component) {
        return Err(ReferenceError::Uppercase);
    }
    Err(ReferenceError::InvalidFormat)
}

fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    // Between alphanumeric runs: ".", "_", "__" or any number of "-".
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Checks a registry domain: `host[:port]`, host a DNS name, IPv4 or `[IPv6]`.
pub fn validate_domain(domain: &str) -> Result<(), ReferenceError> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(ReferenceError::InvalidFormat)?;
        let ok = !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        if !ok {
            return Err(ReferenceError::InvalidFormat);
        }
        match after {
            "" => return Ok(()),
            p => ("", p.strip_prefix(':').ok_or(ReferenceError::InvalidFormat).map(Some)?),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ReferenceError::InvalidFormat);
    }
    if host.is_empty() && domain.starts_with('[') {
        return Ok(());
    }
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
    };
    if host.split('.').all(component_ok) { Ok(()) } else { Err(ReferenceError::InvalidFormat) }
}

#[cfg(test)]
mod repo_name_tests {
    use super::*;

    #[test]
    fn repo_names_are_literal_validated_paths() {
        assert_eq!(RepoName::parse("busybox").unwrap().as_str(), "busybox");
        assert_eq!(RepoName::parse("a/b-c/d__e").unwrap().to_string(), "a/b-c/d__e");
        let err = RepoName::parse("Alice/App").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"Alice/App\": invalid reference format: repository name must be lowercase"
        );
        assert!(RepoName::parse("a//b").is_err());
        assert!(RepoName::parse("").is_err());
        let long = "a".repeat(NAME_TOTAL_LENGTH_MAX + 1);
        assert_eq!(RepoName::parse(&long).unwrap_err(), InvalidRepoName::TooLong);
        assert!(RepoName::parse(&"a".repeat(NAME_TOTAL_LENGTH_MAX)).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// (input, full normalised form, familiar form)
    #[test]
    fn good_references() {
        let digested = format!("busybox@{D}");
        let tagged_digested = format!("busybox:musl@{D}");
        let hex_official = format!("library/{}", "f".repeat(64));
        let cases: Vec<(&str, String, String)> = vec![
            ("busybox", "docker.io/library/busybox".into(), "busybox".into()),
            ("busybox:musl", "docker.io/library/busybox:musl".into(), "busybox:musl".into()),
            ("library/busybox", "docker.io/library/busybox".into(), "busybox".into()),
            ("docker.io/busybox", "docker.io/library/busybox".into(), "busybox".into()),
            ("index.docker.io/busybox:1", "docker.io/library/busybox:1".into(), "busybox:1".into()),
            (
                "user/app:v1.0-rc_2",
                "docker.io/user/app:v1.0-rc_2".into(),
                "user/app:v1.0-rc_2".into(),
            ),
            ("docker.io/library/a/b", "docker.io/library/a/b".into(), "library/a/b".into()),
            ("docker.io/a.b/c", "docker.io/a.b/c".into(), "docker.io/a.b/c".into()),
            (
                "docker.io/docker.io/c",
                "docker.io/docker.io/c".into(),
                "docker.io/docker.io/c".into(),
            ),
            (&hex_official, format!("docker.io/{hex_official}"), hex_official.clone()),
            ("localhost/app", "localhost/app".into(), "localhost/app".into()),
            ("localhost:5000/app:x", "localhost:5000/app:x".into(), "localhost:5000/app:x".into()),
            ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c".into(), "127.0.0.1:5000/a/b/c".into()),
            (
                "mcr.microsoft.com/windows/nanoserver:10.0.17763.737",
                "mcr.microsoft.com/windows/nanoserver:10.0.17763.737".into(),
                "mcr.microsoft.com/windows/nanoserver:10.0.17763.737".into(),
            ),
            ("[::1]:5000/app", "[::1]:5000/app".into(), "[::1]:5000/app".into()),
            ("Registry.Example/app", "Registry.Example/app".into(), "Registry.Example/app".into()),
            ("u/a__b.c-d---e_f", "docker.io/u/a__b.c-d---e_f".into(), "u/a__b.c-d---e_f".into()),
            (&digested, format!("docker.io/library/busybox@{D}"), format!("busybox@{D}")),
            (
                &tagged_digested,
                format!("docker.io/library/busybox:musl@{D}"),
                format!("busybox:musl@{D}"),
            ),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.full(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(Reference::parse(&r.full()).unwrap(), r, "round trip of {input}");
            assert_eq!(
                Reference::parse(&r.familiar()).unwrap(),
                r,
                "familiar round trip of {input}"
            );
        }
    }

    #[test]
    fn bad_references() {
        use ReferenceError::*;
        let long_tag = format!("a:{}", "t".repeat(129));
        let long_name = format!("{}/{}", "a".repeat(200), "b".repeat(60));
        // 245 characters as written, 263 once `docker.io/library/` is added.
        let long_official = "a".repeat(245);
        let hex = "a".repeat(64);
        let cases: Vec<(&str, ReferenceError)> = vec![
            ("", Empty),
            ("Busybox", Uppercase),
            ("user/App", Uppercase),
            ("busybox:", InvalidFormat),
            (":tag", InvalidFormat),
            ("busy box", InvalidFormat),
            ("busybox:-x", InvalidFormat),
            ("a//b", InvalidFormat),
            ("a/", InvalidFormat),
            ("/a", InvalidFormat),
            ("-a", InvalidFormat),
            ("a-", InvalidFormat),
            ("a...b", InvalidFormat),
            ("a___b", InvalidFormat),
            ("../etc/passwd", InvalidFormat),
            ("host:port/app", InvalidFormat),
            ("-host.com/app", InvalidFormat),
            ("busybox@sha256:abc", Digest(DigestError::InvalidLength)),
            (
                "busybox@md5:abcdefabcdefabcdefabcdefabcdefab",
                Digest(DigestError::UnsupportedAlgorithm),
            ),
            (&long_tag, InvalidFormat),
            (&long_name, NameTooLong),
            (&long_official, NameTooLong),
            (&hex, HexadecimalName(hex.clone())),
        ];
        for (input, want) in cases {
            assert_eq!(Reference::parse(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn the_longest_tag_is_accepted() {
        let r = Reference::parse(&format!("a:{}", "t".repeat(128))).unwrap();
        assert_eq!(r.tag().unwrap().len(), 128);
    }

    #[test]
    fn default_tag_only_when_nothing_names_the_version() {
        assert_eq!(Reference::parse_with_default_tag("busybox").unwrap().tag(), Some("latest"));
        let by_digest = Reference::parse_with_default_tag(&format!("busybox@{D}")).unwrap();
        assert_eq!(by_digest.tag(), None);
    }

    #[test]
    fn official_images_are_recognised() {
        assert!(Reference::parse("busybox").unwrap().repository().is_official());
        assert!(!Reference::parse("user/busybox").unwrap().repository().is_official());
        assert!(!Reference::parse("localhost/busybox").unwrap().repository().is_official());
    }
}
