use crate::context::Context;

#[derive(clap::Args)]
pub struct DfArgs {}

#[derive(clap::Args)]
pub struct CheckArgs {}

pub fn df(_ctx: &Context, _args: DfArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub fn check(_ctx: &Context, _args: CheckArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
