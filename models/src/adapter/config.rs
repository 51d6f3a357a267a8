//! `LoraConfig`: what an adapter is (rank, alpha, targets, variant, init), and its PEFT
//! `adapter_config.json` form — written with every key PEFT 0.18 writes for a LoRA
//! `CAUSAL_LM` adapter, and read back from any PEFT LoRA folder (unsupported PEFT options
//! are a clear error, never silently ignored).

use crate::{Error, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The PEFT version whose `adapter_config.json` we write.
pub const PEFT_VERSION: &str = "0.18.1";
/// File name of the adapter configuration.
pub const CONFIG_FILE: &str = "adapter_config.json";

/// How the adapter matrices start (PEFT `init_lora_weights`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LoraInit {
    /// `true`: A kaiming-uniform(a=√5), B zeros (the adapter starts as a no-op).
    Default,
    /// `"gaussian"`: A ~ N(0, 1/r), B zeros.
    Gaussian,
    /// `"pissa"` (`niter == -1`: full SVD) or `"pissa_niter_{niter}"` (randomized SVD):
    /// A, B from the top-r singular triplets of W, W replaced by the residual.
    Pissa {
        /// Subspace iterations of the randomized SVD; -1 for the exact SVD.
        niter: i64,
    },
    /// `false`: no initialisation step (the matrices are loaded afterwards).
    NoInit,
}

/// A LoRA-family adapter (the subset of PEFT's `LoraConfig` that LLaMA-Factory sets).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank r.
    pub r: usize,
    /// Alpha: the scale is `alpha / r` (`alpha / √r` with rsLoRA).
    pub lora_alpha: f64,
    /// Dropout on the adapter input during training.
    pub lora_dropout: f64,
    /// Leaf module names (`q_proj`, ...), or full module names; PEFT's suffix match.
    pub target_modules: Vec<String>,
    /// PEFT's string form of `target_modules`: one Python regex, full-matched against each
    /// module name (`model.layers.0.self_attn.q_proj`); when set it decides instead of
    /// `target_modules`, and `adapter_config.json` stores it as the string.
    pub target_regex: Option<String>,
    /// rsLoRA scaling.
    pub use_rslora: bool,
    /// DoRA (weight-decomposed LoRA).
    pub use_dora: bool,
    /// Initialisation.
    pub init: LoraInit,
    /// Modules trained in full and saved in the adapter (`embed_tokens`, `lm_head`, ...).
    pub modules_to_save: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            target_modules: vec![],
            target_regex: None,
            use_rslora: false,
            use_dora: false,
            init: LoraInit::Default,
            modules_to_save: vec![],
        }
    }
}

impl LoraConfig {
    /// The factor of `B·A`: `alpha / r`, or `alpha / √r` with rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// The config of a PiSSA adapter converted to plain LoRA (PEFT `save_pretrained` with
    /// `path_initial_model_for_weight_conversion`): rank 2r, alpha doubled (×√2 with rsLoRA)
    /// so the scale is unchanged, init `true`.
    pub fn pissa_converted(&self) -> LoraConfig {
        LoraConfig {
            r: 2 * self.r,
            lora_alpha: if self.use_rslora {
                self.lora_alpha * 2f64.sqrt()
            } else {
                self.lora_alpha * 2.0
            },
            init: LoraInit::Default,
            ..self.clone()
        }
    }

    /// Checks the values (rank > 0, dropout in [0, 1), at least one target or module to
    /// save).
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 {
            return Err(Error::msg("lora: rank r must be positive"));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(Error::msg(format!(
                "lora: lora_dropout {} is not in [0, 1)",
                self.lora_dropout
            )));
        }
        if !self.lora_alpha.is_finite() {
            return Err(Error::msg("lora: lora_alpha must be finite"));
        }
        match &self.target_regex {
            Some(re) => {
                full_match_regex(re).map_err(Error::msg)?;
            }
            None if self.target_modules.is_empty() => {
                return Err(Error::msg("lora: target_modules is empty"));
            }
            None => {}
        }
        Ok(())
    }

    /// Whether the module `name` gets an adapter: PEFT's `check_target_module_exists`
    /// (a regex: `re.fullmatch`; a list: an equal name or a `.`-suffix).
    pub fn targets(&self, name: &str) -> bool {
        match &self.target_regex {
            Some(re) => full_match_regex(re).is_ok_and(|r| r.is_match(name)),
            None => matches_module(name, &self.target_modules),
        }
    }

    /// `target_modules` as the user sees it (the regex, or the list).
    pub fn target_description(&self) -> String {
        match &self.target_regex {
            Some(re) => format!("`{re}` (a regex)"),
            None => format!("{:?}", self.target_modules),
        }
    }

    /// The `adapter_config.json` object PEFT writes for this config.
    pub fn to_peft_json(&self, base_model_name_or_path: &str) -> Value {
        let init = match self.init {
            LoraInit::Default => json!(true),
            LoraInit::NoInit => json!(false),
            LoraInit::Gaussian => json!("gaussian"),
            LoraInit::Pissa { niter: -1 } => json!("pissa"),
            LoraInit::Pissa { niter } => json!(format!("pissa_niter_{niter}")),
        };
        // PEFT keeps an int alpha an int (LLaMA-Factory passes ints).
        let alpha = if self.lora_alpha.fract() == 0.0 && self.lora_alpha.abs() < 1e15 {
            json!(self.lora_alpha as i64)
        } else {
            json!(self.lora_alpha)
        };
        let modules_to_save = if self.modules_to_save.is_empty() {
            Value::Null
        } else {
            json!(self.modules_to_save)
        };
        json!({
            "alora_invocation_tokens": null,
            "alpha_pattern": {},
            "arrow_config": null,
            "auto_mapping": null,
            "base_model_name_or_path": base_model_name_or_path,
            "bias": "none",
            "corda_config": null,
            "ensure_weight_tying": false,
            "eva_config": null,
            "exclude_modules": null,
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": init,
            "layer_replication": null,
            "layers_pattern": null,
            "layers_to_transform": null,
            "loftq_config": {},
            "lora_alpha": alpha,
            "lora_bias": false,
            "lora_dropout": self.lora_dropout,
            "megatron_config": null,
            "megatron_core": "megatron.core",
            "modules_to_save": modules_to_save,
            "peft_type": "LORA",
            "peft_version": PEFT_VERSION,
            "qalora_group_size": 16,
            "r": self.r,
            "rank_pattern": {},
            "revision": null,
            "target_modules": match &self.target_regex {
                Some(re) => json!(re),
                None => json!(self.target_modules),
            },
            "target_parameters": null,
            "task_type": "CAUSAL_LM",
            "trainable_token_indices": null,
            "use_dora": self.use_dora,
            "use_qalora": false,
            "use_rslora": self.use_rslora,
        })
    }

    /// Reads a PEFT `adapter_config.json`; options we do not implement (other PEFT types,
    /// bias, rank/alpha patterns, layer selection, ...) are an error naming the key.
    pub fn from_peft_file(path: &Path) -> Result<LoraConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::file(path, format!("invalid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| Error::file(path, "expected a JSON object"))?;
        Self::from_peft_map(obj).map_err(|m| Error::file(path, m))
    }

    fn from_peft_map(o: &Map<String, Value>) -> std::result::Result<LoraConfig, String> {
        let get = |k: &str| o.get(k).filter(|v| !v.is_null());
        match get("peft_type").and_then(Value::as_str) {
            Some("LORA") | None => {}
            Some(t) => return Err(format!("peft_type `{t}` is not supported (only LORA)")),
        }
        let r = get("r")
            .and_then(Value::as_u64)
            .ok_or("key `r` must be a positive integer")? as usize;
        let lora_alpha = match get("lora_alpha") {
            None => 8.0, // PEFT's default
            Some(v) => v.as_f64().ok_or("key `lora_alpha` must be a number")?,
        };
        let lora_dropout = match get("lora_dropout") {
            None => 0.0,
            Some(v) => v.as_f64().ok_or("key `lora_dropout` must be a number")?,
        };
        let flag = |k: &str| -> std::result::Result<bool, String> {
            match get(k) {
                None => Ok(false),
                Some(v) => v
                    .as_bool()
                    .ok_or(format!("key `{k}` must be true or false")),
            }
        };
        let strings = |k: &str| -> std::result::Result<Vec<String>, String> {
            match get(k) {
                None => Ok(vec![]),
                Some(Value::String(s)) => Ok(vec![s.clone()]),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .ok_or(format!("key `{k}` must be a list of strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("key `{k}` must be a list of strings")),
            }
        };
        // PEFT treats a string as a regex over full module names.
        let (target_modules, target_regex) = match get("target_modules") {
            Some(Value::String(re)) => {
                full_match_regex(re).map_err(|e| format!("key `target_modules`: {e}"))?;
                (vec![], Some(re.clone()))
            }
            _ => (strings("target_modules")?, None),
        };
        let init = match get("init_lora_weights") {
            None | Some(Value::Bool(true)) => LoraInit::Default,
            Some(Value::Bool(false)) => LoraInit::NoInit,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("gaussian") => LoraInit::Gaussian,
            Some(Value::String(s)) if s == "pissa" => LoraInit::Pissa { niter: -1 },
            Some(Value::String(s)) => match s.strip_prefix("pissa_niter_").map(str::parse) {
                Some(Ok(niter)) => LoraInit::Pissa { niter },
                _ => return Err(format!("init_lora_weights `{s}` is not supported")),
            },
            Some(v) => return Err(format!("init_lora_weights {v} is not supported")),
        };
        // Options that change the math or which layers are adapted: refuse rather than
        // load something different from what PEFT would build.
        if let Some(b) = get("bias").and_then(Value::as_str) {
            if b != "none" {
                return Err(format!("bias `{b}` is not supported (only \"none\")"));
            }
        }
        for k in ["fan_in_fan_out", "lora_bias", "use_qalora"] {
            if flag(k)? {
                return Err(format!("key `{k}: true` is not supported"));
            }
        }
        for k in ["rank_pattern", "alpha_pattern"] {
            if get(k)
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
            {
                return Err(format!(
                    "key `{k}` (per-module ranks/alphas) is not supported"
                ));
            }
        }
        for k in [
            "layers_to_transform",
            "layer_replication",
            "exclude_modules",
            "target_parameters",
            "trainable_token_indices",
        ] {
            if get(k).is_some_and(|v| !matches!(v, Value::Array(a) if a.is_empty())) {
                return Err(format!("key `{k}` is not supported"));
            }
        }
        let cfg = LoraConfig {
            r,
            lora_alpha,
            lora_dropout,
            target_modules,
            target_regex,
            use_rslora: flag("use_rslora")?,
            use_dora: flag("use_dora")?,
            init,
            modules_to_save: strings("modules_to_save")?,
        };
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

/// PEFT's target match: the module is named `t` or ends with `.t`.
/// A Python `re.fullmatch` pattern as a Rust regex (the syntax both share: classes,
/// alternation, repetition, groups; lookaround and backreferences are refused).
pub fn full_match_regex(pattern: &str) -> std::result::Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("`{pattern}` is not a regular expression lmf can use: {e}"))
}

pub fn matches_module(module: &str, targets: &[String]) -> bool {
    targets
        .iter()
        .any(|t| module == t || module.ends_with(&format!(".{t}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_target_is_a_full_match_regex_as_in_peft() {
        let mut o = Map::new();
        o.insert("r".into(), json!(4));
        o.insert(
            "target_modules".into(),
            json!(r".*\.layers\.1\..*(q_proj|v_proj)"),
        );
        let cfg = LoraConfig::from_peft_map(&o).unwrap();
        assert!(cfg.targets("model.layers.1.self_attn.q_proj"));
        assert!(cfg.targets("model.layers.1.self_attn.v_proj"));
        assert!(!cfg.targets("model.layers.0.self_attn.q_proj"));
        assert!(!cfg.targets("model.layers.1.self_attn.k_proj"));
        // PEFT: a plain string is a regex too, so `q_proj` alone matches no full name.
        o.insert("target_modules".into(), json!("q_proj"));
        let plain = LoraConfig::from_peft_map(&o).unwrap();
        assert!(!plain.targets("model.layers.0.self_attn.q_proj"));
        // Written back as the string.
        let back = cfg.to_peft_json("m");
        assert_eq!(
            back["target_modules"],
            json!(r".*\.layers\.1\..*(q_proj|v_proj)")
        );
        o.insert("target_modules".into(), json!("(?<=x)q"));
        assert!(LoraConfig::from_peft_map(&o).is_err());
        // A list: equal names or `.`-suffixes.
        o.insert(
            "target_modules".into(),
            json!(["layers.0.self_attn.q_proj", "v_proj"]),
        );
        let list = LoraConfig::from_peft_map(&o).unwrap();
        assert!(list.targets("model.layers.0.self_attn.q_proj"));
        assert!(!list.targets("model.layers.1.self_attn.q_proj"));
        assert!(list.targets("model.layers.1.self_attn.v_proj"));
    }

    #[test]
    fn json_round_trip_keeps_every_field() {
        let cfg = LoraConfig {
            r: 4,
            lora_alpha: 6.5,
            lora_dropout: 0.1,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
            target_regex: None,
            use_rslora: true,
            use_dora: true,
            init: LoraInit::Pissa { niter: 4 },
            modules_to_save: vec!["lm_head".into()],
        };
        let v = cfg.to_peft_json("base");
        assert_eq!(v["init_lora_weights"], "pissa_niter_4");
        let back = LoraConfig::from_peft_map(v.as_object().unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn unsupported_options_are_errors() {
        let mut v = LoraConfig {
            target_modules: vec!["q_proj".into()],
            ..Default::default()
        }
        .to_peft_json("b");
        v["rank_pattern"] = json!({"q_proj": 2});
        let e = LoraConfig::from_peft_map(v.as_object().unwrap()).unwrap_err();
        assert!(e.contains("rank_pattern"), "{e}");
        v["rank_pattern"] = json!({});
        v["peft_type"] = json!("IA3");
        assert!(LoraConfig::from_peft_map(v.as_object().unwrap())
            .unwrap_err()
            .contains("IA3"));
    }

    #[test]
    fn suffix_match_is_on_module_boundaries() {
        let t = vec!["q_proj".to_string()];
        assert!(matches_module("model.layers.0.self_attn.q_proj", &t));
        assert!(!matches_module("model.layers.0.self_attn.xq_proj", &t));
        assert!(matches_module("q_proj", &t));
    }
}
