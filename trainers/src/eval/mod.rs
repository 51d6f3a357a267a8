//! `lmf eval`: LLaMA-Factory 0.9.3's `Evaluator` (0.9.5 raises NotImplementedError), the
//! MMLU / CMMLU / C-Eval protocol on LLaMA-Factory's task folders ([`task`]):
//!
//! - for every subject of `mapping.json` and every question of the split: a few-shot
//!   conversation of `n_shot` questions of the subject's dev set drawn as LF draws them (an
//!   unseeded `datasets` shuffle per question, which takes its seed from numpy's global
//!   generator that `transformers.set_seed(seed)` seeded: replayed bit for bit), each question
//!   formatted by the language's [`EvalTemplate`] and the subject's system line on the first
//!   turn, encoded by the chat template like a chat prompt;
//! - the answer is the letter whose token has the largest next-token logit after the prompt
//!   (LF's softmax over the four choice tokens picks the same);
//! - accuracy per category (`Average`, `STEM`, `Social Sciences`, `Humanities`, `Other`) is
//!   printed, and with `save_dir` written to `results.log`, the chosen letters to
//!   `results.json`.

pub mod task;

use std::path::Path;

use lmf_autograd::no_grad;
use lmf_models::SeqBatch;

use crate::args::evaluation::{EvalArgs, EvalLang};
use crate::chat::load_for_inference;
use crate::data::numpy_rng::{LegacyRng, NumpyRng};
use crate::template::pyjson::PyJson;
use crate::template::{Message, Role};
use crate::train::io::write_atomic;
use crate::{Error, Result};
use task::{Question, TaskFolder};

/// LF's `CHOICES`.
pub const CHOICES: [&str; 4] = ["A", "B", "C", "D"];
/// LF's `SUBJECTS`: the categories, in the order the scores are printed.
pub const CATEGORIES: [&str; 5] = ["Average", "STEM", "Social Sciences", "Humanities", "Other"];

/// LF's `EvalTemplate` of a language.
#[derive(Clone, Copy, Debug)]
pub struct EvalTemplate {
    /// The system line, `{subject}` replaced by the subject's name.
    pub system: &'static str,
    /// One option line, `{choice}` and `{content}` replaced.
    pub choice: &'static str,
    /// What follows the options.
    pub answer: &'static str,
}

impl EvalTemplate {
    /// The template of `lang`.
    pub fn of(lang: EvalLang) -> EvalTemplate {
        match lang {
            EvalLang::En => EvalTemplate {
                system: "The following are multiple choice questions (with answers) about {subject}.\n\n",
                choice: "\n{choice}. {content}",
                answer: "\nAnswer:",
            },
            EvalLang::Zh => EvalTemplate {
                system: "以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n",
                choice: "\n{choice}. {content}",
                answer: "\n答案：",
            },
        }
    }

    /// A question as (prompt, answer letter).
    fn parse(&self, q: &Question) -> (String, String) {
        let mut prompt = q.question.clone();
        for (ch, content) in CHOICES.iter().zip(&q.choices) {
            prompt.push_str(
                &self
                    .choice
                    .replace("{choice}", ch)
                    .replace("{content}", content),
            );
        }
        prompt.push_str(self.answer);
        (prompt, q.answer.clone())
    }

    /// LF's `format_example`: the support questions answered, then the target question with
    /// its answer as the last assistant turn; the system line opens the first message.
    pub fn messages(
        &self,
        target: &Question,
        support: &[&Question],
        subject: &str,
    ) -> Vec<Message> {
        let mut out = Vec::with_capacity(2 * support.len() + 2);
        for q in support.iter().copied().chain(std::iter::once(target)) {
            let (prompt, answer) = self.parse(q);
            out.push(Message::new(Role::User, prompt));
            out.push(Message::new(Role::Assistant, answer));
        }
        let system = self.system.replace("{subject}", subject);
        out[0].content = format!("{system}{}", out[0].content);
        out
    }
}

/// numpy's global generator as LF's process leaves it, and the draw of an unseeded
/// `datasets.Dataset.shuffle()` (datasets 3.6): the seed is the legacy key word at the current
/// position (the first one when the position is past the end), one `np.random.random()` is
/// drawn, then `default_rng(seed).permutation(n)`.
pub struct SupportDraw {
    global: LegacyRng,
}

impl SupportDraw {
    /// After `transformers.set_seed(seed)`.
    pub fn new(seed: u64) -> SupportDraw {
        SupportDraw {
            global: LegacyRng::new(seed),
        }
    }

    /// The order of an unseeded shuffle of `n` rows.
    pub fn shuffle(&mut self, n: usize) -> Vec<usize> {
        let (key, pos) = self.global.state();
        let seed = if pos < 624 { key[pos] } else { key[0] };
        // np.random.random(): one double from two 32-bit draws
        self.global.next_u32();
        self.global.next_u32();
        NumpyRng::new(seed as u64).permutation(n)
    }
}

/// What one evaluation produced.
#[derive(Clone, Debug, Default)]
pub struct EvalResults {
    /// Per subject (mapping order), the chosen letter of each question.
    pub answers: Vec<(String, Vec<String>)>,
    /// Per category (CATEGORIES order, those with questions), the accuracy in percent.
    pub scores: Vec<(String, f64)>,
}

impl EvalResults {
    /// LF's score lines: `{category:>15}: {accuracy:.2}`.
    pub fn score_info(&self) -> String {
        self.scores
            .iter()
            .map(|(c, s)| format!("{c:>15}: {s:.2}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// LF's `results.json`: `json.dump(results, indent=2)`.
    pub fn results_json(&self) -> String {
        PyJson::Dict(
            self.answers
                .iter()
                .map(|(s, a)| {
                    let per = a
                        .iter()
                        .enumerate()
                        .map(|(i, x)| (i.to_string(), PyJson::Str(x.clone())))
                        .collect();
                    (s.clone(), PyJson::Dict(per))
                })
                .collect(),
        )
        .dumps_indent(2)
    }
}

/// `lmf eval`: runs the evaluation `args` describe, prints the scores, writes `save_dir`.
pub fn run_eval(args: &EvalArgs) -> Result<EvalResults> {
    let (task, split) = args.task_and_split();
    let e = &args.eval;
    let mut folder = TaskFolder::open(Path::new(&e.task_dir), task)?;
    let (model, tokenizer, template) =
        load_for_inference(&args.model, &args.data, &args.finetuning)?;
    let choice_ids = CHOICES
        .iter()
        .map(|ch| {
            tokenizer.encode(ch, false)?.last().copied().ok_or_else(|| {
                Error::Msg(format!(
                    "the tokenizer encodes the choice `{ch}` to nothing"
                ))
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    let eval_template = EvalTemplate::of(e.lang);
    let mut draw = SupportDraw::new(e.seed as u64);
    let mut correct: Vec<Vec<bool>> = vec![vec![]; CATEGORIES.len()];
    let mut results = EvalResults::default();
    let progress = indicatif::ProgressBar::with_draw_target(
        Some(folder.subjects.len() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    progress.set_message("Processing subjects");
    for subject in folder.subjects.clone() {
        let cat = CATEGORIES
            .iter()
            .position(|c| *c == subject.category)
            .filter(|&i| i > 0)
            .ok_or_else(|| {
                Error::Msg(format!(
                    "task `{task}`: subject `{}` has category `{}`; LLaMA-Factory's are {}",
                    subject.key,
                    subject.category,
                    CATEGORIES[1..].join(", ")
                ))
            })?;
        progress.set_message(subject.name.clone());
        let dev = folder.questions(&subject.key, "train")?;
        let questions = folder.questions(&subject.key, split)?;
        let mut prompts = Vec::with_capacity(questions.len());
        let mut labels = Vec::with_capacity(questions.len());
        for q in &questions {
            let order = draw.shuffle(dev.len());
            let support: Vec<&Question> = order
                .iter()
                .take(e.n_shot.max(0) as usize)
                .map(|&i| &dev[i])
                .collect();
            let messages = eval_template.messages(q, &support, &subject.name);
            let (ids, _) = template.encode_oneturn(&tokenizer, &messages, None, None)?;
            prompts.push(ids);
            labels.push(q.answer.clone());
        }
        let mut outputs = Vec::with_capacity(prompts.len());
        for chunk in prompts.chunks(e.batch_size.max(1) as usize) {
            outputs.extend(choose(&model, chunk, &choice_ids)?);
        }
        for (out, label) in outputs.iter().zip(&labels) {
            let ok = out == label;
            correct[cat].push(ok);
            correct[0].push(ok);
        }
        results.answers.push((subject.key.clone(), outputs));
        progress.inc(1);
    }
    progress.finish_and_clear();
    for (name, c) in CATEGORIES.iter().zip(&correct) {
        if !c.is_empty() {
            let acc = c.iter().filter(|&&x| x).count() as f64 / c.len() as f64;
            results.scores.push((name.to_string(), 100.0 * acc));
        }
    }
    let info = results.score_info();
    println!("{info}");
    if let Some(dir) = &e.save_dir {
        let dir = Path::new(dir);
        if dir.exists() {
            return Err(Error::Msg(format!(
                "`save_dir` already exists, use another one ({}).",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::Msg(format!("{}: {e}", dir.display())))?;
        write_atomic(&dir.join("results.json"), results.results_json().as_bytes())?;
        write_atomic(&dir.join("results.log"), info.as_bytes())?;
    }
    Ok(results)
}

/// The letter of the largest next-token logit among `choice_ids` after each prompt.
fn choose(
    model: &lmf_models::CausalLM,
    prompts: &[Vec<u32>],
    choice_ids: &[u32],
) -> Result<Vec<String>> {
    let batch = SeqBatch::from_seqs(prompts);
    let rows: Vec<i64> = batch.last_token_rows().iter().map(|&r| r as i64).collect();
    let logits = no_grad(|| -> Result<_> {
        let hidden = model.forward_hidden(&batch, None)?;
        let at = lmf_runtime::Tensor::from_vec(rows.clone(), &[rows.len()], model.device)?;
        Ok(model.logits(&hidden.index_select(&at, 0)?)?)
    })?;
    let all = logits.tensor().to_vec::<f32>()?;
    let vocab = all.len() / prompts.len().max(1);
    Ok((0..prompts.len())
        .map(|i| {
            let row = &all[i * vocab..(i + 1) * vocab];
            // the first of equal maxima, as torch.argmax
            let mut best = 0;
            for (k, &id) in choice_ids.iter().enumerate() {
                if row[id as usize] > row[choice_ids[best] as usize] {
                    best = k;
                }
            }
            CHOICES[best].to_string()
        })
        .collect())
}
