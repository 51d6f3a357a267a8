//! The tokenizer of a Hugging Face model folder: `tokenizer.json` (through the `tokenizers`
//! crate) plus what transformers reads around it — the named special tokens, the extra special
//! tokens, the chat template(s) and `clean_up_tokenization_spaces` from `tokenizer_config.json`,
//! `special_tokens_map.json`, `chat_template.jinja` and `additional_chat_templates/*.jinja`.
//!
//! The behaviour follows transformers 5 (`TokenizersBackend`): ids, `len(tokenizer)`, the
//! special-token ids (which fall back to the unk id for a token that is not in the vocabulary),
//! `add_special_tokens` and `decode` give what the Python tokenizer gives on the same folder.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::AddedToken;

use crate::{Error, Result};

/// File names inside a model folder, as transformers spells them.
const TOKENIZER_FILE: &str = "tokenizer.json";
const CONFIG_FILE: &str = "tokenizer_config.json";
const SPECIAL_TOKENS_MAP_FILE: &str = "special_tokens_map.json";
const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
const CHAT_TEMPLATE_DIR: &str = "additional_chat_templates";

/// The named special tokens, in transformers' `SPECIAL_TOKENS_ATTRIBUTES` order (which is the
/// order missing ones get added to the vocabulary in).
const NAMED: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];
const BOS: usize = 0;
const EOS: usize = 1;
const UNK: usize = 2;
const PAD: usize = 4;

/// The chat template(s) a tokenizer carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ChatTemplates {
    /// No chat template.
    #[default]
    None,
    /// One Jinja template.
    Single(String),
    /// Named templates (`[{name, template}, ...]` in the config, or extra `.jinja` files);
    /// transformers uses the one named `default`.
    Named(Vec<(String, String)>),
}

/// A Hugging Face tokenizer with its special tokens and chat template.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Named special tokens, indexed like [`NAMED`].
    named: [Option<String>; 7],
    /// `extra_special_tokens` (transformers 4: `additional_special_tokens`).
    extra: Vec<String>,
    chat_templates: ChatTemplates,
    clean_up_tokenization_spaces: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("named", &self.named)
            .field("extra", &self.extra)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads the tokenizer of the model folder `dir`.
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        let file = dir.join(TOKENIZER_FILE);
        if !file.is_file() {
            return Err(Error::missing(
                file,
                format!("the tokenizer of {}", dir.display()),
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(&file).map_err(|e| Error::file(&file, e))?;
        let mut tok = Tokenizer::from_tokenizers(inner);

        let config_path = dir.join(CONFIG_FILE);
        let config = read_json_object(&config_path)?;
        let mut pending_named: Vec<(usize, Option<Value>)> = Vec::new();
        let mut extra_values: Vec<Value> = Vec::new();
        if let Some(config) = &config {
            for (i, key) in NAMED.iter().enumerate() {
                if let Some(v) = config.get(*key) {
                    pending_named.push((i, Some(v.clone())));
                }
            }
            for key in ["additional_special_tokens", "extra_special_tokens"] {
                if let Some(Value::Array(list)) = config.get(key) {
                    extra_values.extend(list.iter().cloned());
                }
            }
            tok.clean_up_tokenization_spaces = config
                .get("clean_up_tokenization_spaces")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            tok.chat_templates = parse_chat_templates(&config_path, config.get("chat_template"))?;
        }

        // special_tokens_map.json is legacy: transformers reads it only when the config has no
        // `added_tokens_decoder`, and then its values win.
        let has_decoder = config
            .as_ref()
            .is_some_and(|c| c.contains_key("added_tokens_decoder"));
        let map_path = dir.join(SPECIAL_TOKENS_MAP_FILE);
        if !has_decoder {
            if let Some(map) = read_json_object(&map_path)? {
                for (i, key) in NAMED.iter().enumerate() {
                    if let Some(v) = map.get(*key) {
                        pending_named.push((i, Some(v.clone())));
                    }
                }
                for key in ["additional_special_tokens", "extra_special_tokens"] {
                    if let Some(Value::Array(list)) = map.get(key) {
                        for v in list {
                            if !extra_values.contains(v) {
                                extra_values.push(v.clone());
                            }
                        }
                    }
                }
            }
        }
        for (i, value) in pending_named {
            tok.named[i] = match value {
                None | Some(Value::Null) => None,
                Some(v) => Some(token_content(&v).ok_or_else(|| {
                    Error::file(
                        &config_path,
                        format!("`{}` must be a string or an AddedToken object", NAMED[i]),
                    )
                })?),
            };
        }
        for v in &extra_values {
            let content = token_content(v).ok_or_else(|| {
                Error::file(
                    &config_path,
                    "`additional_special_tokens` must hold strings or AddedToken objects",
                )
            })?;
            if !tok.extra.contains(&content) {
                tok.extra.push(content);
            }
        }

        // Tokens listed in `added_tokens_decoder` but absent from tokenizer.json are added.
        if let Some(Value::Object(decoder)) =
            config.as_ref().and_then(|c| c.get("added_tokens_decoder"))
        {
            let mut entries: Vec<(u64, &Value)> = decoder
                .iter()
                .filter_map(|(k, v)| k.parse::<u64>().ok().map(|id| (id, v)))
                .collect();
            entries.sort_by_key(|(id, _)| *id);
            let missing: Vec<AddedToken> = entries
                .into_iter()
                .filter_map(|(_, v)| added_token(v))
                .filter(|t| tok.inner.token_to_id(&t.content).is_none())
                .collect();
            if !missing.is_empty() {
                tok.inner.add_tokens(&missing);
            }
        }

        // chat_template.jinja and additional_chat_templates/*.jinja win over the config.
        let mut files: Vec<(String, String)> = Vec::new();
        let jinja = dir.join(CHAT_TEMPLATE_FILE);
        if jinja.is_file() {
            files.push(("default".into(), read_text(&jinja)?));
        }
        let extra_dir = dir.join(CHAT_TEMPLATE_DIR);
        if extra_dir.is_dir() {
            let mut extra_files: Vec<PathBuf> = std::fs::read_dir(&extra_dir)
                .map_err(|e| Error::io(&extra_dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
                .collect();
            extra_files.sort();
            for path in extra_files {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                files.push((name, read_text(&path)?));
            }
        }
        if files.len() == 1 && files[0].0 == "default" {
            tok.chat_templates = ChatTemplates::Single(files.remove(0).1);
        } else if !files.is_empty() {
            tok.chat_templates = ChatTemplates::Named(files);
        }

        // As transformers does at load: special tokens that are not in the vocabulary get added.
        let mut to_add: Vec<AddedToken> = Vec::new();
        for token in tok.named.iter().flatten().chain(tok.extra.iter()) {
            if tok.inner.token_to_id(token).is_none() && !to_add.iter().any(|t| &t.content == token)
            {
                to_add.push(AddedToken::from(token.clone(), true));
            }
        }
        if !to_add.is_empty() {
            tok.inner.add_tokens(&to_add);
        }
        Ok(tok)
    }

    /// Wraps a `tokenizers::Tokenizer` that has no special-token configuration.
    pub fn from_tokenizers(inner: tokenizers::Tokenizer) -> Tokenizer {
        Tokenizer {
            inner,
            named: Default::default(),
            extra: Vec::new(),
            chat_templates: ChatTemplates::None,
            clean_up_tokenization_spaces: false,
        }
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids of `text`; `add_special_tokens` runs the post-processor (e.g. adds bos).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::msg(format!("cannot tokenize {:?}: {e}", short(text))))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, as `tokenizer.decode(ids, skip_special_tokens=...)` in transformers.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let text = self
            .inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::msg(format!("cannot decode {} ids: {e}", ids.len())))?;
        Ok(if self.clean_up_tokenization_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// Id of `token` in the vocabulary (model or added tokens).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// transformers' `convert_tokens_to_ids`: the id of `token`, else the unk id.
    pub fn convert_token_to_id(&self, token: &str) -> Option<u32> {
        self.inner
            .token_to_id(token)
            .or_else(|| self.unk_token_id())
    }

    /// The token of `id`.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Size of the vocabulary with the added tokens (`len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The bos token.
    pub fn bos_token(&self) -> Option<&str> {
        self.named[BOS].as_deref()
    }

    /// The eos token.
    pub fn eos_token(&self) -> Option<&str> {
        self.named[EOS].as_deref()
    }

    /// The pad token.
    pub fn pad_token(&self) -> Option<&str> {
        self.named[PAD].as_deref()
    }

    /// The unk token.
    pub fn unk_token(&self) -> Option<&str> {
        self.named[UNK].as_deref()
    }

    /// Id of the bos token (unk id when the token is not in the vocabulary, as transformers).
    pub fn bos_token_id(&self) -> Option<u32> {
        self.named_id(BOS)
    }

    /// Id of the eos token (unk id when the token is not in the vocabulary, as transformers).
    pub fn eos_token_id(&self) -> Option<u32> {
        self.named_id(EOS)
    }

    /// Id of the pad token (unk id when the token is not in the vocabulary, as transformers).
    pub fn pad_token_id(&self) -> Option<u32> {
        self.named_id(PAD)
    }

    /// Id of the unk token.
    pub fn unk_token_id(&self) -> Option<u32> {
        self.named[UNK]
            .as_deref()
            .and_then(|t| self.inner.token_to_id(t))
    }

    fn named_id(&self, i: usize) -> Option<u32> {
        self.named[i]
            .as_deref()
            .and_then(|t| self.convert_token_to_id(t))
    }

    /// Makes `token` the eos token, adding it as a special token when it is not in the
    /// vocabulary (`add_special_tokens({"eos_token": token})`); returns the number added.
    pub fn set_eos_token(&mut self, token: &str) -> usize {
        self.named[EOS] = Some(token.to_string());
        self.inner
            .add_special_tokens(&[AddedToken::from(token.to_string(), true)])
    }

    /// Makes `token` the pad token (`tokenizer.pad_token = token`: the vocabulary is unchanged).
    pub fn set_pad_token(&mut self, token: &str) {
        self.named[PAD] = Some(token.to_string());
    }

    /// `add_special_tokens({"additional_special_tokens": tokens})`: unknown tokens join the
    /// vocabulary as special added tokens, and `tokens` become the extra special tokens — they
    /// replace the previous list, as transformers 5 does by default (the old tokens stay in
    /// the vocabulary). Returns what `tokenizers` counts as added (tokens that were not added
    /// tokens already).
    pub fn add_special_tokens(&mut self, tokens: &[String]) -> usize {
        if !tokens.is_empty() {
            self.extra = tokens.to_vec();
        }
        let added: Vec<AddedToken> = tokens
            .iter()
            .map(|t| AddedToken::from(t.clone(), true))
            .collect();
        self.inner.add_special_tokens(&added)
    }

    /// The extra special tokens (`extra_special_tokens`, formerly `additional_special_tokens`).
    pub fn additional_special_tokens(&self) -> &[String] {
        &self.extra
    }

    /// Ids of the extra special tokens.
    pub fn additional_special_tokens_ids(&self) -> Vec<u32> {
        self.extra
            .iter()
            .filter_map(|t| self.convert_token_to_id(t))
            .collect()
    }

    /// The named special tokens that are set, as `(name, token)` (`special_tokens_map`): what a
    /// Jinja chat template sees as `bos_token`, `eos_token`, ...
    pub fn special_tokens_map(&self) -> Vec<(&'static str, &str)> {
        NAMED
            .iter()
            .zip(self.named.iter())
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
            .collect()
    }

    /// The chat template transformers uses by default: the single one, or the one named
    /// `default`.
    pub fn chat_template(&self) -> Option<&str> {
        match &self.chat_templates {
            ChatTemplates::None => None,
            ChatTemplates::Single(t) => Some(t),
            ChatTemplates::Named(list) => list
                .iter()
                .find(|(name, _)| name == "default")
                .map(|(_, t)| t.as_str()),
        }
    }

    /// All chat templates as loaded.
    pub fn chat_templates(&self) -> &ChatTemplates {
        &self.chat_templates
    }

    /// Replaces the chat template(s) by one Jinja template.
    pub fn set_chat_template(&mut self, template: impl Into<String>) {
        self.chat_templates = ChatTemplates::Single(template.into());
    }

    /// Whether `decode` applies transformers' `clean_up_tokenization`.
    pub fn clean_up_tokenization_spaces(&self) -> bool {
        self.clean_up_tokenization_spaces
    }
}

/// transformers' `clean_up_tokenization`: drops the space before punctuation and English
/// contractions, in this order.
fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

/// The content of a token given as a string or an AddedToken object (`{"content": ...}`).
fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// An `added_tokens_decoder` entry as a `tokenizers` AddedToken.
fn added_token(v: &Value) -> Option<AddedToken> {
    let o = v.as_object()?;
    let flag = |k: &str, default: bool| o.get(k).and_then(Value::as_bool).unwrap_or(default);
    let special = flag("special", false);
    Some(
        AddedToken::from(o.get("content")?.as_str()?.to_string(), special)
            .single_word(flag("single_word", false))
            .lstrip(flag("lstrip", false))
            .rstrip(flag("rstrip", false))
            .normalized(flag("normalized", !special)),
    )
}

/// `chat_template` of the config: a string, or a list of `{name, template}`.
fn parse_chat_templates(path: &Path, v: Option<&Value>) -> Result<ChatTemplates> {
    match v {
        None | Some(Value::Null) => Ok(ChatTemplates::None),
        Some(Value::String(s)) => Ok(ChatTemplates::Single(s.clone())),
        Some(Value::Array(list)) => {
            let mut named = Vec::with_capacity(list.len());
            for item in list {
                let name = item.get("name").and_then(Value::as_str);
                let template = item.get("template").and_then(Value::as_str);
                match (name, template) {
                    (Some(n), Some(t)) => named.push((n.to_string(), t.to_string())),
                    _ => return Err(Error::file(
                        path,
                        "`chat_template` list entries must be {\"name\": ..., \"template\": ...}",
                    )),
                }
            }
            Ok(ChatTemplates::Named(named))
        }
        Some(_) => Err(Error::file(
            path,
            "`chat_template` must be a string or a list of {name, template}",
        )),
    }
}

/// Reads an optional JSON object file: `None` when the file does not exist.
fn read_json_object(path: &Path) -> Result<Option<serde_json::Map<String, Value>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = read_text(path)?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(Error::file(path, "expected a JSON object")),
        Err(e) => Err(Error::file(path, format!("invalid JSON: {e}"))),
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// The start of `text`, for error messages.
fn short(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_up_follows_transformers_order() {
        // Expected: transformers' clean_up_tokenization on the same text (" n't" needs the
        // space before the n, so "Isn 't" stays).
        assert_eq!(
            clean_up_tokenization("Isn 't it ? I 'm sure , they 're fine ."),
            "Isn 't it? I'm sure, they're fine."
        );
    }

    #[test]
    fn token_content_accepts_strings_and_added_tokens() {
        let v: Value = serde_json::json!({"__type": "AddedToken", "content": "<s>"});
        assert_eq!(token_content(&v).as_deref(), Some("<s>"));
        assert_eq!(
            token_content(&Value::String("x".into())).as_deref(),
            Some("x")
        );
        assert_eq!(token_content(&Value::Bool(true)), None);
    }

    #[test]
    fn missing_folder_names_the_file() {
        let dir = std::env::temp_dir().join("lmf-tokenizer-missing-test");
        let err = Tokenizer::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
        assert!(err.contains("lmf-tokenizer-missing-test"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
