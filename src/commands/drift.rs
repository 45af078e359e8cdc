//! `inferlog drift`: the report of `/monitor/drift`, read from the database file.

use crate::audit::url::DatabaseUrl;
use crate::audit::{AuditFilter, Store, StoreOptions};
use crate::cli::DriftCliArgs;
use crate::model::registry::ModelRegistry;
use crate::reports;

pub fn run(args: &DriftCliArgs) -> anyhow::Result<()> {
    let models = ModelRegistry::load_dir(&args.models, &args.model)?;
    let model = models.default_model();
    if let (Some(s), Some(u)) = (args.since, args.until)
        && s > u
    {
        anyhow::bail!("--since is later than --until");
    }
    let filter = AuditFilter {
        since: args.since,
        until: args.until,
        ..AuditFilter::default()
    };
    let url: DatabaseUrl = args.store.database_url.parse()?;
    let rule = args.drift.bounded();
    rule.check().map_err(anyhow::Error::msg)?;
    let report = super::runtime()?.block_on(async {
        let store = Store::open(&url, &StoreOptions::read_only()).await?;
        let report = reports::drift(&store, model, &filter, &rule).await;
        store.close().await;
        report.map_err(|e| anyhow::anyhow!("{}: {}", e.cause(), e.detail()))
    })?;
    super::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    Ok(())
}
