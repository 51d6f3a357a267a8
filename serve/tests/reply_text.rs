//! `ReplyText`: the pieces released while tokens arrive concatenate to the reply cut before
//! its first stop string, nothing after a stop string is ever released (even when the stop
//! string spans tokens), and without stop strings the pieces are the streamer's.

use lmf_models::Tokenizer;
use lmf_serve::text::ReplyText;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf");

fn tokenizer() -> Tokenizer {
    Tokenizer::from_dir(std::path::Path::new(&format!("{FIX}/models/llama3"))).unwrap()
}

/// Pushes every token of `text`; returns (released pieces, whole reply, stopped, tokens fed).
fn run(tok: &Tokenizer, text: &str, stops: &[&str]) -> (Vec<String>, String, bool, usize) {
    let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
    let ids = tok.encode(text, false).unwrap();
    let mut r = ReplyText::new(tok, true, &stops);
    let mut pieces = vec![];
    let mut fed = 0;
    for &t in &ids {
        fed += 1;
        let p = r.push(t).unwrap();
        if !p.is_empty() {
            pieces.push(p);
        }
        if r.stopped() {
            break;
        }
    }
    let rest = r.finish().unwrap();
    if !rest.is_empty() {
        pieces.push(rest);
    }
    (pieces, r.full_text().unwrap(), r.stopped(), fed)
}

#[test]
fn released_text_is_the_reply_cut_at_the_first_stop_string() {
    let tok = tokenizer();
    let text = "The answer is four. Then we stop here and never print this.";
    let (pieces, full, stopped, fed) = run(&tok, text, &["never", " stop"]);
    assert!(stopped);
    let want = &text[..text.find(" stop").unwrap()];
    assert_eq!(full, want);
    assert_eq!(pieces.concat(), want);
    // it stopped as soon as the stop string was complete, not at the end
    assert!(fed < tok.encode(text, false).unwrap().len());
}

#[test]
fn a_stop_string_prefix_is_held_back_until_it_is_not_one() {
    let tok = tokenizer();
    // "stop" never completes: "sto" is held, then released with the rest
    let text = "we sto and go on";
    let (pieces, full, stopped, _) = run(&tok, text, &["stop"]);
    assert!(!stopped);
    assert_eq!(full, text);
    assert_eq!(pieces.concat(), text);
    for p in &pieces[..pieces.len() - 1] {
        assert!(!p.ends_with("sto") && !p.ends_with("st"), "{pieces:?}");
    }
}

#[test]
fn without_stop_strings_the_pieces_are_the_streamers() {
    let tok = tokenizer();
    let text = "one two three\nfour five";
    let (pieces, full, stopped, _) = run(&tok, text, &[]);
    assert!(!stopped);
    assert_eq!(full, text);
    assert_eq!(pieces.concat(), text);
    assert!(pieces.len() >= 3, "{pieces:?}");
    // empty stop strings are ignored
    let (_, full, stopped, _) = run(&tok, text, &[""]);
    assert!(!stopped);
    assert_eq!(full, text);
}
