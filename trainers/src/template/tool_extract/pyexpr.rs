//! A Python expression parser for LFM 2's calls: `ast.parse(text, mode="eval")` over the
//! syntax a model writes there, and `ast.literal_eval` of the argument values.

use super::{dict_set, NoResult, Val, TYPE_ERROR};

/// The nodes LF looks at; anything else that parses is `Other`.
#[derive(Debug)]
pub(super) enum Node {
    Const(Val),
    Name(String),
    List(Vec<Node>),
    Tuple(Vec<Node>),
    Set(Vec<Node>),
    /// `None` key: a `**mapping` entry.
    Dict(Vec<(Option<Node>, Node)>),
    Call {
        func: Box<Node>,
        args: Vec<Node>,
        /// `None` name: a `**mapping` argument.
        keywords: Vec<(Option<String>, Node)>,
    },
    /// `+x` / `-x` (other unary operators are `Other`).
    Unary(bool, Box<Node>),
    /// `a + b` / `a - b` (other binary operators are `Other`).
    Binary(bool, Box<Node>, Box<Node>),
    Other,
}

/// Why `_ast_to_value` fails: `ValueError` (LF returns the text) or another exception.
pub(super) enum Conv {
    Malformed,
    Raise(NoResult),
}

/// A keyword argument's value: bare `true` / `false` / `null`, else `literal_eval`.
pub(super) fn keyword_value(node: &Node) -> Result<Val, Conv> {
    match node {
        Node::Name(n) => match n.as_str() {
            "true" => Ok(Val::Bool(true)),
            "false" => Ok(Val::Bool(false)),
            "null" => Ok(Val::None),
            _ => Err(Conv::Malformed),
        },
        _ => literal_eval(node),
    }
}

fn literal_eval(node: &Node) -> Result<Val, Conv> {
    match node {
        Node::Const(v) => Ok(v.clone()),
        Node::Tuple(items) => Ok(Val::Tuple(
            items.iter().map(literal_eval).collect::<Result<_, _>>()?,
        )),
        Node::List(items) => Ok(Val::List(
            items.iter().map(literal_eval).collect::<Result<_, _>>()?,
        )),
        Node::Set(items) => {
            for item in items {
                if !literal_eval(item)?.hashable() {
                    return Err(Conv::Raise(TYPE_ERROR));
                }
            }
            Ok(Val::Set)
        }
        Node::Call {
            func,
            args,
            keywords,
        } if matches!(func.as_ref(), Node::Name(n) if n == "set")
            && args.is_empty()
            && keywords.is_empty() =>
        {
            Ok(Val::Set)
        }
        Node::Dict(items) => {
            let mut out = Vec::new();
            for (key, value) in items {
                let key = match key {
                    Some(k) => literal_eval(k)?,
                    None => return Err(Conv::Malformed),
                };
                let value = literal_eval(value)?;
                if !key.hashable() {
                    return Err(Conv::Raise(TYPE_ERROR));
                }
                dict_set(&mut out, key, value);
            }
            Ok(Val::Dict(out))
        }
        Node::Binary(add, left, right) => {
            let l = signed_num(left)?;
            let r = num(right)?;
            let lf = match &l {
                Val::Int(s) => s.parse::<f64>().unwrap_or(f64::INFINITY),
                Val::Float(f) => *f,
                _ => return Err(Conv::Malformed),
            };
            match r {
                Val::Complex(re, im) if *add => Ok(Val::Complex(lf + re, im)),
                Val::Complex(re, im) => Ok(Val::Complex(lf - re, -im)),
                _ => Err(Conv::Malformed),
            }
        }
        other => signed_num(other),
    }
}

fn signed_num(node: &Node) -> Result<Val, Conv> {
    match node {
        Node::Unary(negative, operand) => {
            let v = num(operand)?;
            Ok(if *negative { negate(v) } else { v })
        }
        other => num(other),
    }
}

fn num(node: &Node) -> Result<Val, Conv> {
    match node {
        Node::Const(v @ (Val::Int(_) | Val::Float(_) | Val::Complex(..))) => Ok(v.clone()),
        _ => Err(Conv::Malformed),
    }
}

fn negate(v: Val) -> Val {
    match v {
        Val::Int(s) if s == "0" => Val::Int(s),
        Val::Int(s) => Val::Int(match s.strip_prefix('-') {
            Some(pos) => pos.to_string(),
            None => format!("-{s}"),
        }),
        Val::Float(f) => Val::Float(-f),
        Val::Complex(re, im) => Val::Complex(-re, -im),
        other => other,
    }
}

// -----------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Bytes(Vec<u8>),
    FString,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Num(NumTok),
    Str(Lit),
    Op(&'static str),
    Newline,
}

#[derive(Debug, Clone, PartialEq)]
enum NumTok {
    Int(String),
    Float(f64),
    Imag(f64),
}

const OPS: [&str; 47] = [
    "**=", "//=", ">>=", "<<=", "...", "!=", "%=", "&=", "**", "*=", "+=", "-=", "->", "//", "/=",
    ":=", "<<", "<=", "==", ">=", ">>", "@=", "^=", "|=", "(", ")", "[", "]", "{", "}", ",", ":",
    ".", ";", "+", "-", "*", "/", "|", "&", "<", ">", "=", "%", "~", "^", "@",
];

/// Python's tokenizer limit on bracket nesting.
const MAX_LEVEL: usize = 200;

const KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

fn is_id_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (!c.is_ascii() && c.is_alphabetic())
}

fn is_id_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || (!c.is_ascii() && c.is_alphanumeric())
}

fn tokenize(src: &str) -> Option<Vec<Tok>> {
    if src.contains('\0') {
        return None;
    }
    // Python reads source with universal newlines.
    let src = src.replace("\r\n", "\n").replace('\r', "\n");
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut brackets: Vec<char> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\u{c}' => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\\' => {
                if chars.get(i + 1) != Some(&'\n') || i + 2 >= chars.len() {
                    return None;
                }
                i += 2;
            }
            '\n' => {
                if brackets.is_empty() && toks.last() != Some(&Tok::Newline) {
                    toks.push(Tok::Newline);
                }
                i += 1;
            }
            '\'' | '"' => {
                let (lit, next) = string(&chars, i, "")?;
                toks.push(Tok::Str(lit));
                i = next;
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let (num, next) = number(&chars, i)?;
                toks.push(Tok::Num(num));
                i = next;
            }
            c if is_id_start(c) => {
                let start = i;
                while i < chars.len() && is_id_continue(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let is_prefix = matches!(
                    word.to_ascii_lowercase().as_str(),
                    "r" | "u" | "b" | "br" | "rb" | "f" | "fr" | "rf"
                );
                if is_prefix && matches!(chars.get(i), Some('\'' | '"')) {
                    let (lit, next) = string(&chars, i, &word.to_ascii_lowercase())?;
                    toks.push(Tok::Str(lit));
                    i = next;
                } else {
                    toks.push(Tok::Name(word));
                }
            }
            _ => {
                let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
                let op: &'static str = OPS.iter().copied().find(|op| rest.starts_with(op))?;
                match op {
                    "(" | "[" | "{" => {
                        if brackets.len() >= MAX_LEVEL {
                            return None;
                        }
                        brackets.push(c);
                    }
                    ")" | "]" | "}" => {
                        let open = brackets.pop()?;
                        let want = match c {
                            ')' => '(',
                            ']' => '[',
                            _ => '{',
                        };
                        if open != want {
                            return None;
                        }
                    }
                    _ => {}
                }
                toks.push(Tok::Op(op));
                i += op.chars().count();
            }
        }
    }
    brackets.is_empty().then_some(toks)
}

/// A number token at `i`: `0x..`, `0o..`, `0b..`, decimal, float, imaginary; `_` only
/// between digits; no identifier character right after.
fn number(chars: &[char], mut i: usize) -> Option<(NumTok, usize)> {
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    // Digits of `ok` with single `_` between them, at least one; returns the end.
    let digits = |mut i: usize, ok: &dyn Fn(char) -> bool, lead_underscore: bool| {
        let start = i;
        loop {
            if at(i) == '_' && (i > start || lead_underscore) {
                if !ok(at(i + 1)) {
                    return None;
                }
                i += 1;
            }
            if !ok(at(i)) {
                break;
            }
            i += 1;
        }
        (i > start).then_some(i)
    };
    let end_ok = |i: usize| !is_id_continue(at(i));
    let clean = |from: usize, to: usize| -> String {
        chars[from..to].iter().filter(|c| **c != '_').collect()
    };
    if at(i) == '0' && matches!(at(i + 1), 'x' | 'X' | 'o' | 'O' | 'b' | 'B') {
        let radix = match at(i + 1) {
            'x' | 'X' => 16,
            'o' | 'O' => 8,
            _ => 2,
        };
        let end = digits(i + 2, &|c: char| c.is_digit(radix), true)?;
        if !end_ok(end) {
            return None;
        }
        let value = to_decimal(&clean(i + 2, end), radix);
        return Some((NumTok::Int(value), end));
    }
    let start = i;
    let mut is_float = false;
    if at(i) != '.' {
        i = digits(i, &|c: char| c.is_ascii_digit(), false)?;
    }
    if at(i) == '.' {
        is_float = true;
        i += 1;
        if at(i).is_ascii_digit() {
            i = digits(i, &|c: char| c.is_ascii_digit(), false)?;
        }
    }
    if matches!(at(i), 'e' | 'E') {
        let mut j = i + 1;
        if matches!(at(j), '+' | '-') {
            j += 1;
        }
        i = digits(j, &|c: char| c.is_ascii_digit(), false)?;
        is_float = true;
    }
    let text = clean(start, i);
    if matches!(at(i), 'j' | 'J') {
        i += 1;
        if !end_ok(i) {
            return None;
        }
        return Some((NumTok::Imag(text.parse().ok()?), i));
    }
    if !end_ok(i) {
        return None;
    }
    if is_float {
        return Some((NumTok::Float(text.parse().ok()?), i));
    }
    let trimmed = text.trim_start_matches('0');
    if trimmed.len() < text.len() && !trimmed.is_empty() {
        return None; // leading zeros in a decimal integer
    }
    let value = if trimmed.is_empty() { "0" } else { trimmed };
    Some((NumTok::Int(value.to_string()), i))
}

/// Digits in `radix` as a decimal string.
fn to_decimal(digits: &str, radix: u32) -> String {
    const BASE: u64 = 1_000_000_000;
    let mut limbs: Vec<u64> = vec![0]; // little-endian, base 10^9
    for c in digits.chars() {
        let mut carry = u64::from(c.to_digit(radix).unwrap_or(0));
        for limb in limbs.iter_mut() {
            let x = *limb * u64::from(radix) + carry;
            *limb = x % BASE;
            carry = x / BASE;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    let mut out = limbs.last().copied().unwrap_or(0).to_string();
    for limb in limbs.iter().rev().skip(1) {
        out.push_str(&format!("{limb:09}"));
    }
    out
}

/// A string literal whose quote is at `i`, with its (lower-case) prefix.
fn string(chars: &[char], mut i: usize, prefix: &str) -> Option<(Lit, usize)> {
    let raw = prefix.contains('r');
    let bytes = prefix.contains('b');
    let fstring = prefix.contains('f');
    let q = chars[i];
    let triple = chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q);
    i += if triple { 3 } else { 1 };
    let mut out = String::new();
    let hex = |from: usize, n: usize| -> Option<u32> {
        let s: String = chars.get(from..from + n)?.iter().collect();
        if !s.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(&s, 16).ok()
    };
    loop {
        let c = *chars.get(i)?;
        if c == q && (!triple || (chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q))) {
            i += if triple { 3 } else { 1 };
            break;
        }
        if c == '\n' && !triple {
            return None;
        }
        if bytes && !c.is_ascii() {
            return None;
        }
        i += 1;
        if c != '\\' {
            out.push(c);
            continue;
        }
        let d = *chars.get(i)?;
        i += 1;
        if raw {
            out.push('\\');
            out.push(d);
            continue;
        }
        match d {
            '\n' => {}
            '\\' | '\'' | '"' => out.push(d),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '0'..='7' => {
                let mut v = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.get(i).and_then(|c| c.to_digit(8)) {
                        Some(x) => {
                            v = v * 8 + x;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            'x' => {
                out.push(char::from_u32(hex(i, 2)?).unwrap_or('\u{fffd}'));
                i += 2;
            }
            'u' | 'U' if !bytes => {
                let n = if d == 'u' { 4 } else { 8 };
                let v = hex(i, n)?;
                if v > 0x10ffff {
                    return None;
                }
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                i += n;
            }
            // `\N{...}` needs Unicode's name table: not supported.
            'N' if !bytes => return None,
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    let lit = if fstring {
        Lit::FString
    } else if bytes {
        Lit::Bytes(out.chars().map(|c| c as u32 as u8).collect())
    } else {
        Lit::Str(out)
    };
    Some((lit, i))
}

// -----------------------------------------------------------------------------------------
// Parser

/// `ast.parse(src, mode="eval").body`; `None` for a syntax error (or syntax not handled).
pub(super) fn parse_eval(src: &str) -> Option<Node> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        depth: 0,
    };
    let node = p.expr()?;
    while p.peek() == Some(&Tok::Newline) {
        p.i += 1;
    }
    (p.i == p.toks.len()).then_some(node)
}

struct Parser {
    toks: Vec<Tok>,
    i: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 1000;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.i + k)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(n)) if n == w)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let hit = self.is_op(op);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn eat_word(&mut self, w: &str) -> bool {
        let hit = self.is_word(w);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// `expression`: a conditional expression (lambdas are not handled).
    fn expr(&mut self) -> Option<Node> {
        self.enter()?;
        let node = self.or_test()?;
        let node = if self.eat_word("if") {
            self.or_test()?;
            if !self.eat_word("else") {
                return None;
            }
            self.expr()?;
            Node::Other
        } else {
            node
        };
        self.depth -= 1;
        Some(node)
    }

    fn or_test(&mut self) -> Option<Node> {
        let mut node = self.and_test()?;
        while self.eat_word("or") {
            self.and_test()?;
            node = Node::Other;
        }
        Some(node)
    }

    fn and_test(&mut self) -> Option<Node> {
        let mut node = self.not_test()?;
        while self.eat_word("and") {
            self.not_test()?;
            node = Node::Other;
        }
        Some(node)
    }

    fn not_test(&mut self) -> Option<Node> {
        if self.eat_word("not") {
            self.enter()?;
            self.not_test()?;
            self.depth -= 1;
            return Some(Node::Other);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Option<Node> {
        let mut node = self.bitor()?;
        loop {
            let op = ["<", ">", "==", ">=", "<=", "!="]
                .into_iter()
                .any(|o| self.is_op(o));
            if op || self.is_word("in") {
                self.i += 1;
            } else if self.is_word("not")
                && matches!(self.peek_at(1), Some(Tok::Name(n)) if n == "in")
            {
                self.i += 2;
            } else if self.eat_word("is") {
                self.eat_word("not");
            } else {
                return Some(node);
            }
            self.bitor()?;
            node = Node::Other;
        }
    }

    /// The binary operators from `|` down to `*`, by precedence climbing.
    fn bitor(&mut self) -> Option<Node> {
        self.binary(0)
    }

    fn binary(&mut self, level: usize) -> Option<Node> {
        const LEVELS: [&[&str]; 6] = [
            &["|"],
            &["^"],
            &["&"],
            &["<<", ">>"],
            &["+", "-"],
            &["*", "/", "//", "%", "@"],
        ];
        if level == LEVELS.len() {
            return self.factor();
        }
        let mut node = self.binary(level + 1)?;
        loop {
            let Some(op) = LEVELS[level].iter().find(|o| self.is_op(o)).copied() else {
                return Some(node);
            };
            self.i += 1;
            let right = self.binary(level + 1)?;
            node = match op {
                "+" | "-" => Node::Binary(op == "+", Box::new(node), Box::new(right)),
                _ => Node::Other,
            };
        }
    }

    fn factor(&mut self) -> Option<Node> {
        for (op, sign) in [("+", Some(false)), ("-", Some(true)), ("~", None)] {
            if self.eat_op(op) {
                self.enter()?;
                let operand = self.factor()?;
                self.depth -= 1;
                return Some(match sign {
                    Some(negative) => Node::Unary(negative, Box::new(operand)),
                    None => Node::Other,
                });
            }
        }
        self.power()
    }

    fn power(&mut self) -> Option<Node> {
        let node = self.primary()?;
        if self.eat_op("**") {
            self.enter()?;
            self.factor()?;
            self.depth -= 1;
            return Some(Node::Other);
        }
        Some(node)
    }

    fn primary(&mut self) -> Option<Node> {
        let mut node = self.atom()?;
        loop {
            if self.eat_op("(") {
                let (args, keywords) = self.call_args()?;
                node = Node::Call {
                    func: Box::new(node),
                    args,
                    keywords,
                };
            } else if self.eat_op("[") {
                self.subscript()?;
                node = Node::Other;
            } else if self.eat_op(".") {
                match self.peek() {
                    Some(Tok::Name(n)) if !KEYWORDS.contains(&n.as_str()) => self.i += 1,
                    _ => return None,
                }
                node = Node::Other;
            } else {
                return Some(node);
            }
        }
    }

    /// After `[`: slices or expressions, up to `]`.
    fn subscript(&mut self) -> Option<()> {
        let mut any = false;
        loop {
            if self.eat_op("]") {
                return any.then_some(());
            }
            let mut item = false;
            if !self.is_op(":") {
                self.star_or_expr()?;
                item = true;
            }
            for _ in 0..2 {
                if !self.eat_op(":") {
                    break;
                }
                item = true;
                if !self.is_op(":") && !self.is_op("]") && !self.is_op(",") {
                    self.expr()?;
                }
            }
            if !item {
                return None;
            }
            any = true;
            if !self.eat_op(",") && !self.is_op("]") {
                return None;
            }
        }
    }

    /// After `(` of a call: positional arguments, then `name=value` / `*x` / `**x`.
    #[allow(clippy::type_complexity)]
    fn call_args(&mut self) -> Option<(Vec<Node>, Vec<(Option<String>, Node)>)> {
        let mut args = Vec::new();
        let mut keywords = Vec::new();
        let (mut seen_keyword, mut seen_double_star) = (false, false);
        loop {
            if self.eat_op(")") {
                return Some((args, keywords));
            }
            if self.eat_op("*") {
                if seen_double_star {
                    return None;
                }
                self.expr()?;
                args.push(Node::Other);
            } else if self.eat_op("**") {
                keywords.push((None, self.expr()?));
                seen_double_star = true;
            } else if matches!(self.peek_at(1), Some(Tok::Op("="))) {
                let Some(Tok::Name(name)) = self.peek().cloned() else {
                    return None;
                };
                if KEYWORDS.contains(&name.as_str()) {
                    return None;
                }
                self.i += 2;
                keywords.push((Some(name), self.expr()?));
                seen_keyword = true;
            } else {
                if seen_keyword || seen_double_star {
                    return None; // positional argument follows keyword argument
                }
                args.push(self.named_expr()?);
            }
            if !self.eat_op(",") && !self.is_op(")") {
                return None;
            }
        }
    }

    /// A display element: `*x` or a named expression.
    fn star_or_expr(&mut self) -> Option<Node> {
        if self.eat_op("*") {
            self.bitor()?;
            return Some(Node::Other);
        }
        self.named_expr()
    }

    /// `name := value` or an expression.
    fn named_expr(&mut self) -> Option<Node> {
        let walrus = matches!(self.peek(), Some(Tok::Name(n)) if !KEYWORDS.contains(&n.as_str()))
            && matches!(self.peek_at(1), Some(Tok::Op(":=")));
        if walrus {
            self.i += 2;
            self.expr()?;
            return Some(Node::Other);
        }
        self.expr()
    }

    /// Display elements up to `close` (trailing comma allowed); whether a comma was seen.
    fn elements(&mut self, close: &str) -> Option<(Vec<Node>, bool, bool)> {
        let mut items = Vec::new();
        let mut comma = false;
        let mut starred = false;
        loop {
            if self.eat_op(close) {
                return Some((items, comma, starred));
            }
            starred |= self.is_op("*");
            items.push(self.star_or_expr()?);
            if self.eat_op(",") {
                comma = true;
            } else if !self.is_op(close) {
                return None;
            }
        }
    }

    fn atom(&mut self) -> Option<Node> {
        let tok = self.peek()?.clone();
        self.i += 1;
        match tok {
            Tok::Name(n) => match n.as_str() {
                "True" => Some(Node::Const(Val::Bool(true))),
                "False" => Some(Node::Const(Val::Bool(false))),
                "None" => Some(Node::Const(Val::None)),
                _ if KEYWORDS.contains(&n.as_str()) => None,
                _ => Some(Node::Name(n)),
            },
            Tok::Num(NumTok::Int(s)) => Some(Node::Const(Val::Int(s))),
            Tok::Num(NumTok::Float(f)) => Some(Node::Const(Val::Float(f))),
            Tok::Num(NumTok::Imag(f)) => Some(Node::Const(Val::Complex(0.0, f))),
            Tok::Str(first) => {
                let mut lits = vec![first];
                while let Some(Tok::Str(l)) = self.peek() {
                    lits.push(l.clone());
                    self.i += 1;
                }
                concat(lits)
            }
            Tok::Op("...") => Some(Node::Const(Val::Ellipsis)),
            Tok::Op("(") => {
                self.enter()?;
                let (mut items, comma, starred) = self.elements(")")?;
                self.depth -= 1;
                if comma || items.is_empty() {
                    Some(Node::Tuple(items))
                } else if starred {
                    None // `(*x)`
                } else {
                    items.pop()
                }
            }
            Tok::Op("[") => {
                self.enter()?;
                let (items, _, _) = self.elements("]")?;
                self.depth -= 1;
                Some(Node::List(items))
            }
            Tok::Op("{") => {
                self.enter()?;
                let node = self.brace()?;
                self.depth -= 1;
                Some(node)
            }
            _ => None,
        }
    }

    /// After `{`: a dict or a set display.
    fn brace(&mut self) -> Option<Node> {
        if self.eat_op("}") {
            return Some(Node::Dict(Vec::new()));
        }
        let is_dict = self.is_op("**") || {
            let save = self.i;
            let starred = self.is_op("*");
            let colon = self.star_or_expr().is_some() && self.is_op(":") && !starred;
            self.i = save;
            colon
        };
        if !is_dict {
            let (items, _, _) = self.elements("}")?;
            return Some(Node::Set(items));
        }
        let mut items = Vec::new();
        loop {
            if self.eat_op("}") {
                return Some(Node::Dict(items));
            }
            if self.eat_op("**") {
                items.push((None, self.bitor()?));
            } else {
                let key = self.expr()?;
                if !self.eat_op(":") {
                    return None;
                }
                items.push((Some(key), self.expr()?));
            }
            if !self.eat_op(",") && !self.is_op("}") {
                return None;
            }
        }
    }
}

/// Adjacent string literals: one constant (`str` or `bytes`, not mixed; f-strings make a
/// non-constant).
fn concat(lits: Vec<Lit>) -> Option<Node> {
    let any_bytes = lits.iter().any(|l| matches!(l, Lit::Bytes(_)));
    let all_bytes = lits.iter().all(|l| matches!(l, Lit::Bytes(_)));
    if any_bytes && !all_bytes {
        return None;
    }
    if lits.iter().any(|l| matches!(l, Lit::FString)) {
        return Some(Node::Other);
    }
    if all_bytes {
        let mut out = Vec::new();
        for l in lits {
            if let Lit::Bytes(b) = l {
                out.extend(b);
            }
        }
        return Some(Node::Const(Val::Bytes(out)));
    }
    let mut out = String::new();
    for l in lits {
        if let Lit::Str(s) = l {
            out.push_str(&s);
        }
    }
    Some(Node::Const(Val::Str(out)))
}
