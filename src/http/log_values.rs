//! The data values of a request's log line — features, predicted classes, labels and their
//! confidence, the path — as slog values that each format writes its own way: the JSON format as JSON data
//! (arrays of numbers and strings, a plain string), the term format as the text it has always
//! written (`features: [5.8,2.7,5.1,1.9]`, `labels: ["virginica"]`, `path: "/audit"`).
//!
//! Each value is an owned copy of at most [`LOGGED_ROWS`] rows, sent to the log thread as it
//! is and formatted there.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use slog::{Key, Record, Serializer};

use crate::input::Shape;
use crate::prediction::{Answer, LOGGED_ROWS, Prediction};

/// How a value reads in the term format.
pub trait TermText {
    fn term_text(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// A log value written as JSON data by serde-aware formats and as [`TermText`] by the others.
#[derive(Clone)]
pub struct Structured<T>(pub T);

struct Text<'a, T>(&'a T);

impl<T: TermText> fmt::Display for Text<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.term_text(f)
    }
}

impl<T> slog::Value for Structured<T>
where
    T: Serialize + TermText + Clone + Send + 'static,
{
    fn serialize(&self, _: &Record, key: Key, serializer: &mut dyn Serializer) -> slog::Result {
        serializer.emit_serde(key, self)
    }
}

impl<T: Serialize> Serialize for Structured<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<T> slog::SerdeValue for Structured<T>
where
    T: Serialize + TermText + Clone + Send + 'static,
{
    fn serialize_fallback(&self, key: Key, serializer: &mut dyn Serializer) -> slog::Result {
        serializer.emit_arguments(key, &format_args!("{}", Text(&self.0)))
    }

    fn as_serde(&self) -> &dyn erased_serde::Serialize {
        &self.0
    }

    fn to_sendable(&self) -> Box<dyn slog::SerdeValue + Send + 'static> {
        Box::new(self.clone())
    }
}

/// The input rows: one row as an array, a batch as an array of rows (the first
/// [`LOGGED_ROWS`]; the term text counts the rest).
#[derive(Clone, Debug)]
pub struct Features {
    batch: bool,
    rows: Vec<Vec<f64>>,
    more: usize,
}

impl Features {
    pub fn of(p: &Prediction) -> Structured<Features> {
        let input = &p.input;
        let shown = input.rows.min(LOGGED_ROWS);
        Structured(Features {
            batch: input.shape == Shape::Batch,
            rows: (0..shown).map(|i| input.row(i).to_vec()).collect(),
            more: input.rows - shown,
        })
    }
}

impl Serialize for Features {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.batch {
            self.rows.serialize(s)
        } else {
            self.rows[0].serialize(s)
        }
    }
}

impl TermText for Features {
    fn term_text(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let write_row = |f: &mut fmt::Formatter<'_>, row: &[f64]| -> fmt::Result {
            f.write_str("[")?;
            for (j, v) in row.iter().enumerate() {
                if j > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{v}")?;
            }
            f.write_str("]")
        };
        if !self.batch {
            return write_row(f, &self.rows[0]);
        }
        f.write_str("[")?;
        for (i, row) in self.rows.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write_row(f, row)?;
        }
        if self.more > 0 {
            write!(f, ",… +{} rows", self.more)?;
        }
        f.write_str("]")
    }
}

/// A list of classes or labels (the first [`LOGGED_ROWS`]; the term text counts the rest).
#[derive(Clone, Debug)]
pub struct List<T> {
    items: Vec<T>,
    more: usize,
}

impl<T: Clone> List<T> {
    fn of(all: &[T]) -> Structured<List<T>> {
        let shown = all.len().min(LOGGED_ROWS);
        Structured(List {
            items: all[..shown].to_vec(),
            more: all.len() - shown,
        })
    }
}

/// The answers: class indices (`[2]`) or a regressor's numbers (`[231.4]`).
pub fn answers(p: &Prediction) -> Structured<Answers> {
    Structured(match &p.answer {
        Answer::Classes { classes, .. } => Answers::Classes(List::of(classes).0),
        Answer::Values(values) => Answers::Values(List::of(values).0),
    })
}

/// A classifier's answers or a regressor's.
#[derive(Clone, Debug)]
pub enum Answers {
    Classes(List<u32>),
    Values(List<f64>),
}

impl Serialize for Answers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Answers::Classes(l) => l.serialize(s),
            Answers::Values(l) => l.serialize(s),
        }
    }
}

impl TermText for Answers {
    fn term_text(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answers::Classes(l) => l.term_text(f),
            Answers::Values(l) => l.term_text(f),
        }
    }
}

/// A [`Structured`] value written only when present: a line without it has no such key.
#[derive(Clone)]
pub struct Maybe<T>(pub Option<Structured<T>>);

impl<T> slog::Value for Maybe<T>
where
    T: Serialize + TermText + Clone + Send + 'static,
{
    fn serialize(
        &self,
        record: &Record,
        key: Key,
        serializer: &mut dyn Serializer,
    ) -> slog::Result {
        match &self.0 {
            Some(v) => slog::Value::serialize(v, record, key, serializer),
            None => Ok(()),
        }
    }
}

/// The probability of each row's served class (`[0.97]`): the model's confidence, not the whole
/// vector of probabilities (the audit row has that). `None` for a regressor.
pub fn confidence(p: &Prediction) -> Maybe<List<f64>> {
    let Answer::Classes {
        classes,
        probabilities,
        ..
    } = &p.answer
    else {
        return Maybe(None);
    };
    let shown = classes.len().min(LOGGED_ROWS);
    Maybe(Some(Structured(List {
        items: (0..shown)
            .map(|i| probabilities.confidence(i, classes[i]))
            .collect(),
        more: classes.len() - shown,
    })))
}

/// The predicted labels (`["virginica"]`); `None` for a regressor.
pub fn labels(p: &Prediction) -> Maybe<List<Arc<str>>> {
    Maybe(match &p.answer {
        Answer::Classes { labels, .. } => Some(List::of(labels)),
        Answer::Values(_) => None,
    })
}

impl<T: Serialize> Serialize for List<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.items.serialize(s)
    }
}

/// Classes read as numbers, labels as quoted strings, in the term format.
pub trait ListItem {
    fn term_item(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl ListItem for u32 {
    fn term_item(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl ListItem for f64 {
    fn term_item(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl ListItem for Arc<str> {
    fn term_item(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl<T: ListItem> TermText for List<T> {
    fn term_text(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            item.term_item(f)?;
        }
        if self.more > 0 {
            write!(f, ",… +{}", self.more)?;
        }
        f.write_str("]")
    }
}

/// The request path: a plain string in JSON, quoted and escaped (`"/audit"`) in the term format.
#[derive(Clone, Debug, Serialize)]
#[serde(transparent)]
pub struct Path(pub String);

impl Path {
    pub fn of(path: &str) -> Structured<Path> {
        Structured(Path(path.to_string()))
    }
}

impl TermText for Path {
    fn term_text(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A text value written only when present: a line without it has no such key at all (not
/// `None`).
#[derive(Clone, Copy)]
pub struct IfPresent<'a>(pub Option<&'a str>);

impl slog::Value for IfPresent<'_> {
    fn serialize(&self, _: &Record, key: Key, serializer: &mut dyn Serializer) -> slog::Result {
        match self.0 {
            Some(v) => serializer.emit_str(key, v),
            None => Ok(()),
        }
    }
}
