//! Which parameters train under `finetuning_type: full` and `freeze`, chosen exactly as
//! LLaMA-Factory's `_setup_full_tuning` / `_setup_freeze_tuning` choose them (substring
//! matches on HF parameter names, same module discovery, same errors).

use crate::{Error, Result};

/// `full`: every parameter trains (text-only models have no forbidden modules).
pub fn full_trainable(names: &[String]) -> Vec<String> {
    names.to_vec()
}

/// LLaMA-Factory's freeze settings.
#[derive(Clone, Debug, PartialEq)]
pub struct FreezeSpec {
    /// `freeze_trainable_layers`: last n layers when positive, first -n when negative.
    pub trainable_layers: i64,
    /// `freeze_trainable_modules` (`all` or hidden-module names such as `mlp`).
    pub trainable_modules: Vec<String>,
    /// `freeze_extra_modules` (non-hidden modules such as `embed_tokens`, `norm`, `lm_head`).
    pub extra_modules: Vec<String>,
    /// `use_llama_pro`: every stride-th layer instead.
    pub use_llama_pro: bool,
}

/// The trainable parameter names under `freeze` for a model of `num_layers` layers whose
/// parameters are `names` (in model order), and the patterns LF logs ("Set trainable layers").
pub fn freeze_trainable(
    names: &[String],
    num_layers: usize,
    spec: &FreezeSpec,
) -> Result<(Vec<String>, Vec<String>)> {
    if num_layers == 0 {
        return Err(Error::Msg(
            "Current model does not support freeze tuning.".into(),
        ));
    }
    let n = num_layers as i64;
    let k = spec.trainable_layers;
    let layer_ids: Vec<i64> = if spec.use_llama_pro {
        llama_pro_layer_ids(n, k)?
    } else if k > 0 {
        ((n - k).max(0)..n).collect()
    } else {
        (0..(-k).min(n)).collect()
    };

    let mut hidden: Vec<String> = Vec::new();
    let mut non_hidden: Vec<String> = Vec::new();
    for name in names {
        let after = if name.contains(".0.") {
            name.rsplit(".0.").next()
        } else if name.contains(".1.") {
            name.rsplit(".1.").next()
        } else {
            None
        };
        if let Some(first) = after.and_then(|a| a.split('.').next()) {
            if !hidden.iter().any(|h| h == first) {
                hidden.push(first.to_string());
            }
        }
        if !has_layer_index(name) {
            let parts: Vec<&str> = name.split('.').collect();
            if parts.len() >= 2 {
                let m = parts[parts.len() - 2].to_string();
                if !non_hidden.contains(&m) {
                    non_hidden.push(m);
                }
            }
        }
    }

    let mut patterns = Vec::new();
    for module in &spec.trainable_modules {
        if module != "all" && !hidden.contains(module) {
            return Err(Error::Msg(format!(
                "Module {module} is not found, please choose from {}",
                hidden.join(", ")
            )));
        }
        for idx in &layer_ids {
            let m = if module == "all" { "" } else { module };
            patterns.push(format!(".{idx}.{m}"));
        }
    }
    for module in &spec.extra_modules {
        if !non_hidden.contains(module) {
            return Err(Error::Msg(format!(
                "Module {module} is not found, please choose from {}",
                non_hidden.join(", ")
            )));
        }
        patterns.push(module.clone());
    }
    let trainable = names
        .iter()
        .filter(|n| patterns.iter().any(|p| n.contains(p.as_str())))
        .cloned()
        .collect();
    Ok((trainable, patterns))
}

/// Python's `range(start, stop, step)` (step non-zero).
/// LLaMA Pro's trainable layers (LF's `_setup_freeze_tuning` and `find_expanded_modules`):
/// with `stride = n / k`, every stride-th layer, i.e. the blocks `llama_pro.py` inserted.
pub fn llama_pro_layer_ids(n: i64, k: i64) -> Result<Vec<i64>> {
    if k == 0 || n % k != 0 {
        return Err(Error::Msg(format!(
            "`num_layers` {n} should be divisible by `num_layer_trainable` {k}."
        )));
    }
    let stride = n / k;
    // Python range(stride - 1, n + stride - 1, stride); a negative k gives a negative stride.
    Ok(py_range(stride - 1, n + stride - 1, stride))
}

fn py_range(start: i64, stop: i64, step: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(i);
        i += step;
    }
    out
}

/// `re.search(r"\.\d+\.", name)`: the name has a `.N.` component.
fn has_layer_index(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() > 2
        && parts[1..parts.len() - 1]
            .iter()
            .any(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameter names of a 4-layer Llama (HF order, untied head).
    fn llama_names() -> Vec<String> {
        let mut v = vec!["model.embed_tokens.weight".to_string()];
        for i in 0..4 {
            for m in [
                "self_attn.q_proj.weight",
                "self_attn.k_proj.weight",
                "self_attn.v_proj.weight",
                "self_attn.o_proj.weight",
                "mlp.gate_proj.weight",
                "mlp.up_proj.weight",
                "mlp.down_proj.weight",
                "input_layernorm.weight",
                "post_attention_layernorm.weight",
            ] {
                v.push(format!("model.layers.{i}.{m}"));
            }
        }
        v.push("model.norm.weight".into());
        v.push("lm_head.weight".into());
        v
    }

    fn spec(layers: i64, modules: &[&str], extra: &[&str]) -> FreezeSpec {
        FreezeSpec {
            trainable_layers: layers,
            trainable_modules: modules.iter().map(|s| s.to_string()).collect(),
            extra_modules: extra.iter().map(|s| s.to_string()).collect(),
            use_llama_pro: false,
        }
    }

    #[test]
    fn last_two_layers_all_modules() {
        let names = llama_names();
        let (t, p) = freeze_trainable(&names, 4, &spec(2, &["all"], &[])).unwrap();
        assert_eq!(p, vec![".2.", ".3."]);
        assert_eq!(t.len(), 18);
        assert!(t.iter().all(|n| n.contains(".2.") || n.contains(".3.")));
    }

    #[test]
    fn first_layer_mlp_plus_extra_norm_matches_every_norm_by_substring() {
        let names = llama_names();
        let (t, p) = freeze_trainable(&names, 4, &spec(-1, &["mlp"], &["norm"])).unwrap();
        assert_eq!(p, vec![".0.mlp", "norm"]);
        // `norm` is a substring of every layernorm name too, as in LLaMA-Factory.
        assert_eq!(t.len(), 3 + 8 + 1);
        assert!(t.contains(&"model.layers.3.input_layernorm.weight".to_string()));
        assert!(t.contains(&"model.norm.weight".to_string()));
        assert!(!t.contains(&"lm_head.weight".to_string()));
    }

    #[test]
    fn unknown_modules_are_errors_listing_the_choices() {
        let names = llama_names();
        let e = freeze_trainable(&names, 4, &spec(1, &["attn"], &[])).unwrap_err();
        assert!(e.to_string().contains("Module attn is not found"), "{e}");
        assert!(e.to_string().contains("self_attn"), "{e}");
        let e = freeze_trainable(&names, 4, &spec(1, &["all"], &["head"])).unwrap_err();
        assert!(e.to_string().contains("embed_tokens, norm, lm_head"), "{e}");
    }

    #[test]
    fn llama_pro_strides() {
        let names = llama_names();
        let mut s = spec(2, &["all"], &[]);
        s.use_llama_pro = true;
        let (_, p) = freeze_trainable(&names, 4, &s).unwrap();
        assert_eq!(p, vec![".1.", ".3."]);
        s.trainable_layers = 3;
        assert!(freeze_trainable(&names, 4, &s).is_err());
    }
}
