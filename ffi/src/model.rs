//! Models from C: load what `lmf chat` loads (an HF folder or hub id, adapters merged, the
//! chat template fixed onto the tokenizer), run a forward pass for logits, tokenize and
//! detokenize, encode a conversation with the template, and chat: generate a reply with
//! sampling parameters, streaming the text through a callback.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use lmf_autograd::{no_grad, DType, Tensor, Var};
use lmf_models::SeqBatch;
use lmf_trainers::args::{parse_infer_args, GenerateRequest};
use lmf_trainers::chat::{ChatModel, FinishReason};
use lmf_trainers::template::{Message, Role};

use crate::handle::{self, Object};
use crate::status::{
    guard, non_null, opt_str_arg, out_string, slice_arg, str_arg, strings_arg, write_out, FfiError,
    FfiResult, LmfStatus,
};
use crate::tensor::{with_out, LmfTensor};

/// An opaque loaded model with its tokenizer and chat template (free with `lmf_model_free`).
pub struct LmfModel {
    _private: [u8; 0],
}

/// Receives each printable piece of a streamed reply (UTF-8, NUL-terminated, valid only
/// during the call).
pub type LmfTextCallback =
    Option<unsafe extern "C" fn(piece: *const c_char, user_data: *mut c_void)>;

/// Decoding settings of one reply. Start from `lmf_generate_params_default()`, whose values
/// mean "as the model's arguments say" (the `do_sample`, `temperature`, ... of the load
/// arguments, LLaMA-Factory's defaults otherwise), and change what you need.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LmfGenerateParams {
    /// 1 samples, 0 decodes greedily, -1 keeps the configured choice.
    pub do_sample: i32,
    /// Softmax temperature (> 0); negative keeps the configured value. 0 means greedy.
    pub temperature: f64,
    /// Nucleus mass in (0, 1]; negative keeps the configured value.
    pub top_p: f64,
    /// Top-k (0 = off); negative keeps the configured value.
    pub top_k: i64,
    /// Repetition penalty (1 = off); 0 or negative keeps the configured value.
    pub repetition_penalty: f64,
    /// Reply length limit in tokens; 0 or negative keeps the configured value.
    pub max_new_tokens: i64,
    /// 1 drops special tokens from the text, 0 keeps them, -1 keeps the configured choice.
    pub skip_special_tokens: i32,
    /// When true, sampling draws from `seed` (the same seed gives the same reply).
    pub use_seed: bool,
    /// The sampling seed (with `use_seed`).
    pub seed: u64,
}

/// Why a reply ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LmfFinishReason {
    /// The model wrote a stop token of the template.
    Stop = 0,
    /// `max_new_tokens` was reached.
    Length = 1,
}

/// What `lmf_model_chat` reports besides the text.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LmfChatInfo {
    /// Tokens of the encoded prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (the stop token included).
    pub response_tokens: usize,
    /// Why generation ended.
    pub finish_reason: LmfFinishReason,
}

/// The parameters that keep every configured setting.
#[no_mangle]
pub extern "C" fn lmf_generate_params_default() -> LmfGenerateParams {
    LmfGenerateParams {
        do_sample: -1,
        temperature: -1.0,
        top_p: -1.0,
        top_k: -1,
        repetition_penalty: 0.0,
        max_new_tokens: 0,
        skip_special_tokens: -1,
        use_seed: false,
        seed: 0,
    }
}

fn request(p: &LmfGenerateParams) -> FfiResult<GenerateRequest> {
    let tri = |v: i32, what: &str| match v {
        -1 => Ok(None),
        0 => Ok(Some(false)),
        1 => Ok(Some(true)),
        _ => Err(FfiError::arg(format!("{what} must be -1, 0 or 1, got {v}"))),
    };
    if p.top_p > 1.0 || p.top_p == 0.0 {
        return Err(FfiError::arg(format!(
            "top_p must be in (0, 1], got {}",
            p.top_p
        )));
    }
    Ok(GenerateRequest {
        do_sample: tri(p.do_sample, "do_sample")?,
        temperature: (p.temperature >= 0.0).then_some(p.temperature),
        top_p: (p.top_p > 0.0).then_some(p.top_p),
        top_k: (p.top_k >= 0).then_some(p.top_k),
        repetition_penalty: (p.repetition_penalty > 0.0).then_some(p.repetition_penalty),
        max_new_tokens: (p.max_new_tokens > 0).then_some(p.max_new_tokens),
        skip_special_tokens: tri(p.skip_special_tokens, "skip_special_tokens")?,
        seed: p.use_seed.then_some(p.seed),
        ..GenerateRequest::default()
    })
}

/// A conversation from JSON: `[{"role": "user", "content": "..."}, ...]` with the roles
/// `system` (first only), `user`, `assistant`, `function` (a tool call), `observation` (or
/// `tool`: a tool result). Returns the messages and the system prompt, if the first message
/// was one.
fn parse_messages(json: &str) -> FfiResult<(Vec<Message>, Option<String>)> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| FfiError::arg(format!("messages: not valid JSON: {e}")))?;
    let items = value.as_array().ok_or_else(|| {
        FfiError::arg("messages: expected a JSON array of {\"role\", \"content\"} objects")
    })?;
    let mut messages = Vec::with_capacity(items.len());
    let mut system = None;
    for (i, item) in items.iter().enumerate() {
        let field = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_str())
                .ok_or_else(|| FfiError::arg(format!("messages[{i}]: `{k}` must be a string")))
        };
        let (role, content) = (field("role")?, field("content")?);
        let role = match role {
            "system" if i == 0 => {
                system = Some(content.to_string());
                continue;
            }
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "function" => Role::Function,
            "observation" | "tool" => Role::Observation,
            other => {
                return Err(FfiError::arg(format!(
                    "messages[{i}]: role `{other}` is not one of user, assistant, function, observation, tool (system only first)"
                )))
            }
        };
        messages.push(Message::new(role, content));
    }
    Ok((messages, system))
}

/// The conversation and system prompt of a chat call (an explicit `system` beats none; both
/// at once is an error).
fn conversation(
    messages_json: *const c_char,
    system: *const c_char,
) -> FfiResult<(Vec<Message>, Option<String>)> {
    let (messages, sys_msg) = parse_messages(str_arg(messages_json, "messages_json")?)?;
    let sys_arg = opt_str_arg(system, "system")?;
    if sys_arg.is_some() && sys_msg.is_some() {
        return Err(FfiError::arg(
            "the system prompt is given twice: as `system` and as the first message",
        ));
    }
    Ok((messages, sys_arg.map(str::to_string).or(sys_msg)))
}

fn ids_tensor(ids: &[u32]) -> FfiResult<Var> {
    let v: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    Ok(Var::constant(Tensor::from_vec(
        v,
        &[ids.len()],
        lmf_autograd::Device::Cpu,
    )?))
}

fn ids_arg(ids: *const i64, n: usize) -> FfiResult<Vec<u32>> {
    slice_arg(ids, n, "ids")?
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            u32::try_from(t).map_err(|_| FfiError::arg(format!("ids[{i}] = {t} is not a token id")))
        })
        .collect()
}

/// Loads a model from `lmf chat`'s arguments: `args` holds `nargs` strings, a YAML/JSON file
/// and/or `key=value` pairs (`model_name_or_path=...`, `adapter_name_or_path=...`,
/// `template=...`, the generating arguments). Adapters are merged into the weights.
#[no_mangle]
pub unsafe extern "C" fn lmf_model_load(
    args: *const *const c_char,
    nargs: usize,
    out: *mut *mut LmfModel,
) -> LmfStatus {
    guard(|| {
        non_null(out, "out")?;
        let argv = strings_arg(args, nargs, "args")?;
        let parsed = parse_infer_args(&argv).map_err(lmf_trainers::Error::from)?;
        let model = ChatModel::from_args(&parsed)?;
        write_out(out, "out", handle::insert(Object::Model(Arc::new(model))))
    })
}

/// Frees a model. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn lmf_model_free(model: *mut LmfModel) -> LmfStatus {
    if model.is_null() {
        return LmfStatus::Ok;
    }
    guard(|| handle::remove(model, "LmfModel"))
}

/// The logits of every position of one sequence of `n` token ids: an F32 tensor
/// `[n, vocab_size]` (no graph is recorded).
#[no_mangle]
pub unsafe extern "C" fn lmf_model_forward(
    model: *const LmfModel,
    ids: *const i64,
    n: usize,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let m = handle::model(model)?;
        let ids = ids_arg(ids, n)?;
        if ids.is_empty() {
            return Err(FfiError::arg("lmf_model_forward: no token ids"));
        }
        let logits = no_grad(|| m.model.forward(&SeqBatch::from_seqs(&[ids])))?;
        Ok(Var::constant(logits.tensor().to_dtype(DType::F32)?))
    })
}

/// Token ids of `text` (an I64 tensor `[n]`), with the tokenizer's special tokens (BOS, ...)
/// when `add_special_tokens`.
#[no_mangle]
pub unsafe extern "C" fn lmf_model_tokenize(
    model: *const LmfModel,
    text: *const c_char,
    add_special_tokens: bool,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let m = handle::model(model)?;
        let ids = m
            .tokenizer
            .encode(str_arg(text, "text")?, add_special_tokens)?;
        ids_tensor(&ids)
    })
}

/// The text of `n` token ids (free `*text` with `lmf_string_free`).
#[no_mangle]
pub unsafe extern "C" fn lmf_model_detokenize(
    model: *const LmfModel,
    ids: *const i64,
    n: usize,
    skip_special_tokens: bool,
    text: *mut *mut c_char,
) -> LmfStatus {
    guard(|| {
        let m = handle::model(model)?;
        let ids = ids_arg(ids, n)?;
        out_string(
            text,
            "text",
            &m.tokenizer.decode(&ids, skip_special_tokens)?,
        )
    })
}

/// The prompt ids `lmf chat` feeds the model for a conversation (`messages_json`, see
/// `lmf_model_chat`) ending with a user or observation turn: an I64 tensor `[n]`.
#[no_mangle]
pub unsafe extern "C" fn lmf_model_encode_chat(
    model: *const LmfModel,
    messages_json: *const c_char,
    system: *const c_char,
    tools: *const c_char,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let m = handle::model(model)?;
        let (messages, system) = conversation(messages_json, system)?;
        let tools = opt_str_arg(tools, "tools")?;
        let ids = m.encode_prompt(&messages, system.as_deref(), tools)?;
        ids_tensor(&ids)
    })
}

/// Generates the assistant's reply to a conversation, as `lmf chat` does.
/// `messages_json` is a JSON array of `{"role": ..., "content": ...}` (roles `user`,
/// `assistant`, `function`, `observation`/`tool`, and `system` as the first message);
/// `system` and `tools` (a JSON list of tool definitions) may be NULL; `params` may be NULL
/// (the configured settings). Each printable piece goes to `callback` (may be NULL) as it is
/// decoded; the whole reply goes to `*reply` (free it with `lmf_string_free`) and, when `info`
/// is not NULL, the token counts and finish reason to `*info`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn lmf_model_chat(
    model: *const LmfModel,
    messages_json: *const c_char,
    system: *const c_char,
    tools: *const c_char,
    params: *const LmfGenerateParams,
    callback: LmfTextCallback,
    user_data: *mut c_void,
    reply: *mut *mut c_char,
    info: *mut LmfChatInfo,
) -> LmfStatus {
    guard(|| {
        non_null(reply, "reply")?;
        let m = handle::model(model)?;
        let (messages, system) = conversation(messages_json, system)?;
        let tools = opt_str_arg(tools, "tools")?;
        let params = if params.is_null() {
            lmf_generate_params_default()
        } else {
            unsafe { *params }
        };
        let req = request(&params)?;
        let res = m.stream_chat(&messages, system.as_deref(), tools, &req, |piece| {
            if let Some(cb) = callback {
                if let Ok(c) = CString::new(piece.replace('\0', "\\0")) {
                    unsafe { cb(c.as_ptr(), user_data) };
                }
            }
        })?;
        out_string(reply, "reply", &res.response_text)?;
        if !info.is_null() {
            let finish_reason = match res.finish_reason {
                FinishReason::Stop => LmfFinishReason::Stop,
                FinishReason::Length => LmfFinishReason::Length,
            };
            unsafe {
                info.write(LmfChatInfo {
                    prompt_tokens: res.prompt_length,
                    response_tokens: res.response_length,
                    finish_reason,
                })
            };
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_with_a_leading_system_prompt() {
        let (m, sys) = parse_messages(
            r#"[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo"}, {"role": "tool", "content": "42"}]"#,
        )
        .unwrap();
        assert_eq!(sys.as_deref(), Some("be brief"));
        let roles: Vec<Role> = m.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Observation]);
        assert_eq!(m[2].content, "42");
    }

    #[test]
    fn bad_messages_name_the_row() {
        for (json, want) in [
            ("{}", "JSON array"),
            ("[{\"role\": \"user\"}]", "messages[0]: `content`"),
            (
                "[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"system\", \"content\": \"b\"}]",
                "messages[1]: role `system`",
            ),
            ("[1", "not valid JSON"),
        ] {
            let err = parse_messages(json).unwrap_err();
            assert_eq!(err.status, LmfStatus::InvalidArgument);
            assert!(err.message.contains(want), "{json}: {}", err.message);
        }
    }

    #[test]
    fn default_params_keep_every_configured_setting() {
        assert_eq!(
            request(&lmf_generate_params_default()).unwrap(),
            GenerateRequest::default()
        );
        let mut p = lmf_generate_params_default();
        p.do_sample = 1;
        p.temperature = 0.5;
        p.top_k = 0;
        p.max_new_tokens = 7;
        p.use_seed = true;
        p.seed = 3;
        let r = request(&p).unwrap();
        assert_eq!(
            (
                r.do_sample,
                r.temperature,
                r.top_k,
                r.max_new_tokens,
                r.seed
            ),
            (Some(true), Some(0.5), Some(0), Some(7), Some(3))
        );
        p.do_sample = 2;
        assert_eq!(request(&p).unwrap_err().status, LmfStatus::InvalidArgument);
    }
}
