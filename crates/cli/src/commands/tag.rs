//! `berth tag SOURCE TARGET`: a new name for an image; no data is copied.

use anyhow::bail;
use berth_reference::Reference;
use berth_store::StoreError;

use crate::context::Context;

#[derive(clap::Args)]
pub struct Args {
    /// The image: a name, an ID or an ID prefix
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    source: String,
    /// The new name
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    target: String,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    // docker checks both names before asking the daemon anything.
    let target = match Reference::parse(&args.target) {
        Ok(r) => r,
        Err(e) => {
            bail!("Error parsing reference: {:?} is not a valid repository/tag: {e}", args.target)
        }
    };
    if target.digest().is_some() {
        bail!("refusing to create a tag with a digest reference");
    }
    if is_bad_source(&args.source) {
        bail!(
            "Error parsing reference: {:?} is not a valid repository/tag: invalid reference format",
            args.source
        );
    }
    let store = ctx.store()?;
    let id = match store.resolve(&args.source) {
        Ok(id) => id,
        Err(StoreError::NoSuchImage(_)) => {
            // The daemon names the source with its default tag.
            let shown = Reference::parse(&args.source)
                .map(|r| r.with_default_tag().familiar())
                .unwrap_or_else(|_| args.source.clone());
            bail!("No such image: {shown}");
        }
        Err(StoreError::InvalidReference(e)) => {
            bail!("Error parsing reference: {:?} is not a valid repository/tag: {e}", args.source)
        }
        Err(e) => return Err(e.into()),
    };
    store.tag(&id, &target.with_default_tag())?;
    Ok(())
}

/// A source that is neither a reference, a digest nor an ID (docker's
/// `ParseAnyReference` would refuse it).
fn is_bad_source(s: &str) -> bool {
    let hex64 =
        s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    !hex64 && berth_reference::Digest::parse(s).is_err() && Reference::parse(s).is_err()
}
