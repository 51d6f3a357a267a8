//! The generation engine: one thread owns the model and a [`DecodeBatch`] in batch-invariant
//! mode. Requests arrive on a channel; at every step the engine admits waiting sequences up
//! to `max_concurrent`, runs one step for all of them and sends each new token to its
//! request's channel. A request whose receiver is gone (client disconnected, stop string
//! found) leaves the batch at the next step. The thread ends when every [`Engine`] handle is
//! dropped and the last sequence has finished.

use lmf_models::{CausalLM, DecodeBatch, Finish, GenerationConfig};
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use tokio::sync::mpsc::UnboundedSender;

/// What the engine tells a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A new token.
    Token(u32),
    /// The sequence ended (after its last token).
    Done(Finish),
    /// The step failed; the sequence is gone.
    Failed(String),
}

/// One sequence to generate.
pub struct Job {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Its decoding settings.
    pub cfg: GenerationConfig,
    /// Philox stream of its draws (the reply's index among the request's `n`).
    pub stream: u64,
    /// Where its events go.
    pub events: UnboundedSender<Event>,
}

/// What the engine did, reported when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Sequences admitted.
    pub sequences: u64,
    /// Tokens generated.
    pub tokens: u64,
    /// Most sequences decoding together in one step.
    pub peak_batch: usize,
}

/// A handle that submits jobs to the engine thread.
#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::Sender<Job>,
}

impl Engine {
    /// Starts the engine thread on `model`; at most `max_concurrent` sequences decode together.
    pub fn start(
        model: CausalLM,
        max_concurrent: usize,
    ) -> (Engine, std::thread::JoinHandle<EngineStats>) {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("lmf-engine".into())
            .spawn(move || run(&model, &rx, max_concurrent.max(1)))
            .expect("spawn the engine thread");
        (Engine { jobs: tx }, thread)
    }

    /// Queues a job; its events arrive on the job's channel.
    pub fn submit(&self, job: Job) -> Result<(), String> {
        self.jobs
            .send(job)
            .map_err(|_| "the generation engine has stopped".to_string())
    }
}

/// The engine loop.
fn run(model: &CausalLM, rx: &mpsc::Receiver<Job>, max_concurrent: usize) -> EngineStats {
    let mut stats = EngineStats::default();
    let mut batch = DecodeBatch::new(model, true);
    let mut running: HashMap<u64, Job> = HashMap::new();
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut next_key = 0u64;
    let mut open = true;
    loop {
        if batch.is_empty() && queue.is_empty() {
            if !open {
                return stats;
            }
            match rx.recv() {
                Ok(j) => queue.push_back(j),
                Err(_) => return stats,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(j) => queue.push_back(j),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // requests nobody listens to any more leave before the step
        running.retain(|&key, job| {
            let gone = job.events.is_closed();
            if gone {
                batch.cancel(key);
            }
            !gone
        });
        queue.retain(|j| !j.events.is_closed());
        while batch.len() < max_concurrent {
            let Some(job) = queue.pop_front() else { break };
            let key = next_key;
            next_key += 1;
            match batch.admit(key, job.prompt.clone(), job.cfg.clone(), job.stream) {
                Ok(()) => {
                    running.insert(key, job);
                    stats.sequences += 1;
                }
                Err(e) => {
                    let _ = job.events.send(Event::Failed(e.to_string()));
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        stats.peak_batch = stats.peak_batch.max(batch.len());
        match catch_unwind(AssertUnwindSafe(|| batch.step())) {
            Ok(Ok(emitted)) => {
                stats.tokens += emitted.len() as u64;
                for e in emitted {
                    let Some(job) = running.get(&e.key) else {
                        continue;
                    };
                    let sent = job.events.send(Event::Token(e.token)).is_ok();
                    if let Some(f) = e.finish {
                        let _ = job.events.send(Event::Done(f));
                        running.remove(&e.key);
                    } else if !sent {
                        batch.cancel(e.key);
                        running.remove(&e.key);
                    }
                }
            }
            failed => {
                let msg = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the generation step panicked".to_string(),
                };
                for (_, job) in running.drain() {
                    let _ = job.events.send(Event::Failed(msg.clone()));
                }
                batch = DecodeBatch::new(model, true);
            }
        }
    }
}
