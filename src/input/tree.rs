//! The JSON tree a body is parsed into: unlike `serde_json::Value` it keeps duplicate keys, and
//! the parse stops as soon as a limit is passed.

use std::cell::Cell;
use std::fmt;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value as far as validation cares.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Null,
    Bool,
    Num(f64),
    Str,
    Arr(Vec<Node>),
    Obj(Vec<(String, Node)>),
}

impl Node {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool => "a boolean",
            Node::Num(_) => "a number",
            Node::Str => "a string",
            Node::Arr(_) => "a list",
            Node::Obj(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// The visits of JSON scalars, the same for every visitor that builds a [`Node`].
macro_rules! scalar_visits {
    () => {
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_unit<E>(self) -> Result<Node, E> {
            Ok(Node::Null)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
            Ok(Node::Bool)
        }
        fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
            Ok(Node::Num(v as f64))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
            Ok(Node::Num(v as f64))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
            Ok(Node::Num(v))
        }
        fn visit_str<E>(self, _: &str) -> Result<Node, E> {
            Ok(Node::Str)
        }
    };
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    scalar_visits!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Node>()? {
            entries.push((k, v));
        }
        Ok(Node::Obj(entries))
    }
}

/// What ended a parse early: a limit passed, before the rest of the body was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Over {
    /// Within the limits (an error, if any, is the body's own).
    No,
    /// `features` holds more than `max_batch` rows.
    Batch,
    /// A row holds more values than the model has features: `features` itself (one row), or
    /// its row `i`.
    Row(Option<usize>),
}

/// The limits a body is read against, and what passed one.
#[derive(Clone, Copy)]
pub(super) struct Limits<'a> {
    pub(super) max_batch: usize,
    /// Values a row may hold before the parse stops (validation counts the exact number).
    pub(super) row_values: usize,
    pub(super) over: &'a Cell<Over>,
}

impl Limits<'_> {
    fn passed<E: serde::de::Error>(&self, over: Over) -> E {
        self.over.set(over);
        E::custom("over a limit")
    }
}

/// Parses `body` into a tree, stopping as soon as `features` holds more than `max_batch` rows
/// or a row more than `row_values` values: a body of 300,000 empty rows, or of one row of
/// 500,000 numbers, costs no more than one just over the limit. `over` tells such an end from
/// a syntax error.
pub(super) fn parse_tree(body: &[u8], limits: Limits<'_>) -> Result<Node, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let root = BodySeed(limits).deserialize(&mut de)?;
    de.end()?;
    Ok(root)
}

/// The whole body: like [`Node`], except that the value of a top-level `features` field is
/// read with [`FeaturesSeed`].
struct BodySeed<'a>(Limits<'a>);

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Node;

    scalar_visits!();
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Node, A::Error> {
        NodeVisitor.visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if key == "features" {
                map.next_value_seed(FeaturesSeed(self.0))?
            } else {
                map.next_value::<Node>()?
            };
            entries.push((key, value));
        }
        Ok(Node::Obj(entries))
    }
}

/// The value of `features`: a [`Node`], but a list of rows ends with an error (flagged in
/// `over`) at its `max_batch + 1`-th row, and a row at its `row_values + 1`-th value, before
/// the rest is read.
struct FeaturesSeed<'a>(Limits<'a>);

impl<'de> DeserializeSeed<'de> for FeaturesSeed<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FeaturesSeed<'_> {
    type Value = Node;

    scalar_visits!();
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Node, A::Error> {
        RowSeed(self.0, None).visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let limits = self.0;
        let mut items: Vec<Node> = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(4096));
        let mut scalars = 0usize;
        while let Some(item) = seq.next_element_seed(RowSeed(limits, Some(items.len())))? {
            // Only a list of rows is a batch; a list of numbers is one row.
            if matches!(item, Node::Arr(_) | Node::Obj(_)) {
                if items.len() >= limits.max_batch {
                    return Err(limits.passed(Over::Batch));
                }
            } else {
                scalars += 1;
                if scalars > limits.row_values {
                    return Err(limits.passed(Over::Row(None)));
                }
            }
            items.push(item);
        }
        Ok(Node::Arr(items))
    }
}

/// One element of `features`: a row (a list or an object) ends with an error at its
/// `row_values + 1`-th value; `at` is its index in `features` (`None`: `features` itself).
struct RowSeed<'a>(Limits<'a>, Option<usize>);

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Node;

    scalar_visits!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(self.0.row_values.min(4096));
        while let Some(item) = seq.next_element()? {
            if items.len() >= self.0.row_values {
                return Err(self.0.passed(Over::Row(self.1)));
            }
            items.push(item);
        }
        Ok(Node::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Node>()? {
            if entries.len() >= self.0.row_values {
                return Err(self.0.passed(Over::Row(self.1)));
            }
            entries.push((k, v));
        }
        Ok(Node::Obj(entries))
    }
}
