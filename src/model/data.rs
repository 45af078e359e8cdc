//! Training data: the datasets that ship inside smartcore, and CSV files with a header row.
//! A data set's target is a class per row (classification) or a number per row (regression).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail, ensure};

use super::estimator::Task;

/// The datasets embedded in smartcore that `inferlog train --dataset` offers: three to
/// classify (iris, breast cancer, digits) and two to regress (Boston house prices, diabetes
/// progression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dataset {
    Iris,
    BreastCancer,
    Digits,
    Boston,
    Diabetes,
}

impl Dataset {
    /// What the dataset's target is.
    pub fn task(self) -> Task {
        match self {
            Dataset::Iris | Dataset::BreastCancer | Dataset::Digits => Task::Classification,
            Dataset::Boston | Dataset::Diabetes => Task::Regression,
        }
    }
}

/// Rows with their target, ready for training.
#[derive(Debug, Clone)]
pub struct TrainingData {
    /// Short name used as the default model name.
    pub name: String,
    pub source: String,
    pub feature_names: Vec<String>,
    /// Row-major, `target.rows()` × `feature_names.len()`, all finite.
    pub x: Vec<f64>,
    pub target: Target,
}

/// What each row is labelled with.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A class per row: indices into `names`.
    Classes { names: Vec<String>, y: Vec<u32> },
    /// A finite number per row.
    Values(Vec<f64>),
}

impl Target {
    pub fn rows(&self) -> usize {
        match self {
            Target::Classes { y, .. } => y.len(),
            Target::Values(y) => y.len(),
        }
    }

    pub fn task(&self) -> Task {
        match self {
            Target::Classes { .. } => Task::Classification,
            Target::Values(_) => Task::Regression,
        }
    }

    /// The class names and the class of each row, for a classification target.
    pub fn classes(&self) -> Option<(&[String], &[u32])> {
        match self {
            Target::Classes { names, y } => Some((names, y)),
            Target::Values(_) => None,
        }
    }
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
        Dataset::Boston => {
            let d = smartcore::dataset::boston::load_dataset();
            (
                "boston",
                d.data,
                d.target,
                d.num_samples,
                d.num_features,
                d.feature_names,
                vec![],
            )
        }
        Dataset::Diabetes => {
            let d = smartcore::dataset::diabetes::load_dataset();
            let y = d.target.iter().map(|&v| v as f32).collect::<Vec<_>>();
            (
                "diabetes",
                d.data,
                y,
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
    let target = match dataset.task() {
        Task::Classification => {
            let classes: BTreeSet<u32> = ds_y.iter().map(|&c| c as u32).collect();
            let n_classes = classes.last().map_or(0, |&c| c as usize + 1);
            let names = if target_names.len() == n_classes {
                target_names
            } else {
                (0..n_classes).map(|c| c.to_string()).collect()
            };
            Target::Classes {
                names,
                y: ds_y.iter().map(|&c| c as u32).collect(),
            }
        }
        Task::Regression => Target::Values(ds_y.iter().take(n).map(|&v| f32_to_f64(v)).collect()),
    };
    TrainingData {
        name: name.to_string(),
        source: format!("smartcore:{name}"),
        feature_names: features,
        x: ds_x.iter().take(n * m).map(|&v| f32_to_f64(v)).collect(),
        target,
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
/// `target` column holds class labels (any text; integers sort numerically) for
/// classification, finite numbers for regression.
pub fn load_csv(path: &Path, target: &str, task: Task) -> anyhow::Result<TrainingData> {
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
    let target = match task {
        Task::Classification => {
            let names = class_names(path, target, &raw_labels)?;
            let y = raw_labels
                .iter()
                .map(|l| names.iter().position(|c| c == l).unwrap_or_default() as u32)
                .collect();
            Target::Classes { names, y }
        }
        Task::Regression => Target::Values(values(path, target, &raw_labels)?),
    };
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
        x,
        target,
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
             (regression), not classes; train a regression model with --task regression, or \
             give a column of class labels",
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

/// The numbers of a regression target column; every row must hold a finite one.
fn values(path: &Path, target: &str, raw: &[String]) -> anyhow::Result<Vec<f64>> {
    raw.iter()
        .enumerate()
        .map(|(i, field)| {
            field
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .with_context(|| {
                    format!(
                        "{}: data row {}: the target {target:?} holds {field:?}, not a finite \
                         number (a regression target is a number)",
                        path.display(),
                        i + 1
                    )
                })
        })
        .collect()
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
        let (names, y) = d.target.classes().unwrap();
        assert_eq!(names, ["setosa", "versicolor", "virginica"]);
        assert_eq!(y.len(), 150);
        assert_eq!(d.x.len(), 600);
    }

    #[test]
    fn the_regression_datasets_have_a_number_per_row() {
        for (dataset, rows, features) in [(Dataset::Boston, 506, 13), (Dataset::Diabetes, 442, 10)]
        {
            let d = load_dataset(dataset);
            assert_eq!(d.target.task(), Task::Regression);
            let Target::Values(y) = &d.target else {
                panic!("{dataset:?} has classes")
            };
            assert_eq!((y.len(), d.feature_names.len()), (rows, features));
            assert_eq!(d.x.len(), rows * features);
            assert!(y.iter().all(|v| v.is_finite()));
            let distinct: BTreeSet<u64> = y.iter().map(|v| v.to_bits()).collect();
            assert!(
                distinct.len() > 100,
                "{dataset:?}: {} values",
                distinct.len()
            );
        }
        let boston = load_dataset(Dataset::Boston);
        assert_eq!(boston.feature_names[0], "crim");
    }
}
