//! [`Baselines`]: the training bins of every model version the service has loaded, so the
//! rollups can count each stored row's features (and a regression model's answer) over its
//! own model's bins (what PSI needs) without reading the rows again.
//!
//! A version, once registered, stays: rows of a model removed from the folder (a spill file
//! replayed after a reload, a rebuild) are still counted over the bins they were served with.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::model::Model;

/// Bin edges per feature, in model order, and of a regression model's output (see
/// [`crate::model::baseline::FeatureStats`]).
#[derive(Debug, PartialEq)]
pub struct Bins {
    pub features: Vec<Vec<f64>>,
    pub output: Option<Vec<f64>>,
}

pub type Edges = Arc<Bins>;

/// Finds the model a (name, version) names among those served now.
pub type Resolver = Arc<dyn Fn(&str, &str) -> Option<Arc<Model>> + Send + Sync>;

/// The bins of each (model, model version) registered, shared by every clone.
#[derive(Clone, Default)]
pub struct Baselines {
    known: Arc<RwLock<HashMap<(String, String), Edges>>>,
    /// Asked for a version not registered yet (one a reload has just started serving).
    resolver: Arc<std::sync::OnceLock<Resolver>>,
}

impl std::fmt::Debug for Baselines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.known.read().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Baselines").field("versions", &n).finish()
    }
}

impl Baselines {
    /// Registers the bins of `model`'s version (replacing what was there under its name and
    /// version).
    pub fn register(&self, model: &Model) -> Edges {
        let baseline = &model.artifact.baseline;
        let edges: Edges = Arc::new(Bins {
            features: baseline
                .features
                .iter()
                .map(|f| f.bin_edges.clone())
                .collect(),
            output: baseline.output.as_ref().map(|o| o.bin_edges.clone()),
        });
        if let Ok(mut map) = self.known.write() {
            map.insert(
                (model.name().to_string(), model.artifact.version.clone()),
                Arc::clone(&edges),
            );
        }
        edges
    }

    /// Sets where versions not registered are looked up (the models served now); the first
    /// call wins.
    pub fn follow(&self, resolver: Resolver) {
        let _ = self.resolver.set(resolver);
    }

    /// The bins rows of `model` at `version` are counted over, if that version is known.
    pub fn edges(&self, model: &str, version: &str) -> Option<Edges> {
        if let Some(edges) = self
            .known
            .read()
            .ok()?
            .get(&(model.to_string(), version.to_string()))
        {
            return Some(Arc::clone(edges));
        }
        let found = self.resolver.get()?(model, version)?;
        Some(self.register(&found))
    }
}
