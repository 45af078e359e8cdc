//! Training data: the datasets that ship inside smartcore, and CSV files with a header row.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail, ensure};

/// The datasets embedded in smartcore that `inferlog train --dataset` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dataset {
    Iris,
    BreastCancer,
    Digits,
}

/// Labelled rows ready for training.
#[derive(Debug, Clone)]
pub struct TrainingData {
    /// Short name used as the default model name.
    pub name: String,
    pub source: String,
    pub feature_names: Vec<String>,
    pub class_names: Vec<String>,
    /// Row-major, `y.len()` × `feature_names.len()`, all finite.
    pub x: Vec<f64>,
    /// Class indices into `class_names`.
    pub y: Vec<u32>,
}

/// Turns a dataset column title such as `sepal length (cm)` into `sepal_length`, a name that is
/// easy to type as a JSON key.
pub fn normalize_feature_name(raw: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for ch in raw.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_alphanumeric() => out.extend(c.to_lowercase()),
            _ => {
                if !out.is_empty() && !out.ends_with('_') {
                    out.push('_');
                }
            }
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// Loads one of the datasets embedded in smartcore.
pub fn load_dataset(dataset: Dataset) -> TrainingData {
    let (name, ds_x, ds_y, n, m, feature_names, target_names) = match dataset {
        Dataset::Iris => {
            let d = smartcore::dataset::iris::load_dataset();
            let y = d.target.iter().map(|&c| c as f32).collect::<Vec<_>>();
            (
                "iris",
                d.data,
                y,
                d.num_samples,
                d.num_features,
                d.feature_names,
                d.target_names,
            )
        }
        Dataset::BreastCancer => {
            let d = smartcore::dataset::breast_cancer::load_dataset();
            let y = d.target.iter().map(|&c| c as f32).collect::<Vec<_>>();
            let d_names = d.feature_names;
            (
                "breast_cancer",
                d.data,
                y,
                d.num_samples,
                d.num_features,
                d_names,
                d.target_names,
            )
        }
        Dataset::Digits => {
            let d = smartcore::dataset::digits::load_dataset();
            (
                "digits",
                d.data,
                d.target,
                d.num_samples,
                d.num_features,
                d.feature_names,
                vec![],
            )
        }
    };
    // smartcore's digits dataset carries iris's feature names; fall back to positional names
    // whenever the names do not match the columns.
    let mut features: Vec<String> = feature_names
        .iter()
        .map(|f| normalize_feature_name(f))
        .collect();
    let distinct: BTreeSet<&String> = features.iter().collect();
    if features.len() != m || distinct.len() != m || features.iter().any(String::is_empty) {
        features = (0..m).map(|j| format!("f{j}")).collect();
    }
    let classes: BTreeSet<u32> = ds_y.iter().map(|&c| c as u32).collect();
    let n_classes = classes.last().map_or(0, |&c| c as usize + 1);
    let class_names = if target_names.len() == n_classes {
        target_names
    } else {
        (0..n_classes).map(|c| c.to_string()).collect()
    };
    TrainingData {
        name: name.to_string(),
        source: format!("smartcore:{name}"),
        feature_names: features,
        class_names,
        x: ds_x.iter().take(n * m).map(|&v| f32_to_f64(v)).collect(),
        y: ds_y.iter().map(|&c| c as u32).collect(),
    }
}

/// Widens an f32 to the f64 with the same shortest decimal form (4.3f32 becomes 4.3, not
/// 4.300000190734863), so thresholds and statistics read as the dataset's own numbers.
fn f32_to_f64(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// Most distinct whole numbers a label column may hold (digit classes, ratings, codes); more
/// look like a quantity rather than classes.
const MAX_NUMERIC_CLASSES: usize = 50;

/// Reads a CSV file with a header row: every column but `target` must hold finite numbers; the
/// `target` column holds class labels (any text; integers sort numerically).
pub fn load_csv(path: &Path, target: &str) -> anyhow::Result<TrainingData> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(file);
    let headers = reader
        .headers()
        .with_context(|| format!("{}: reading the header row", path.display()))?
        .clone();
    let Some(target_col) = headers.iter().position(|h| h == target) else {
        bail!(
            "{}: no column named {target:?} in the header (columns: {})",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let feature_names: Vec<String> = headers
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != target_col)
        .map(|(_, h)| h.to_string())
        .collect();
    ensure!(
        !feature_names.is_empty(),
        "{}: no feature columns",
        path.display()
    );
    let columns = CsvColumns {
        path,
        headers: &headers,
        target,
        target_col,
    };
    let (x, raw_labels) = columns.read_rows(&mut reader)?;
    ensure!(!raw_labels.is_empty(), "{}: no data rows", path.display());
    let class_names = class_names(path, target, &raw_labels)?;
    let y = raw_labels
        .iter()
        .map(|l| class_names.iter().position(|c| c == l).unwrap_or_default() as u32)
        .collect();
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string());
    let file_name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(TrainingData {
        name,
        source: format!("csv:{file_name}"),
        feature_names,
        class_names,
        x,
        y,
    })
}

/// The columns of a CSV file being read, for its rows and their messages.
struct CsvColumns<'a> {
    path: &'a Path,
    headers: &'a csv::StringRecord,
    target: &'a str,
    target_col: usize,
}

impl CsvColumns<'_> {
    /// The feature values (row-major) and the label of every row.
    fn read_rows(
        &self,
        reader: &mut csv::Reader<std::fs::File>,
    ) -> anyhow::Result<(Vec<f64>, Vec<String>)> {
        let (path, headers, target) = (self.path, self.headers, self.target);
        let mut x = Vec::new();
        let mut raw_labels = Vec::new();
        for record in reader.records() {
            let record = record.with_context(|| format!("{}: bad CSV", path.display()))?;
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != headers.len() {
                bail!(
                    "{}: line {line} has {} fields, the header has {}",
                    path.display(),
                    record.len(),
                    headers.len()
                );
            }
            for (j, field) in record.iter().enumerate() {
                if j == self.target_col {
                    if field.is_empty() {
                        bail!(
                            "{}: line {line}: the label {target:?} is empty",
                            path.display()
                        );
                    }
                    raw_labels.push(field.to_string());
                    continue;
                }
                let value: f64 = field
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .with_context(|| {
                        format!(
                            "{}: line {line}: column {:?} holds {field:?}, not a finite number",
                            path.display(),
                            &headers[j]
                        )
                    })?;
                x.push(value);
            }
        }
        Ok((x, raw_labels))
    }
}

/// The classes of a label column, sorted (numerically when they are whole numbers); refused
/// when they look like a quantity, or are fewer than two.
fn class_names(path: &Path, target: &str, raw_labels: &[String]) -> anyhow::Result<Vec<String>> {
    let mut class_names: Vec<String> = raw_labels
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let numeric = class_names.iter().all(|c| c.parse::<f64>().is_ok());
    let whole = class_names.iter().all(|c| c.parse::<i64>().is_ok());
    // A numeric column with fractions or very many distinct values is a quantity to predict
    // (regression), not a set of classes; a classifier with a class per value is useless.
    if numeric && (!whole || class_names.len() > MAX_NUMERIC_CLASSES) {
        bail!(
            "{}: column {target:?} holds {} distinct numbers{}: it looks like a quantity \
             (regression), and inferlog trains classifiers only; give a column of class labels",
            path.display(),
            class_names.len(),
            if whole { "" } else { ", with fractions" }
        );
    }
    if whole {
        class_names.sort_by_key(|c| c.parse::<i64>().unwrap_or_default());
    }
    ensure!(
        class_names.len() >= 2,
        "{}: the label column needs at least two classes",
        path.display()
    );
    Ok(class_names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_dataset_column_titles() {
        assert_eq!(normalize_feature_name("sepal length (cm)"), "sepal_length");
        assert_eq!(normalize_feature_name("Mean Radius"), "mean_radius");
        assert_eq!(normalize_feature_name("  a--b  "), "a_b");
    }

    #[test]
    fn iris_has_named_features_and_classes() {
        let d = load_dataset(Dataset::Iris);
        assert_eq!(
            d.feature_names,
            ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        );
        assert_eq!(d.class_names, ["setosa", "versicolor", "virginica"]);
        assert_eq!(d.y.len(), 150);
        assert_eq!(d.x.len(), 600);
    }
}
