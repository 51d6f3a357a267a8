//! LLaMA-Factory's evaluation task folders (`evaluation/mmlu`, `cmmlu`, `ceval` in its repo):
//! `mapping.json` (subject → display name and category, in evaluation order) and the questions
//! of each subject and split, either in `<task>.zip` (what LLaMA-Factory ships; its loading
//! script extracts it) or already extracted beside it. The three layouts of its scripts:
//!
//! - MMLU: `data/{dev,val,test}/{subject}_{split}.csv`, no header: question, A, B, C, D, answer;
//! - C-Eval: `{dev,val,test}/{subject}_{split}.csv`, a header (`id, question, A, B, C, D,
//!   answer, explanation`; the test split has no answers);
//! - CMMLU: `{dev,test}/{subject}.csv`, a header with an index column (`Question, A, B, C, D,
//!   Answer`).
//!
//! The scripts read the CSVs with pandas and `datasets` casts every cell to a string, so a
//! column that pandas reads as numbers comes back as Python prints them (`07` → `7`, `1.50` →
//! `1.5`): reproduced by [`pandas_column`].

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::template::pyjson::PyJson;
use crate::{Error, Result};

/// One multiple-choice question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// The question text.
    pub question: String,
    /// The four options, A to D.
    pub choices: [String; 4],
    /// The right letter.
    pub answer: String,
}

/// One subject of `mapping.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Its key (file names).
    pub key: String,
    /// Display name (the system prompt's `{subject}`).
    pub name: String,
    /// Category (`STEM`, `Social Sciences`, `Humanities`, `Other`).
    pub category: String,
}

/// An opened task folder.
pub struct TaskFolder {
    dir: PathBuf,
    name: String,
    /// Subjects in `mapping.json` order.
    pub subjects: Vec<Subject>,
    zip: Option<zip::ZipArchive<std::fs::File>>,
}

impl TaskFolder {
    /// Opens `task_dir/task`.
    pub fn open(task_dir: &Path, task: &str) -> Result<TaskFolder> {
        let dir = task_dir.join(task);
        let mapping = dir.join("mapping.json");
        if !mapping.is_file() {
            return Err(Error::Msg(format!(
                "task `{task}`: {} not found. Put LLaMA-Factory's evaluation folder there: \
                 `task_dir` (now {}) must hold `{task}/mapping.json` and `{task}/{task}.zip` \
                 (LLaMA-Factory's repository ships them under `evaluation/`)",
                mapping.display(),
                task_dir.display()
            )));
        }
        let text = std::fs::read_to_string(&mapping)
            .map_err(|e| Error::Msg(format!("{}: {e}", mapping.display())))?;
        // document order: LF evaluates subjects in mapping.json's order
        let value = PyJson::parse(&text)
            .map_err(|e| Error::Msg(format!("{}: not valid JSON: {e}", mapping.display())))?;
        let PyJson::Dict(items) = value else {
            return Err(Error::Msg(format!(
                "{}: expected an object",
                mapping.display()
            )));
        };
        let mut subjects = Vec::with_capacity(items.len());
        for (key, v) in items {
            let field = |k: &str| match v.get(k) {
                Some(PyJson::Str(s)) => Ok(s.clone()),
                _ => Err(Error::Msg(format!(
                    "{}: subject `{key}` has no `{k}`",
                    mapping.display()
                ))),
            };
            subjects.push(Subject {
                name: field("name")?,
                category: field("category")?,
                key,
            });
        }
        let zip_path = dir.join(format!("{task}.zip"));
        let zip = if zip_path.is_file() {
            let f = std::fs::File::open(&zip_path)
                .map_err(|e| Error::Msg(format!("{}: {e}", zip_path.display())))?;
            Some(
                zip::ZipArchive::new(f)
                    .map_err(|e| Error::Msg(format!("{}: {e}", zip_path.display())))?,
            )
        } else {
            None
        };
        Ok(TaskFolder {
            dir,
            name: task.to_string(),
            subjects,
            zip,
        })
    }

    /// The questions of `subject` in `split` (LLaMA-Factory's names: `train` = the dev set,
    /// `validation`, `test`).
    pub fn questions(&mut self, subject: &str, split: &str) -> Result<Vec<Question>> {
        let short = match split {
            "train" => "dev",
            "validation" => "val",
            "test" => "test",
            other => {
                return Err(Error::Msg(format!(
                    "task `{}`: unknown split `{other}` (train, validation or test)",
                    self.name
                )))
            }
        };
        let layouts = [
            (format!("data/{short}/{subject}_{short}.csv"), Layout::Mmlu),
            (format!("{short}/{subject}_{short}.csv"), Layout::Header),
            (format!("{short}/{subject}.csv"), Layout::HeaderIndex),
        ];
        for (rel, layout) in &layouts {
            if let Some(bytes) = self.read(rel)? {
                return parse_csv(&bytes, *layout, &format!("{}: {rel}", self.name));
            }
        }
        Err(Error::Msg(format!(
            "task `{}`: no {split} questions for `{subject}`: looked for {} in {}.zip and in {}",
            self.name,
            layouts
                .iter()
                .map(|(r, _)| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            self.name,
            self.dir.display()
        )))
    }

    /// `rel` from the zip, else from the extracted folder; `None` when neither has it.
    fn read(&mut self, rel: &str) -> Result<Option<Vec<u8>>> {
        if let Some(z) = &mut self.zip {
            if let Ok(mut f) = z.by_name(rel) {
                let mut out = Vec::new();
                f.read_to_end(&mut out)
                    .map_err(|e| Error::Msg(format!("{}.zip: {rel}: {e}", self.name)))?;
                return Ok(Some(out));
            }
        }
        let path = self.dir.join(rel);
        if !path.is_file() {
            return Ok(None);
        }
        std::fs::read(&path)
            .map(Some)
            .map_err(|e| Error::Msg(format!("{}: {e}", path.display())))
    }
}

/// Which CSV layout a file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// No header: question, A, B, C, D, answer.
    Mmlu,
    /// A header naming the columns (C-Eval).
    Header,
    /// A header and a leading index column (CMMLU).
    HeaderIndex,
}

/// The questions of one CSV of `layout` (`what` names it in errors).
fn parse_csv(bytes: &[u8], layout: Layout, what: &str) -> Result<Vec<Question>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut rows: Vec<Vec<String>> = vec![];
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| Error::Msg(format!("{what}: row {}: {e}", i + 1)))?;
        rows.push(rec.iter().map(str::to_string).collect());
    }
    // the column of each field: question, A, B, C, D, answer (None: absent, "")
    let cols: [Option<usize>; 6] = match layout {
        Layout::Mmlu => [Some(0), Some(1), Some(2), Some(3), Some(4), Some(5)],
        Layout::Header | Layout::HeaderIndex => {
            if rows.is_empty() {
                return Err(Error::Msg(format!("{what}: no header")));
            }
            let header = rows.remove(0);
            let find = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
            [
                find(&["question", "Question"]),
                find(&["A"]),
                find(&["B"]),
                find(&["C"]),
                find(&["D"]),
                find(&["answer", "Answer"]),
            ]
        }
    };
    for (k, c) in cols.iter().enumerate().take(5) {
        if c.is_none() {
            return Err(Error::Msg(format!(
                "{what}: no `{}` column",
                ["question", "A", "B", "C", "D"][k]
            )));
        }
    }
    let width = cols.iter().flatten().max().map_or(0, |m| m + 1);
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() < width) {
        return Err(Error::Msg(format!(
            "{what}: row {} has {} columns, {width} expected",
            i + 1 + usize::from(layout != Layout::Mmlu),
            r.len()
        )));
    }
    // each field as pandas reads its column, then as `datasets` casts it to a string
    let column = |c: Option<usize>| -> Vec<String> {
        match c {
            Some(c) => pandas_column(&rows.iter().map(|r| r[c].as_str()).collect::<Vec<_>>()),
            None => vec![String::new(); rows.len()],
        }
    };
    let fields: Vec<Vec<String>> = cols.iter().map(|&c| column(c)).collect();
    Ok((0..rows.len())
        .map(|i| Question {
            question: fields[0][i].clone(),
            choices: [
                fields[1][i].clone(),
                fields[2][i].clone(),
                fields[3][i].clone(),
                fields[4][i].clone(),
            ],
            answer: fields[5][i].clone(),
        })
        .collect())
}

/// pandas' default missing-value markers (`read_csv`'s `na_values`).
const PANDAS_NA: [&str; 19] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// One CSV column as pandas' `read_csv` types it and `datasets` prints it back as a string:
/// missing markers (`NA`, `None`, empty, ...) → `nan`; all other cells integers → `int64`
/// (`007` → `7`; with a missing cell the column is `float64`: `7.0`); all numbers →
/// `float64` (Python's `repr`: `1.50` → `1.5`); else the text as written.
pub fn pandas_column(cells: &[&str]) -> Vec<String> {
    let na = |s: &str| PANDAS_NA.contains(&s);
    let int = |s: &str| -> Option<i64> {
        let t = s.trim();
        let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<i64>().ok())
            .flatten()
    };
    let float = |s: &str| -> Option<f64> {
        let t = s.trim();
        let ok = !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
            && t.bytes().any(|b| b.is_ascii_digit());
        ok.then(|| t.parse::<f64>().ok()).flatten()
    };
    let present: Vec<&str> = cells.iter().copied().filter(|c| !na(c)).collect();
    let any_na = present.len() < cells.len();
    let repr = |x: f64| PyJson::Float(x).dumps();
    cells
        .iter()
        .map(|&c| {
            if na(c) {
                "nan".to_string()
            } else if present.iter().all(|p| int(p).is_some()) {
                let v = int(c).unwrap_or(0);
                if any_na {
                    repr(v as f64)
                } else {
                    v.to_string()
                }
            } else if present.iter().all(|p| float(p).is_some()) {
                repr(float(c).unwrap_or(0.0))
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_columns_print_as_python_prints_pandas_values() {
        assert_eq!(pandas_column(&["07", "-3", "+2"]), ["7", "-3", "2"]);
        assert_eq!(
            pandas_column(&["1.50", "3", "1e-5"]),
            ["1.5", "3.0", "1e-05"]
        );
        assert_eq!(pandas_column(&["1.50", "x"]), ["1.50", "x"]);
        assert_eq!(pandas_column(&["Paris", "7"]), ["Paris", "7"]);
        assert_eq!(pandas_column(&["4", "NA", ""]), ["4.0", "nan", "nan"]);
        assert_eq!(pandas_column(&["Paris", "None"]), ["Paris", "nan"]);
    }

    #[test]
    fn the_three_layouts_read_the_same_question() {
        let mmlu = parse_csv(b"Q?,a,b,c,d,B\n", Layout::Mmlu, "t").unwrap();
        let ceval = parse_csv(
            b"id,question,A,B,C,D,answer,explanation\n0,Q?,a,b,c,d,B,because\n",
            Layout::Header,
            "t",
        )
        .unwrap();
        let cmmlu = parse_csv(
            b",Question,A,B,C,D,Answer\n0,Q?,a,b,c,d,B\n",
            Layout::HeaderIndex,
            "t",
        )
        .unwrap();
        assert_eq!(mmlu, ceval);
        assert_eq!(mmlu, cmmlu);
        assert_eq!(mmlu[0].answer, "B");
        // C-Eval's test split has no answers
        let test = parse_csv(b"id,question,A,B,C,D\n0,Q?,a,b,c,d\n", Layout::Header, "t").unwrap();
        assert_eq!(test[0].answer, "");
        assert!(parse_csv(b"Q?,a,b\n", Layout::Mmlu, "t.csv")
            .unwrap_err()
            .to_string()
            .contains("t.csv: row 1 has 3 columns"));
    }
}
