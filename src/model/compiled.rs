//! Random forests laid out for prediction: every node of every tree in one flat array of
//! small nodes, walked without smartcore's generic matrix access.
//!
//! smartcore keeps each tree's nodes in their own vector of 88-byte nodes with optional fields,
//! reads each value through its generic matrix interface, and walks one tree at a time: each
//! step waits for the node before it, and most steps are a branch the processor mispredicts.
//! For a 100-tree forest that walk was the largest single cost of a one-row prediction. Here
//! eight trees are walked side by side, a step of each per round, with the next node chosen
//! without a branch, so the eight chains of loads overlap. A leaf is its own child on both
//! sides, so a tree that reaches its leaf early stays there while the others finish. The
//! layout keeps the same trees, the same comparisons (`value <= threshold` goes to the
//! true child; a missing threshold compares as NaN, so false) and the same vote (the first
//! class with the most trees wins), so it answers exactly as smartcore does; the tests hold
//! it to smartcore's own `predict` on trained models.
//!
//! The trees are read from smartcore's serialized form (the form model artifacts store them
//! in), because smartcore keeps its nodes private. Anything unexpected in that form (a child
//! that does not come after its parent, a class index out of range, another layout in a
//! future smartcore) makes [`Trees::forest`] refuse, and the model then predicts through
//! smartcore.
//!
//! A regression forest is walked the same way: each tree's leaf holds a number, and the answer
//! is their mean, added in smartcore's order (tree by tree, then divided by the number of
//! trees), so it is smartcore's answer to the bit.
//!
//! A single decision tree stays with smartcore: one tree has no other tree to overlap with,
//! and smartcore's walk, which stops at the leaf, measured faster for it (`benches/micro.rs`).

use serde::{Deserialize, Serialize};

use super::scores::{self, Probabilities, Scores};

/// Trees walked side by side.
const LANES: usize = 8;

/// One node: a split on `feature` at `threshold`. A leaf splits on feature 0 at +∞ and is both
/// its children, so every further step stays on it.
#[derive(Debug, Clone, Copy)]
struct Node {
    threshold: f64,
    feature: u32,
    /// The child for value ≤ threshold.
    yes: u32,
    no: u32,
}

/// A forest ready to predict.
#[derive(Debug, Clone)]
pub struct Trees {
    nodes: Vec<Node>,
    /// Each node's output, for the leaves: a classifier's output index, a regressor's number.
    outputs: Vec<u32>,
    values: Vec<f64>,
    /// Each tree's root in `nodes`, its depth (steps from the root to its deepest leaf) and
    /// its place in the forest, shallowest first, so the trees walked together need about
    /// the same number of steps.
    roots: Vec<(u32, u32, u32)>,
    /// The class each output index stands for; the most voted wins (empty for a regressor).
    classes: Vec<u32>,
    n_features: usize,
}

// smartcore's serialized layout, the fields this module reads (serde skips the others).
#[derive(Deserialize)]
struct ForestForm {
    trees: Option<Vec<TreeForm<usize>>>,
    classes: Option<Vec<u32>>,
}

#[derive(Deserialize)]
struct RegressorForm {
    forest_regressor: Option<RegressorForestForm>,
}

#[derive(Deserialize)]
struct RegressorForestForm {
    trees: Option<Vec<TreeForm<f64>>>,
}

#[derive(Deserialize)]
struct TreeForm<O> {
    nodes: Vec<NodeForm<O>>,
}

#[derive(Deserialize)]
struct NodeForm<O> {
    output: O,
    split_feature: usize,
    split_value: Option<f64>,
    true_child: Option<usize>,
    false_child: Option<usize>,
}

impl Trees {
    /// A smartcore `RandomForestClassifier`, for rows of `n_features` values.
    pub fn forest(model: &impl Serialize, n_features: usize) -> Result<Trees, String> {
        let form: ForestForm = read_form(model)?;
        let (Some(trees), Some(classes)) = (form.trees, form.classes) else {
            return Err("the forest is not fitted".into());
        };
        if classes.is_empty() {
            return Err("a forest without classes".into());
        }
        let mut out = Trees::empty(n_features, classes);
        for tree in &trees {
            out.add(tree, |out, i, &output| {
                if output >= out.classes.len() {
                    return Err(format!("node {i}'s output {output} has no class"));
                }
                out.outputs.push(output as u32);
                Ok(())
            })?;
        }
        out.sort_roots()?;
        Ok(out)
    }

    /// A smartcore `RandomForestRegressor`, for rows of `n_features` values.
    pub fn regression_forest(model: &impl Serialize, n_features: usize) -> Result<Trees, String> {
        let form: RegressorForm = read_form(model)?;
        let Some(trees) = form.forest_regressor.and_then(|f| f.trees) else {
            return Err("the forest is not fitted".into());
        };
        let mut out = Trees::empty(n_features, Vec::new());
        for tree in &trees {
            out.add(tree, |out, i, &output: &f64| {
                if !output.is_finite() {
                    return Err(format!("node {i}'s output is not a number"));
                }
                out.values.push(output);
                Ok(())
            })?;
        }
        out.sort_roots()?;
        Ok(out)
    }

    fn empty(n_features: usize, classes: Vec<u32>) -> Trees {
        Trees {
            nodes: Vec::new(),
            outputs: Vec::new(),
            values: Vec::new(),
            roots: Vec::new(),
            classes,
            n_features,
        }
    }

    fn sort_roots(&mut self) -> Result<(), String> {
        if self.roots.is_empty() {
            return Err("no trees".into());
        }
        self.roots.sort_by_key(|&(_, depth, _)| depth);
        Ok(())
    }

    /// Appends one tree, checking every index it holds, so the walk can neither leave the
    /// array nor loop (children come after their parent); `output` checks and keeps each
    /// node's output.
    fn add<O>(
        &mut self,
        tree: &TreeForm<O>,
        mut output: impl FnMut(&mut Trees, usize, &O) -> Result<(), String>,
    ) -> Result<(), String> {
        if tree.nodes.is_empty() {
            return Err("a tree has no nodes".into());
        }
        let base = self.nodes.len();
        let n = tree.nodes.len();
        let index = |i: usize| u32::try_from(base + i).map_err(|_| "too many nodes".to_string());
        for (i, node) in tree.nodes.iter().enumerate() {
            output(self, i, &node.output)?;
            let compiled = match node.true_child {
                None => Node {
                    threshold: f64::INFINITY,
                    feature: 0,
                    yes: index(i)?,
                    no: index(i)?,
                },
                Some(yes) => {
                    let no = node.false_child.ok_or("a split has no false child")?;
                    if yes <= i || no <= i || yes >= n || no >= n {
                        return Err(format!("node {i} has children {yes} and {no}"));
                    }
                    if node.split_feature >= self.n_features {
                        return Err(format!("node {i} splits on feature {}", node.split_feature));
                    }
                    Node {
                        threshold: node.split_value.unwrap_or(f64::NAN),
                        feature: node.split_feature as u32,
                        yes: index(yes)?,
                        no: index(no)?,
                    }
                }
            };
            self.nodes.push(compiled);
        }
        // Children come after their parent, so depths fill in from the last node back.
        let mut depth = vec![0u32; n];
        for i in (0..n).rev() {
            let node = self.nodes[base + i];
            let (yes, no) = (node.yes as usize - base, node.no as usize - base);
            if yes != i {
                depth[i] = 1 + depth[yes].max(depth[no]);
            }
        }
        let place = u32::try_from(self.roots.len()).map_err(|_| "too many trees".to_string())?;
        self.roots.push((index(0)?, depth[0], place));
        Ok(())
    }

    /// The classes the trees vote for, in vote order.
    pub fn classes(&self) -> &[u32] {
        &self.classes
    }

    /// The class and class probabilities (share of trees voting each class) of each row of
    /// `values` (row-major, [`Trees`]' feature count per row), for `width` named classes.
    pub fn scores(&self, values: &[f64], width: usize) -> Scores {
        let rows = values.len() / self.n_features.max(1);
        let mut out = Scores {
            classes: Vec::with_capacity(rows),
            probabilities: Probabilities::with_rows(width, rows),
        };
        let mut votes = vec![0u32; self.classes.len()];
        for row in values.chunks_exact(self.n_features.max(1)) {
            votes.iter_mut().for_each(|v| *v = 0);
            self.walk(&self.roots, row, |_, leaf| {
                votes[self.outputs[leaf] as usize] += 1
            });
            scores::push_votes(&mut out, &votes, &self.classes, self.roots.len());
        }
        out
    }

    /// A regression forest's answer to each row of `values` (row-major): the mean of its
    /// trees' leaves, summed in the forest's order as smartcore sums them.
    pub fn mean_values(&self, values: &[f64]) -> Vec<f64> {
        let n = self.roots.len();
        let mut leaves = vec![0.0; n];
        values
            .chunks_exact(self.n_features.max(1))
            .map(|row| {
                self.walk(&self.roots, row, |place, leaf| {
                    leaves[place] = self.values[leaf]
                });
                let mut sum = 0.0;
                for v in &leaves {
                    sum += v;
                }
                sum / n as f64
            })
            .collect()
    }

    /// Walks `row` down each tree of `roots`, [`LANES`] trees at a time, and hands each
    /// tree's place in the forest and its leaf (an index in `nodes`) to `leaf`.
    fn walk(&self, roots: &[(u32, u32, u32)], row: &[f64], mut leaf: impl FnMut(usize, usize)) {
        for group in roots.chunks(LANES) {
            let mut at = [0u32; LANES];
            for (a, &(root, _, _)) in at.iter_mut().zip(group) {
                *a = root;
            }
            // The deepest tree of the group (the last: roots are sorted by depth).
            let steps = group.last().map_or(0, |&(_, depth, _)| depth);
            for _ in 0..steps {
                for a in at.iter_mut().take(group.len()) {
                    let node = self.nodes[*a as usize];
                    let le = row[node.feature as usize] <= node.threshold;
                    *a = if le { node.yes } else { node.no };
                }
            }
            for (&a, &(_, _, place)) in at.iter().zip(group) {
                leaf(place as usize, a as usize);
            }
        }
    }
}

fn read_form<T: for<'de> Deserialize<'de>>(model: &impl Serialize) -> Result<T, String> {
    let value = serde_json::to_value(model).map_err(|e| e.to_string())?;
    serde_json::from_value(value).map_err(|e| format!("unexpected model layout: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::estimator::Classifier;
    use crate::model::scores::Scorer;
    use proptest::prelude::*;
    use smartcore::ensemble::random_forest_classifier::{
        RandomForestClassifier, RandomForestClassifierParameters,
    };
    use smartcore::linalg::basic::matrix::DenseMatrix;

    type Forest = RandomForestClassifier<f64, u32, DenseMatrix<f64>, Vec<u32>>;

    /// Iris with its classes renumbered 3, 7, 5: class values that are not their indices.
    fn iris() -> (DenseMatrix<f64>, Vec<u32>, Vec<f64>) {
        let d = smartcore::dataset::iris::load_dataset();
        let values: Vec<f64> = d.data.iter().map(|&v| f64::from(v)).collect();
        let y = d.target.iter().map(|&c| [3, 7, 5][c as usize]).collect();
        let x = DenseMatrix::new(d.num_samples, d.num_features, values.clone(), false).unwrap();
        (x, y, values)
    }

    /// A forest of 21 trees (not a multiple of the lanes), some of them shallow.
    fn forest(seed: u64) -> Forest {
        let (x, y, _) = iris();
        let params = RandomForestClassifierParameters {
            n_trees: 21,
            seed,
            max_depth: if seed % 2 == 0 { Some(3) } else { None },
            ..Default::default()
        };
        RandomForestClassifier::fit(&x, &y, params).unwrap()
    }

    /// Every threshold the trees split on, per feature, so rows can sit exactly on them.
    fn thresholds(trees: &Trees) -> Vec<Vec<f64>> {
        let mut out = vec![Vec::new(); trees.n_features];
        for n in trees.nodes.iter().filter(|n| n.threshold.is_finite()) {
            out[n.feature as usize].push(n.threshold);
        }
        out
    }

    fn smartcore_predicts(f: &Forest, values: &[f64]) -> Vec<u32> {
        let x = DenseMatrix::new(values.len() / 4, 4, values.to_vec(), false).unwrap();
        f.predict(&x).unwrap()
    }

    #[test]
    fn the_training_rows_get_smartcores_classes() {
        let (x, _, values) = iris();
        for seed in [1, 2, 7, 42] {
            let f = forest(seed);
            let compiled = Trees::forest(&f, 4).unwrap();
            assert_eq!(compiled.roots.len(), 21);
            assert_eq!(
                compiled.scores(&values, 8).classes,
                f.predict(&x).unwrap(),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn a_layout_that_is_not_smartcores_is_refused() {
        let f = forest(1);
        assert!(Trees::forest(&f, 4).is_ok());
        assert!(
            Trees::forest(&f, 3).is_err(),
            "a split on a feature the rows lack"
        );
        assert!(Trees::forest(&serde_json::json!({"trees": null, "classes": null}), 4).is_err());
        let leaf = serde_json::json!(
            {"output": 0, "split_feature": 0, "split_value": null, "true_child": null, "false_child": null});
        let forest_of = |nodes: serde_json::Value| serde_json::json!({"trees": [{"nodes": nodes}], "classes": [1]});
        assert!(Trees::forest(&forest_of(serde_json::json!([leaf])), 4).is_ok());
        let looping = serde_json::json!([
            {"output": 0, "split_feature": 0, "split_value": 1.0, "true_child": 0, "false_child": 1},
            leaf
        ]);
        assert!(
            Trees::forest(&forest_of(looping), 4).is_err(),
            "a child before its parent"
        );
        let out_of_range = serde_json::json!([
            {"output": 2, "split_feature": 0, "split_value": null, "true_child": null, "false_child": null}
        ]);
        assert!(
            Trees::forest(&forest_of(out_of_range), 4).is_err(),
            "an output with no class"
        );
        let no_false_child = serde_json::json!([
            {"output": 0, "split_feature": 0, "split_value": 1.0, "true_child": 1, "false_child": null},
            leaf
        ]);
        assert!(Trees::forest(&forest_of(no_false_child), 4).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random rows, many of them with values exactly on a split threshold or a hair
        /// either side of it, get smartcore's classes.
        #[test]
        fn any_row_gets_smartcores_class(
            seed in 0u64..1000,
            cells in proptest::collection::vec((0u8..4, 0.0f64..9.0, 0usize..1000), 4 * 40),
        ) {
            let f = forest(seed);
            let compiled = Trees::forest(&f, 4).unwrap();
            let cuts = thresholds(&compiled);
            let values: Vec<f64> = cells
                .iter()
                .enumerate()
                .map(|(i, &(how, v, pick))| {
                    let cuts = &cuts[i % 4];
                    let cut = if cuts.is_empty() { v } else { cuts[pick % cuts.len()] };
                    match how {
                        0 => v,
                        1 => cut,
                        // The neighbouring doubles (thresholds here are positive).
                        2 => f64::from_bits(cut.to_bits() - 1),
                        _ => f64::from_bits(cut.to_bits() + 1),
                    }
                })
                .collect();
            let ours = compiled.scores(&values, 8);
            prop_assert_eq!(&ours.classes, &smartcore_predicts(&f, &values));
            // The votes of smartcore's own trees give the same shares.
            let x = DenseMatrix::new(values.len() / 4, 4, values.clone(), false).unwrap();
            let model = Classifier::RandomForest(f);
            let theirs = Scorer::new(&model, 8, true).unwrap().scores(&model, &x).unwrap();
            prop_assert_eq!(ours, theirs);
        }
    }
}
