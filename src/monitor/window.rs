//! The rolling window of recent inputs behind the drift gauges of `/metrics`.
//!
//! Each model keeps the bin index of every feature and the predicted class of its last
//! `capacity` rows; a scrape turns the counts into PSI values. Recording a row is a short
//! mutex hold per request (no allocation once the ring is full), and scrapes never touch the
//! database.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use super::drift::LiveCounts;
use crate::model::Model;
use crate::model::registry::ModelRegistry;
use crate::stats::{bin_index, class_counts, psi};

struct Window {
    model: Arc<Model>,
    capacity: usize,
    /// Bin index of each feature (row-major, `n_features` per row), oldest first.
    bins: VecDeque<u8>,
    classes: VecDeque<u32>,
}

/// PSI values of one model's window.
#[derive(Debug, Clone)]
pub struct WindowSnapshot {
    pub model: Arc<str>,
    pub rows: usize,
    /// (feature name or "prediction", PSI)
    pub psi: Vec<(Arc<str>, f64)>,
}

pub struct DriftWindows {
    /// One window per model served; replaced for a model whose artifact changed (a reload).
    windows: RwLock<HashMap<String, Arc<Mutex<Window>>>>,
    capacity: usize,
    /// Windows with fewer rows are not reported (their PSI would be noise).
    min_rows: usize,
}

impl std::fmt::Debug for DriftWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftWindows")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl DriftWindows {
    pub fn new(models: &ModelRegistry, capacity: usize, min_rows: usize) -> DriftWindows {
        let windows = DriftWindows {
            windows: RwLock::default(),
            capacity: capacity.max(1),
            min_rows,
        };
        windows.sync(models);
        windows
    }

    /// Follows a reload: a new window for each new or changed model (the old rows were
    /// measured against another baseline), none for removed ones; unchanged models keep
    /// theirs.
    pub fn sync(&self, models: &ModelRegistry) {
        let Ok(mut windows) = self.windows.write() else {
            return;
        };
        let mut next = HashMap::new();
        for m in models.all() {
            let kept = windows
                .remove(m.name())
                .filter(|w| w.lock().map(|w| Arc::ptr_eq(&w.model, m)).unwrap_or(false));
            let window = kept.unwrap_or_else(|| {
                let n = m.n_features();
                Arc::new(Mutex::new(Window {
                    model: Arc::clone(m),
                    capacity: self.capacity,
                    bins: VecDeque::with_capacity(self.capacity * n),
                    classes: VecDeque::with_capacity(self.capacity),
                }))
            });
            next.insert(m.name().to_string(), window);
        }
        *windows = next;
    }

    /// Adds answered rows (row-major `values`, one class per row) to the model's window.
    /// Rows of a model that a reload has replaced meanwhile are left out.
    pub fn record(&self, model: &Model, values: &[f64], classes: &[u32]) {
        let Some(window) = self
            .windows
            .read()
            .ok()
            .and_then(|w| w.get(model.name()).cloned())
        else {
            return;
        };
        let stats = &model.artifact.baseline.features;
        let n = stats.len();
        let Ok(mut w) = window.lock() else { return };
        if !std::ptr::eq(Arc::as_ptr(&w.model), model) {
            return;
        }
        for (i, &class) in classes.iter().enumerate() {
            if w.classes.len() == w.capacity {
                w.classes.pop_front();
                w.bins.drain(..n);
            }
            for (j, s) in stats.iter().enumerate() {
                let bin = bin_index(&s.bin_edges, values[i * n + j]);
                w.bins.push_back(bin.min(u8::MAX as usize) as u8);
            }
            w.classes.push_back(class);
        }
    }

    /// Fills the model's window with rows stored before this start (so the gauges describe
    /// the recent traffic at once, not an empty window): rows of `counts` as synthetic rows
    /// carrying the same counts per feature bin and class (PSI only needs those), oldest in
    /// the window, so live rows push them out first. Counts that do not fit the window, or
    /// whose features and classes disagree on the number of rows, are not used. Returns the
    /// rows added.
    pub fn seed(&self, model: &Model, counts: &LiveCounts) -> usize {
        let Some(window) = self
            .windows
            .read()
            .ok()
            .and_then(|w| w.get(model.name()).cloned())
        else {
            return 0;
        };
        let Ok(mut w) = window.lock() else { return 0 };
        let rows = counts.rows;
        let fits = rows + w.classes.len() <= w.capacity
            && std::ptr::eq(Arc::as_ptr(&w.model), model)
            && counts.classes.iter().sum::<u64>() == rows as u64
            && counts.bins.len() == model.n_features()
            && counts
                .bins
                .iter()
                .all(|b| b.iter().sum::<u64>() == rows as u64 && b.len() <= 256);
        if !fits || rows == 0 {
            return 0;
        }
        // Each feature's bins (and the classes) listed in order: row i takes the i-th of each.
        let expand = |c: &[u64]| -> Vec<usize> {
            c.iter()
                .enumerate()
                .flat_map(|(b, &n)| std::iter::repeat_n(b, n as usize))
                .collect()
        };
        let bins: Vec<Vec<usize>> = counts.bins.iter().map(|b| expand(b)).collect();
        let classes = expand(&counts.classes);
        for i in (0..rows).rev() {
            for b in bins.iter().rev() {
                w.bins.push_front(b[i] as u8);
            }
            w.classes.push_front(classes[i] as u32);
        }
        rows
    }

    /// PSI of every window with enough rows.
    pub fn snapshot(&self) -> Vec<WindowSnapshot> {
        let mut out = Vec::new();
        let windows: Vec<Arc<Mutex<Window>>> = match self.windows.read() {
            Ok(w) => w.values().cloned().collect(),
            Err(_) => return out,
        };
        for window in &windows {
            let Ok(w) = window.lock() else { continue };
            let rows = w.classes.len();
            if rows < self.min_rows.max(1) {
                continue;
            }
            let baseline = &w.model.artifact.baseline;
            let n = baseline.features.len();
            let mut psi_values = Vec::with_capacity(n + 1);
            for (j, stats) in baseline.features.iter().enumerate() {
                let mut counts = vec![0u64; stats.bin_proportions.len()];
                for row in 0..rows {
                    counts[w.bins[row * n + j] as usize] += 1;
                }
                psi_values.push((
                    Arc::<str>::from(stats.name.as_str()),
                    psi(&stats.bin_proportions, &counts),
                ));
            }
            let counts = class_counts(
                w.classes.iter().copied(),
                baseline.answer_proportions().len(),
            );
            psi_values.push((
                Arc::from("prediction"),
                psi(baseline.answer_proportions(), &counts),
            ));
            out.push(WindowSnapshot {
                model: w.model.shared.name.clone(),
                rows,
                psi: psi_values,
            });
        }
        out.sort_by(|a, b| a.model.cmp(&b.model));
        out
    }
}
