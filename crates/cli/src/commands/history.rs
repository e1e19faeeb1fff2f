//! `berth history IMAGE`: the config's history, newest step first.

use anyhow::Context as _;

use crate::commands::images::print_rows;
use crate::context::Context;
use crate::format::{self, V};

#[derive(clap::Args)]
pub struct Args {
    /// Pretty-print history using a Go template
    #[arg(long, value_name = "string")]
    format: Option<String>,
    /// Print sizes and dates in human readable format
    #[arg(
        short = 'H',
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "bool"
    )]
    human: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// The image: a name, an ID or an ID prefix
    #[arg(value_name = "IMAGE")]
    image: String,
}

const DEFAULT_TABLE: &str =
    "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let id = store.resolve(&args.image)?;
    let image = store.image(&id)?;
    let now = format::now_unix();

    // Docker walks history oldest first, giving each non-empty step the
    // next layer, then lists newest first.
    let mut layers = image.layers.iter();
    let mut steps = Vec::new();
    for h in &image.config.history {
        let size = if h.empty_layer {
            0
        } else {
            layers
                .next()
                .map(|l| l.content_size)
                .context("too many non-empty layers in History section")?
        };
        steps.push((h, size));
    }
    let trunc = !args.no_trunc;
    let rows: Vec<V> = steps
        .iter()
        .rev()
        .enumerate()
        .map(|(i, (h, size))| {
            let created = h
                .created
                .as_deref()
                .and_then(berth_store::parse_rfc3339)
                .unwrap_or(-62_135_596_800);
            let id = if i == 0 { image.id.to_string() } else { "<missing>".to_owned() };
            let id = if trunc { format::truncate_id(&id).to_owned() } else { id };
            let created_by = h.created_by.clone().unwrap_or_default().replace('\t', " ");
            let created_by = if trunc { format::ellipsis(&created_by, 45) } else { created_by };
            let (created_since, size_text) = if args.human {
                (
                    format!("{} ago", format::human_duration(now - created)),
                    format::image_size(*size),
                )
            } else {
                (format::rfc3339(created), size.to_string())
            };
            V::Obj(vec![
                ("Comment".into(), V::str(h.comment.clone().unwrap_or_default())),
                ("CreatedAt".into(), V::str(format::rfc3339(created))),
                ("CreatedBy".into(), V::str(created_by)),
                ("CreatedSince".into(), V::str(created_since)),
                ("ID".into(), V::str(id)),
                ("Size".into(), V::str(size_text)),
            ])
        })
        .collect();

    let format = match &args.format {
        Some(f) => f.clone(),
        None if args.quiet => "{{.ID}}".to_owned(),
        None => DEFAULT_TABLE.to_owned(),
    };
    let created_header = if args.human { "CREATED" } else { "CREATED AT" };
    let headers = V::Obj(
        [
            ("Comment", "COMMENT"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedBy", "CREATED BY"),
            ("CreatedSince", created_header),
            ("ID", "IMAGE"),
            ("Size", "SIZE"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), V::str(v)))
        .collect(),
    );
    print_rows(&format, &rows, &headers)
}
