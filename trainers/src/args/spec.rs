//! The field table behind every argument group: each LLaMA-Factory field has a name, a type, a
//! default and a [`Status`] (what lmf does with it). `lf_args!` declares a group once and gets
//! the struct, its `Default`, its table and its typed reading from [`RawArgs`].

use serde_json::Value;

use super::error::{ArgsError, Result};
use super::raw::{RawArgs, RawValue};
use super::value::ArgValue;

/// What lmf does with one LLaMA-Factory field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// lmf honours the field.
    Implemented,
    /// Known to LLaMA-Factory, not supported by lmf yet: any value but the default is an error.
    NotImplemented,
    /// Accepted and has no effect in lmf, for the reason given (shown as a note when set).
    Ignored(&'static str),
    /// Derived by LLaMA-Factory itself (`init=False`): the user may not set it.
    Derived,
    /// Not a LLaMA-Factory argument: an lmf extension, honoured (LLaMA-Factory would refuse the
    /// key).
    LmfOnly,
}

/// One row of a group's field table.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// LLaMA-Factory's field name (also the YAML key and the `--flag`).
    pub name: &'static str,
    /// LLaMA-Factory's declared type (`bool`, `int?`, `choice(a|b)`, ...).
    pub kind: String,
    /// The declared default, as JSON.
    pub default: Value,
    /// What lmf does with it.
    pub status: Status,
    /// Whether HfArgumentParser also offers `--no_<name>` (booleans that default to true).
    pub no_flag: bool,
    /// The argument group (`ModelArguments`, ...).
    pub group: &'static str,
    /// One-line help (the field's doc comment).
    pub help: String,
}

/// `lmf train -h`: every field of `fields` by group, as `llamafactory-cli train -h` lists them
/// (flag, type, default, help), with what lmf does with it.
pub fn help_text(fields: &[FieldSpec]) -> String {
    let mut out = String::new();
    let mut group = "";
    for f in fields {
        if f.group != group {
            group = f.group;
            out.push_str(&format!("\n{group}:\n"));
        }
        let status = match f.status {
            Status::Implemented => "lmf: yes".to_string(),
            Status::NotImplemented => "lmf: not implemented yet (only the default)".to_string(),
            Status::Ignored(why) => format!("lmf: accepted, no effect ({why})"),
            Status::Derived => "lmf: set by LLaMA-Factory itself".to_string(),
            Status::LmfOnly => "lmf only: not a LLaMA-Factory argument".to_string(),
        };
        out.push_str(&format!(
            "  --{} {} (default: {}) [{status}]\n",
            f.name,
            f.kind,
            to_json_text(&f.default)
        ));
        if !f.help.is_empty() {
            out.push_str(&format!("      {}\n", f.help));
        }
        if f.no_flag {
            out.push_str(&format!("  --no_{}\n", f.name));
        }
    }
    out
}

/// Reads typed fields out of [`RawArgs`], checking each field's [`Status`] and collecting notes.
#[derive(Debug)]
pub struct Resolver<'a> {
    raw: &'a RawArgs,
    /// Things the user should know that are not errors (ignored fields that were set).
    pub notes: Vec<String>,
}

impl<'a> Resolver<'a> {
    /// A resolver over `raw`.
    pub fn new(raw: &'a RawArgs) -> Self {
        Self {
            raw,
            notes: Vec::new(),
        }
    }

    /// The typed value of field `name`: the default when not given.
    pub fn field<T: ArgValue>(
        &mut self,
        name: &'static str,
        status: Status,
        default: T,
    ) -> Result<T> {
        let direct = self.raw.get(name);
        let negated = self.raw.get(&format!("no_{name}"));
        // `--x` and `--no_x` share one destination in argparse: the later one wins.
        let use_negated = match (direct, negated) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(d), Some(n)) => n.seq > d.seq,
        };
        let (entry, value) = if use_negated {
            let Some(entry) = negated else {
                return Ok(default);
            };
            let Some(value) = T::negated(&default) else {
                // Not a field with a `--no_` form: reported as an unknown key elsewhere.
                return Ok(default);
            };
            if entry.value != RawValue::BareFlag {
                return Err(ArgsError::BadValue {
                    key: entry.key.clone(),
                    origin: entry.origin.clone(),
                    value: entry.value.display(),
                    expected: "allowed: `--no_<name>` takes no value".into(),
                });
            }
            (entry, value)
        } else {
            let Some(entry) = direct else {
                return Ok(default);
            };
            let value = T::from_raw(&entry.value).map_err(|expected| ArgsError::BadValue {
                key: name.to_string(),
                origin: entry.origin.clone(),
                value: entry.value.display(),
                expected,
            })?;
            (entry, value)
        };
        match status {
            Status::Implemented | Status::LmfOnly => Ok(value),
            Status::NotImplemented if value == default => Ok(value),
            Status::NotImplemented => Err(ArgsError::NotImplemented {
                key: name.to_string(),
                origin: entry.origin.clone(),
                value: to_json_text(&value),
                default: to_json_text(&default),
            }),
            Status::Ignored(why) => {
                if value != default {
                    self.notes.push(format!(
                        "`{name}` = {} has no effect in lmf: {why}",
                        to_json_text(&value)
                    ));
                }
                Ok(value)
            }
            Status::Derived => Err(ArgsError::Derived {
                key: name.to_string(),
                origin: entry.origin.clone(),
            }),
        }
    }
}

/// `value` as compact JSON text, for messages.
pub(crate) fn to_json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "?".into())
}

/// Declares one LLaMA-Factory argument group: `name: Type = default => Status,` per field, in
/// LLaMA-Factory's order. Generates the struct (with serde names = LF names), `Default`,
/// `fields()` (the [`FieldSpec`] table) and `from_resolver()`.
macro_rules! lf_args {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr => $status:expr,
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )+
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )+ }
            }
        }

        impl $name {
            /// Every field of the group in LLaMA-Factory's order: name, type, default, status.
            pub fn fields() -> Vec<$crate::args::spec::FieldSpec> {
                use $crate::args::value::ArgValue;
                #[allow(unused_imports)]
                use $crate::args::spec::Status::*;
                vec![$(
                    {
                        let default: $ty = $default;
                        $crate::args::spec::FieldSpec {
                            name: stringify!($field),
                            kind: <$ty as ArgValue>::kind(),
                            default: serde_json::to_value(&default).unwrap_or(serde_json::Value::Null),
                            status: $status,
                            no_flag: <$ty as ArgValue>::negated(&default).is_some(),
                            group: stringify!($name),
                            help: [$($doc),*].iter().map(|d: &&str| d.trim()).collect::<Vec<_>>().join(" "),
                        }
                    },
                )+]
            }

            /// Reads the group from raw arguments (defaults for keys not given).
            pub fn from_resolver(
                resolver: &mut $crate::args::spec::Resolver<'_>,
            ) -> $crate::args::error::Result<Self> {
                #[allow(unused_imports)]
                use $crate::args::spec::Status::*;
                Ok(Self {
                    $( $field: resolver.field(stringify!($field), $status, $default)?, )+
                })
            }
        }
    };
}

pub(crate) use lf_args;
