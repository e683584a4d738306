//! `cargohold ref`: parse and normalize a reference.

use anyhow::Result;
use cargohold_image_core::Reference;
use serde::Serialize;

use crate::cli::RefArgs;
use crate::output;

#[derive(Serialize)]
struct RefJson<'a> {
    input: &'a str,
    registry: &'a str,
    repository: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
    canonical: String,
    familiar: String,
    pull: String,
}

pub fn run(args: &RefArgs) -> Result<()> {
    let r = Reference::parse(&args.reference)?;
    let pull = r.pull_reference().canonical();
    let doc = RefJson {
        input: &args.reference,
        registry: r.registry(),
        repository: r.repository(),
        tag: r.tag(),
        digest: r.digest().map(|d| d.as_str()),
        canonical: r.canonical(),
        familiar: r.familiar(),
        pull,
    };
    if args.out.json {
        return output::json(&doc);
    }
    output::line(format!("registry:   {}", doc.registry))?;
    output::line(format!("repository: {}", doc.repository))?;
    output::line(format!("tag:        {}", doc.tag.unwrap_or("(none)")))?;
    output::line(format!("digest:     {}", doc.digest.unwrap_or("(none)")))?;
    output::line(format!("canonical:  {}", doc.canonical))?;
    output::line(format!("familiar:   {}", doc.familiar))?;
    output::line(format!("pull:       {}", doc.pull))
}
