//! `lmf chat`: LLaMA-Factory's command-line chat. Reads one user turn per line from stdin
//! (a terminal or a pipe), streams the reply, keeps the history; `clear` forgets it, `exit`
//! (or end of input) leaves. Prints what `llamafactory-cli chat` prints, except that end of
//! input ends the session quietly instead of with a Python traceback.

use lmf_trainers::args::{parse_infer_args, GenerateRequest};
use lmf_trainers::chat::ChatModel;
use lmf_trainers::template::{Message, Role};
use std::io::{BufRead, Write};

/// Runs the chat loop with LLaMA-Factory-style arguments.
pub fn run(argv: &[String]) -> anyhow::Result<()> {
    let args = parse_infer_args(argv)?;
    for note in &args.notes {
        eprintln!("note: {note}");
    }
    let chat = ChatModel::from_args(&args)?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "Welcome to the CLI application, use `clear` to remove the history, use `exit` to exit the application."
    )?;
    let mut messages: Vec<Message> = vec![];
    let mut lines = std::io::stdin().lock().lines();
    loop {
        write!(out, "\nUser: ")?;
        out.flush()?;
        let query = match lines.next() {
            None => break,
            Some(Ok(line)) => line,
            Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                writeln!(out, "Detected decoding error at the inputs, please set the terminal encoding to utf-8.")?;
                continue;
            }
            Some(Err(e)) => return Err(e.into()),
        };
        match query.trim() {
            "exit" => break,
            "clear" => {
                messages.clear();
                writeln!(out, "History has been removed.")?;
                continue;
            }
            _ => {}
        }
        messages.push(Message::new(Role::User, query));
        write!(out, "Assistant: ")?;
        out.flush()?;
        let mut write_err = None;
        let reply = chat.stream_chat(
            &messages,
            None,
            None,
            &GenerateRequest::default(),
            |piece| {
                if let Err(e) = out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
                    write_err.get_or_insert(e);
                }
            },
        )?;
        if let Some(e) = write_err {
            return Err(e.into());
        }
        writeln!(out)?;
        messages.push(Message::new(Role::Assistant, reply.response_text));
    }
    Ok(())
}
