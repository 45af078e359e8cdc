//! The models being served: the registry loaded from the models folder, and the live set a
//! reload (SIGHUP) replaces as a whole, through an [`ArcSwap`] (a request takes the current set
//! without a lock).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use arc_swap::ArcSwap;

use super::{Artifact, Model};

/// What a reload of the models folder did.
#[derive(Debug, Default)]
pub struct Reload {
    pub added: Vec<String>,
    /// Models whose artifact changed (another version or another file).
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Models kept as they were loaded, and why (their artifact is broken now).
    pub kept: Vec<(String, String)>,
    /// Artifacts that could not be loaded and held no model before.
    pub refused: Vec<String>,
}

/// The models being served, replaced as a whole by a reload ([`LiveModels::reload`], on
/// SIGHUP). A request takes the current set once ([`LiveModels::current`]) and keeps it, so a
/// reload never changes a model under a request.
#[derive(Debug)]
pub struct LiveModels {
    current: ArcSwap<ModelRegistry>,
    /// Every (name, version) served since start, the ones a reload replaced too: reports on
    /// an older version's rows use its own baseline. Artifacts are small; a process serves
    /// few versions.
    seen: RwLock<HashMap<(String, String), Arc<Model>>>,
    dir: PathBuf,
    default_model: String,
}

impl LiveModels {
    pub fn new(registry: ModelRegistry, dir: &Path, default_model: &str) -> LiveModels {
        let live = LiveModels {
            current: ArcSwap::from_pointee(registry),
            seen: RwLock::default(),
            dir: dir.to_path_buf(),
            default_model: default_model.to_string(),
        };
        live.remember(&live.current());
        live
    }

    fn remember(&self, registry: &ModelRegistry) {
        let mut seen = match self.seen.write() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        for m in registry.all() {
            seen.entry((m.name().to_string(), m.artifact.version.clone()))
                .or_insert_with(|| Arc::clone(m));
        }
    }

    /// Model `name` at `version`: served now, or served earlier since start.
    pub fn version(&self, name: &str, version: &str) -> Option<Arc<Model>> {
        if let Some(m) = self.current().get(name)
            && m.artifact.version == version
        {
            return Some(Arc::clone(m));
        }
        let seen = match self.seen.read() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        seen.get(&(name.to_string(), version.to_string())).cloned()
    }

    /// The versions of `name` known (served now or earlier since start), sorted.
    pub fn versions(&self, name: &str) -> Vec<String> {
        let seen = match self.seen.read() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        let mut out: Vec<String> = seen
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect();
        out.sort();
        out
    }

    /// The models being served now.
    pub fn current(&self) -> Arc<ModelRegistry> {
        self.current.load_full()
    }

    /// Loads the models folder again ([`ModelRegistry::reload`]) and serves the result.
    pub fn reload(&self) -> anyhow::Result<Reload> {
        let (next, report) = self.current().reload(&self.dir, &self.default_model)?;
        let next = Arc::new(next);
        self.remember(&next);
        self.current.store(next);
        Ok(report)
    }
}

/// All models loaded at start-up, by name, plus the one `/predict` uses.
#[derive(Debug)]
pub struct ModelRegistry {
    models: HashMap<String, Arc<Model>>,
    default: Arc<Model>,
}

impl ModelRegistry {
    /// Loads every `*.json` artifact in `dir`. Any unreadable or invalid file is an error naming
    /// it: serving a partial set of models would silently change what clients get.
    pub fn load_dir(dir: &Path, default_model: &str) -> anyhow::Result<ModelRegistry> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading the models folder {}", dir.display()))?;
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading the models folder {}", dir.display()))?
                .path();
            if path.extension().is_some_and(|e| e == "json") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut models: HashMap<String, Arc<Model>> = HashMap::new();
        for path in paths {
            let artifact = Artifact::load(&path)?;
            if let Some(other) = models.get(&artifact.name) {
                bail!(
                    "{} and {} both hold a model named {:?}",
                    other.path.display(),
                    path.display(),
                    artifact.name
                );
            }
            models.insert(artifact.name.clone(), Arc::new(Model::new(artifact, path)));
        }
        if models.is_empty() {
            bail!("no model artifacts (*.json) in {}", dir.display());
        }
        let Some(default) = models.get(default_model).cloned() else {
            let mut names: Vec<&str> = models.keys().map(String::as_str).collect();
            names.sort_unstable();
            bail!(
                "default model {default_model:?} is not in {} (found: {})",
                dir.display(),
                names.join(", ")
            );
        };
        Ok(ModelRegistry { models, default })
    }

    /// Loads the models folder again, keeping what cannot be replaced: an artifact that no
    /// longer loads keeps the model it held (the reason is in the report), and the default
    /// model is never removed. Unchanged artifacts (same file, same version) keep their
    /// loaded model. Fails as a whole only if the folder cannot be read.
    pub fn reload(
        &self,
        dir: &Path,
        default_model: &str,
    ) -> anyhow::Result<(ModelRegistry, Reload)> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading the models folder {}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        let by_path: HashMap<&Path, &Arc<Model>> = self
            .models
            .values()
            .map(|m| (m.path.as_path(), m))
            .collect();
        let mut next = Next::default();
        for path in paths {
            let loaded = Artifact::load(&path).and_then(|a| {
                if next.models.contains_key(&a.name) {
                    bail!(
                        "{} holds model {:?}, which another file holds already",
                        path.display(),
                        a.name
                    );
                }
                Ok(a)
            });
            match loaded {
                Ok(artifact) => next.take(self.models.get(&artifact.name), artifact, path),
                Err(e) => next.keep(by_path.get(path.as_path()).copied(), &e),
            }
        }
        let Next {
            mut models,
            mut report,
        } = next;
        let default = match models.get(default_model) {
            Some(m) => Arc::clone(m),
            None => {
                let old = Arc::clone(&self.default);
                report.kept.push((
                    old.name().to_string(),
                    format!(
                        "the default model {default_model:?} has no artifact in {} any more; it stays served",
                        dir.display()
                    ),
                ));
                models.insert(old.name().to_string(), Arc::clone(&old));
                old
            }
        };
        report.removed = self
            .models
            .keys()
            .filter(|name| !models.contains_key(*name))
            .cloned()
            .collect();
        report.removed.sort();
        Ok((ModelRegistry { models, default }, report))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Model>> {
        self.models.get(name)
    }

    pub fn default_model(&self) -> &Arc<Model> {
        &self.default
    }

    /// Models sorted by name.
    pub fn all(&self) -> Vec<&Arc<Model>> {
        let mut all: Vec<_> = self.models.values().collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }
}

/// The registry a reload builds, and its report so far.
#[derive(Default)]
struct Next {
    models: HashMap<String, Arc<Model>>,
    report: Reload,
}

impl Next {
    /// An artifact that loaded: the model loaded before when it is the same file and version,
    /// else a new one (reported as changed or added).
    fn take(&mut self, old: Option<&Arc<Model>>, artifact: Artifact, path: PathBuf) {
        let name = artifact.name.clone();
        let model = match old {
            Some(old) if old.path == path && old.artifact.version == artifact.version => {
                Arc::clone(old)
            }
            Some(_) => {
                self.report.changed.push(name.clone());
                Arc::new(Model::new(artifact, path))
            }
            None => {
                self.report.added.push(name.clone());
                Arc::new(Model::new(artifact, path))
            }
        };
        self.models.insert(name, model);
    }

    /// An artifact that no longer loads: the model its file held stays (unless another file
    /// took its name), else the file is refused; either way with the reason.
    fn keep(&mut self, old: Option<&Arc<Model>>, e: &anyhow::Error) {
        match old.filter(|old| !self.models.contains_key(old.name())) {
            Some(old) => {
                self.models.insert(old.name().to_string(), Arc::clone(old));
                self.report
                    .kept
                    .push((old.name().to_string(), format!("{e:#}")));
            }
            None => self.report.refused.push(format!("{e:#}")),
        }
    }
}
