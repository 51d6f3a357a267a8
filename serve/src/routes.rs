//! The routes: `GET /v1/models`, `POST /v1/chat/completions` (whole or streamed as
//! server-sent events ending with `[DONE]`) and `POST /v1/score/evaluation` (reward models),
//! each behind the `API_KEY` bearer check.

use crate::engine::{Event, Job};
use crate::error::ApiError;
use crate::protocol::*;
use crate::request::{conversation, generate_request, stops};
use crate::state::{ChatServe, ScoreServe, Served, State};
use crate::text::ReplyText;
use axum::extract::rejection::JsonRejection;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lmf_models::{Finish, GenerationConfig};
use lmf_trainers::template::Extracted;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_stream::wrappers::UnboundedReceiverStream;

/// The app's router over `state`.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/score/evaluation", post(score_evaluation))
        .with_state(state)
}

type Shared = AxState<Arc<State>>;

async fn list_models(AxState(st): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    st.check_key(&headers)?;
    Ok(Json(ModelList {
        object: "list",
        data: vec![ModelCard {
            id: st.model_name.clone(),
            object: "model",
            created: now(),
            owned_by: "owner",
        }],
    })
    .into_response())
}

/// What a chat request runs: its prompt and each reply's settings.
struct Prepared {
    prompt: Vec<u32>,
    cfg: GenerationConfig,
    skip_special: bool,
    n: usize,
    stops: Vec<String>,
    tools: bool,
}

fn not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Not allowed")
}

fn prepare(
    st: &State,
    chat: &ChatServe,
    req: &ChatCompletionRequest,
) -> Result<Prepared, ApiError> {
    if req.model != st.model_name {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "The model `{}` does not exist: this server serves `{}`",
                req.model, st.model_name
            ),
        )
        .with_code("model_not_found"));
    }
    let conv = conversation(req)?;
    let cm = &chat.chat;
    let prompt = cm
        .encode_prompt(
            &conv.messages,
            conv.system.as_deref(),
            conv.tools.as_deref(),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if prompt.len() >= chat.max_context {
        return Err(ApiError::bad_request(format!(
            "This model's maximum context length is {} tokens; the prompt has {}",
            chat.max_context,
            prompt.len()
        ))
        .with_code("context_length_exceeded"));
    }
    if req.max_tokens.is_some_and(|m| m < 0) {
        return Err(ApiError::bad_request("`max_tokens` must be at least 0"));
    }
    if req.n < 1 || req.n as usize > st.max_concurrent {
        return Err(ApiError::bad_request(format!(
            "`n` must be between 1 and {} (MAX_CONCURRENT)",
            st.max_concurrent
        )));
    }
    let s = cm
        .decode_settings(&generate_request(req), prompt.len())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut cfg = s.cfg;
    cfg.validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    // the reply fits the context: past it the model has no positions
    cfg.max_new_tokens = cfg.max_new_tokens.min(chat.max_context - prompt.len());
    Ok(Prepared {
        prompt,
        cfg,
        skip_special: s.skip_special_tokens,
        n: s.n,
        stops: stops(req),
        tools: conv.tools.is_some(),
    })
}

/// Submits reply `i` of `p`; its events arrive on the returned receiver.
fn submit(chat: &ChatServe, p: &Prepared, i: usize) -> Result<UnboundedReceiver<Event>, ApiError> {
    let (tx, rx) = unbounded_channel();
    if p.cfg.max_new_tokens == 0 {
        let _ = tx.send(Event::Done(Finish::Length));
        return Ok(rx);
    }
    chat.engine
        .submit(Job {
            prompt: p.prompt.clone(),
            cfg: p.cfg.clone(),
            stream: i as u64,
            events: tx,
        })
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok(rx)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn chat_completions(
    AxState(st): Shared,
    headers: HeaderMap,
    body: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    st.check_key(&headers)?;
    let Json(req) = body?;
    let Served::Chat(chat) = &st.served else {
        return Err(not_allowed());
    };
    let p = prepare(&st, chat, &req)?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    if req.stream {
        if p.tools {
            return Err(ApiError::bad_request("Cannot stream function calls."));
        }
        if p.n > 1 {
            return Err(ApiError::bad_request("Cannot stream multiple responses."));
        }
        let rx = submit(chat, &p, 0)?;
        return Ok(stream_reply(st.clone(), p, rx, id, req.model).into_response());
    }
    // every reply is queued before any is read: they decode together
    let receivers = (0..p.n)
        .map(|i| submit(chat, &p, i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut choices = vec![];
    let mut completion_tokens = 0;
    for (index, mut rx) in receivers.into_iter().enumerate() {
        let mut text = ReplyText::new(&chat.chat.tokenizer, p.skip_special, &p.stops);
        let finish = loop {
            match rx.recv().await {
                Some(Event::Token(t)) => {
                    text.push(t).map_err(internal)?;
                    if text.stopped() {
                        break Finish::Stop; // dropping `rx` ends the sequence
                    }
                }
                Some(Event::Done(f)) => break f,
                Some(Event::Failed(e)) => return Err(internal(e)),
                None => return Err(internal("the generation engine stopped")),
            }
        };
        completion_tokens += text.num_tokens();
        let reply = text.full_text().map_err(internal)?;
        let (message, finish_reason) = match p.tools {
            true => match chat.chat.template.extract_tool(&reply) {
                Extracted::Calls(calls) => (
                    ChatCompletionMessage {
                        role: Some(Role::Assistant),
                        content: None,
                        tool_calls: Some(
                            calls
                                .into_iter()
                                .map(|c| FunctionCall {
                                    id: format!("call_{}", uuid::Uuid::new_v4().simple()),
                                    kind: "function".into(),
                                    function: Function {
                                        name: c.name,
                                        arguments: c.arguments,
                                    },
                                })
                                .collect(),
                        ),
                    },
                    FinishReason::ToolCalls,
                ),
                Extracted::Text(t) => (assistant(t), finish_reason(finish)),
            },
            false => (assistant(reply), finish_reason(finish)),
        };
        choices.push(Choice {
            index,
            message,
            finish_reason,
        });
    }
    Ok(Json(ChatCompletionResponse {
        id,
        object: "chat.completion",
        created: now(),
        model: req.model,
        choices,
        usage: Usage {
            prompt_tokens: p.prompt.len(),
            completion_tokens,
            total_tokens: p.prompt.len() + completion_tokens,
        },
    })
    .into_response())
}

fn assistant(text: String) -> ChatCompletionMessage {
    ChatCompletionMessage {
        role: Some(Role::Assistant),
        content: Some(text),
        tool_calls: None,
    }
}

fn finish_reason(f: Finish) -> FinishReason {
    match f {
        Finish::Stop => FinishReason::Stop,
        Finish::Length => FinishReason::Length,
    }
}

/// The SSE response of a streamed reply: a first chunk with the role, one chunk per released
/// piece of text, a last chunk with the finish reason, then `[DONE]`. A task moves the
/// engine's tokens to the response; when the client goes away the response (and with it the
/// task's sender) is dropped, the task ends, and the engine drops the sequence.
fn stream_reply(
    st: Arc<State>,
    p: Prepared,
    mut rx: UnboundedReceiver<Event>,
    id: String,
    model: String,
) -> Sse<UnboundedReceiverStream<Result<SseEvent, Infallible>>> {
    let (tx, out) = unbounded_channel::<Result<SseEvent, Infallible>>();
    tokio::spawn(async move {
        let Served::Chat(chat) = &st.served else {
            return;
        };
        let chunk = |delta: ChatCompletionMessage, finish: Option<FinishReason>| {
            let c = ChatCompletionChunk {
                id: id.clone(),
                object: "chat.completion.chunk",
                created: now(),
                model: model.clone(),
                choices: vec![StreamChoice {
                    index: 0,
                    delta,
                    finish_reason: finish,
                }],
            };
            Ok(SseEvent::default().data(serde_json::to_string(&c).unwrap_or_default()))
        };
        let content = |s: String| ChatCompletionMessage {
            content: Some(s),
            ..Default::default()
        };
        let first = ChatCompletionMessage {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            tool_calls: None,
        };
        if tx.send(chunk(first, None)).is_err() {
            return;
        }
        let mut text = ReplyText::new(&chat.chat.tokenizer, p.skip_special, &p.stops);
        let finish = loop {
            let piece = match rx.recv().await {
                Some(Event::Token(t)) => text.push(t),
                Some(Event::Done(f)) => match text.finish() {
                    Ok(rest) => {
                        if !rest.is_empty() && tx.send(chunk(content(rest), None)).is_err() {
                            return;
                        }
                        break Some(finish_reason(f));
                    }
                    Err(e) => Err(e),
                },
                Some(Event::Failed(_)) | None => break None,
            };
            match piece {
                Ok(s) if s.is_empty() => {}
                Ok(s) => {
                    if tx.send(chunk(content(s), None)).is_err() {
                        return; // client gone: dropping `rx` frees the slot
                    }
                }
                Err(_) => break None,
            }
            if text.stopped() {
                break Some(FinishReason::Stop);
            }
        };
        // a failed step ends the stream without a finish reason (the client sees a cut reply)
        if let Some(f) = finish {
            let _ = tx.send(chunk(ChatCompletionMessage::default(), Some(f)));
            let _ = tx.send(Ok(SseEvent::default().data("[DONE]")));
        }
    });
    Sse::new(UnboundedReceiverStream::new(out))
}

async fn score_evaluation(
    AxState(st): Shared,
    headers: HeaderMap,
    body: Result<Json<ScoreEvaluationRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    st.check_key(&headers)?;
    let Json(req) = body?;
    let Served::Score(score) = &st.served else {
        return Err(not_allowed());
    };
    if req.messages.is_empty() {
        return Err(ApiError::bad_request(
            "Invalid request: `messages` is empty",
        ));
    }
    let score: Arc<ScoreServe> = score.clone();
    let texts = req.messages.clone();
    let max_length = req.max_length;
    let scores = tokio::task::spawn_blocking(move || score.scores(&texts, max_length))
        .await
        .map_err(internal)??;
    Ok(Json(ScoreEvaluationResponse {
        id: format!("scoreval-{}", uuid::Uuid::new_v4().simple()),
        object: "score.evaluation",
        model: req.model,
        scores,
    })
    .into_response())
}
