//! Source safety: a small Rust tokenizer (comments, strings, raw strings,
//! chars, escapes and lifetimes handled as rustc lexes them, rustc's own
//! whitespace set) and the rules a generated strategy must pass before it is
//! compiled. The rules are the first door, not the only one: candidates are
//! also built in a sandbox that sees no secrets (see `compile`).
//!
//! The rules fail closed: an identifier that names a compile-time reader
//! (`env`, `include_str`, ...) is refused wherever it appears, so no
//! `macro_rules!` can assemble the call; attributes and `mod` items that a
//! macro builds from metavariables are refused; non-ASCII characters outside
//! strings and comments are refused. A refusal names only its rule, its line
//! and its column, never text of the source, so nothing a build could read
//! comes back through a refusal message.

use std::fmt;

/// Why a piece of source is refused. Every payload is a name from this
/// module's fixed lists, never text copied from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum RefusalKind {
    /// `include!`, `include_str!`, `include_bytes!`, `env!`, `option_env!`,
    /// `asm!` and friends: refused as identifiers anywhere.
    ForbiddenMacro(&'static str),
    /// `extern` (blocks, functions, crates).
    Extern,
    /// `unsafe` anywhere.
    Unsafe,
    /// `#[path]`, `#[debugger_visualizer]`, `#[no_mangle]`, `#[export_name]`,
    /// `#[link_section]`, ... (refused anywhere) and `#[link]` (in attributes).
    ForbiddenAttribute(&'static str),
    /// An inner attribute (`#![...]`) other than the lint and doc ones.
    CrateAttribute,
    /// An attribute whose tokens come from a macro's metavariables (`#[$a]`).
    MacroBuiltAttribute,
    /// `mod` not followed by a name and an inline body (`mod name;`, `mod $n`).
    OutOfLineModule,
    /// `proc_macro` and its attributes.
    ProcMacro,
    /// A path reaching host facilities (`std::fs`, `use std::{net}`, `std::*`, `use std as s`).
    ForbiddenPath {
        root: &'static str,
        item: &'static str,
    },
    /// A non-ASCII character outside a string, a char or a comment.
    NonAscii,
    /// A string, char or comment that never ends, or a malformed char literal.
    Unterminated(&'static str),
    /// Larger than the configured source limit.
    TooLarge { bytes: usize, max: usize },
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalKind::ForbiddenMacro(m) => write!(
                f,
                "`{m}!` reads files, the environment or emits machine code"
            ),
            RefusalKind::Extern => f.write_str("`extern` declares foreign code or crates"),
            RefusalKind::Unsafe => f.write_str("`unsafe` is not allowed in strategies"),
            RefusalKind::ForbiddenAttribute(a) => {
                write!(f, "attribute `{a}` reads files, links or relocates code")
            }
            RefusalKind::CrateAttribute => f.write_str(
                "inner attributes other than allow, warn, deny, forbid, expect and doc are not allowed",
            ),
            RefusalKind::MacroBuiltAttribute => {
                f.write_str("attributes built from macro metavariables are not allowed")
            }
            RefusalKind::OutOfLineModule => {
                f.write_str("`mod` must be followed by a name and an inline `{ ... }` body")
            }
            RefusalKind::ProcMacro => f.write_str("`proc_macro` runs code in the compiler"),
            RefusalKind::ForbiddenPath { root, item } => {
                write!(f, "`{root}::{item}` reaches outside the sandbox")
            }
            RefusalKind::NonAscii => {
                f.write_str("non-ASCII character outside a string, char or comment")
            }
            RefusalKind::Unterminated(what) => write!(f, "unterminated or malformed {what}"),
            RefusalKind::TooLarge { bytes, max } => {
                write!(f, "source is {bytes} bytes, more than {max}")
            }
        }
    }
}

/// One refusal: where (1-based line and column, in characters) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    pub line: usize,
    pub column: usize,
    pub kind: RefusalKind,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.kind
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
    Literal,
    /// A lifetime or a label (`'a`).
    Lifetime,
}

#[derive(Debug, Clone)]
struct Token {
    line: usize,
    column: usize,
    tok: Tok,
}

/// Identifiers refused wherever they appear (also as macro arguments, so a
/// `macro_rules!` cannot assemble the call from a metavariable).
const MACROS: &[&str] = &[
    "include",
    "include_str",
    "include_bytes",
    "env",
    "option_env",
    "asm",
    "global_asm",
    "naked_asm",
    "llvm_asm",
    "concat_idents",
    "trace_macros",
    "log_syntax",
];
/// Attribute names refused wherever they appear (a macro can splice them
/// into an attribute built elsewhere).
const ATTRS_ANYWHERE: &[&str] = &[
    "path",
    "debugger_visualizer",
    "no_mangle",
    "export_name",
    "link_section",
    "link_name",
    "link_args",
    "link_ordinal",
    "crate_type",
    "crate_name",
    "no_core",
    "no_builtins",
];
/// Attribute names refused inside attributes.
const ATTRS: &[&str] = &["link"];
/// Inner attributes (`#![...]`) allowed.
const INNER_ALLOWED: &[&str] = &["allow", "warn", "deny", "forbid", "expect", "doc"];
const ROOTS: &[&str] = &["std", "core", "alloc"];
const PATHS: &[&str] = &["fs", "net", "process", "env", "os", "arch", "ffi"];

/// rustc's whitespace (Unicode Pattern_White_Space), which includes the
/// direction marks U+200E and U+200F; `char::is_whitespace` does not.
fn is_rust_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0B}'
            | '\u{0C}'
            | '\r'
            | ' '
            | '\u{85}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A cursor over the characters of a source, counting lines and columns.
struct Lexer<'a> {
    b: &'a [char],
    i: usize,
    line: usize,
    column: usize,
}

impl Lexer<'_> {
    fn peek(&self, k: usize) -> Option<char> {
        self.b.get(self.i + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn bump_n(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }

    /// `Some((prefix length, hashes))` when a raw string starts here.
    fn raw_string_start(&self) -> Option<(usize, usize)> {
        if self.i > 0
            && self
                .b
                .get(self.i - 1)
                .is_some_and(|c| is_ident_continue(*c))
        {
            return None;
        }
        let mut j = 0;
        if matches!(self.peek(j), Some('b') | Some('c')) {
            j += 1;
        }
        if self.peek(j) != Some('r') {
            return None;
        }
        j += 1;
        let mut hashes = 0;
        while self.peek(j) == Some('#') {
            hashes += 1;
            j += 1;
        }
        (self.peek(j) == Some('"')).then_some((j + 1, hashes))
    }

    /// After a backslash inside a char or string: consumes one escape.
    /// Returns false when it is malformed.
    fn escape(&mut self) -> bool {
        match self.bump() {
            Some('x') => {
                let ok = self.peek(0).is_some_and(|c| c.is_ascii_hexdigit())
                    && self.peek(1).is_some_and(|c| c.is_ascii_hexdigit());
                if ok {
                    self.bump_n(2);
                }
                ok
            }
            Some('u') => {
                if self.bump() != Some('{') {
                    return false;
                }
                for _ in 0..8 {
                    match self.bump() {
                        Some('}') => return true,
                        Some(c) if c.is_ascii_hexdigit() || c == '_' => {}
                        _ => return false,
                    }
                }
                false
            }
            Some('n' | 'r' | 't' | '\\' | '0' | '\'' | '"') => true,
            // `\` then a newline continues a string
            Some('\n') => true,
            _ => false,
        }
    }
}

/// Splits `src` into tokens, skipping comments and the contents of literals.
/// Returns the tokens and the refusals found while lexing (non-ASCII
/// characters), or the first unterminated literal or comment.
fn tokenize(src: &str) -> Result<(Vec<Token>, Vec<Refusal>), Refusal> {
    let chars: Vec<char> = src.chars().collect();
    let mut lx = Lexer {
        b: &chars,
        i: 0,
        line: 1,
        column: 1,
    };
    let mut out = Vec::new();
    let mut refusals = Vec::new();
    while let Some(c) = lx.peek(0) {
        let (line, column) = (lx.line, lx.column);
        let at = |kind| Refusal { line, column, kind };
        let mut push = |tok| out.push(Token { line, column, tok });
        if is_rust_whitespace(c) {
            if !c.is_ascii() {
                // invisible direction marks and separators: whitespace to
                // rustc, but no strategy needs them outside a string
                refusals.push(at(RefusalKind::NonAscii));
            }
            lx.bump();
        } else if c == '/' && lx.peek(1) == Some('/') {
            while lx.peek(0).is_some_and(|c| c != '\n') {
                lx.bump();
            }
        } else if c == '/' && lx.peek(1) == Some('*') {
            let mut depth = 1;
            lx.bump_n(2);
            while depth > 0 {
                match (lx.peek(0), lx.peek(1)) {
                    (None, _) => return Err(at(RefusalKind::Unterminated("block comment"))),
                    (Some('/'), Some('*')) => {
                        depth += 1;
                        lx.bump_n(2);
                    }
                    (Some('*'), Some('/')) => {
                        depth -= 1;
                        lx.bump_n(2);
                    }
                    _ => {
                        lx.bump();
                    }
                }
            }
        } else if let Some((prefix, hashes)) = lx.raw_string_start() {
            // r"..", r#".."#, br#".."#, cr".."
            lx.bump_n(prefix);
            loop {
                match lx.bump() {
                    None => return Err(at(RefusalKind::Unterminated("raw string"))),
                    Some('"') if (0..hashes).all(|k| lx.peek(k) == Some('#')) => {
                        lx.bump_n(hashes);
                        break;
                    }
                    Some(_) => {}
                }
            }
            push(Tok::Literal);
        } else if c == '"' || ((c == 'b' || c == 'c') && lx.peek(1) == Some('"')) {
            lx.bump_n(if c == '"' { 1 } else { 2 });
            loop {
                match lx.bump() {
                    None => return Err(at(RefusalKind::Unterminated("string"))),
                    Some('\\') => {
                        if !lx.escape() {
                            // rustc refuses an unknown escape; so do we
                            return Err(at(RefusalKind::Unterminated("string escape")));
                        }
                    }
                    Some('"') => break,
                    Some(_) => {}
                }
            }
            push(Tok::Literal);
        } else if c == '\'' || (c == 'b' && lx.peek(1) == Some('\'')) {
            lx.bump_n(if c == '\'' { 1 } else { 2 });
            match (lx.peek(0), lx.peek(1)) {
                (Some('\\'), _) => {
                    lx.bump();
                    if !lx.escape() || lx.bump() != Some('\'') {
                        return Err(at(RefusalKind::Unterminated("character literal")));
                    }
                    push(Tok::Literal);
                }
                (Some(ch), Some('\'')) if ch != '\n' && ch != '\r' && ch != '\t' && ch != '\'' => {
                    lx.bump_n(2);
                    push(Tok::Literal);
                }
                (Some(ch), _) if c == '\'' && is_ident_start(ch) => {
                    // a lifetime or label: the quote and the identifier
                    while lx.peek(0).is_some_and(is_ident_continue) {
                        lx.bump();
                    }
                    push(Tok::Lifetime);
                }
                _ => return Err(at(RefusalKind::Unterminated("character literal"))),
            }
        } else if is_ident_start(c) {
            let mut s = String::new();
            // raw identifier r#name is the identifier `name`
            if c == 'r' && lx.peek(1) == Some('#') && lx.peek(2).is_some_and(is_ident_start) {
                lx.bump_n(2);
            }
            while let Some(ch) = lx.peek(0).filter(|ch| is_ident_continue(*ch)) {
                s.push(ch);
                lx.bump();
            }
            push(Tok::Ident(s));
        } else if c.is_ascii_digit() {
            while lx.peek(0).is_some_and(|ch| {
                is_ident_continue(ch)
                    || (ch == '.' && lx.peek(1).is_some_and(|d| d.is_ascii_digit()))
            }) {
                lx.bump();
            }
            push(Tok::Literal);
        } else if c.is_ascii_graphic() {
            push(Tok::Punct(c));
            lx.bump();
        } else {
            // non-ASCII (or a control character) outside literals and comments
            refusals.push(at(RefusalKind::NonAscii));
            push(Tok::Punct(c));
            lx.bump();
        }
    }
    Ok((out, refusals))
}

/// Checks `src` against the rules; `Ok` or every refusal found, in order.
pub fn check(src: &str, max_bytes: usize) -> Result<(), Vec<Refusal>> {
    if src.len() > max_bytes {
        return Err(vec![Refusal {
            line: 1,
            column: 1,
            kind: RefusalKind::TooLarge {
                bytes: src.len(),
                max: max_bytes,
            },
        }]);
    }
    let (toks, mut out) = tokenize(src).map_err(|r| vec![r])?;
    let ident = |k: usize| match toks.get(k).map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let punct =
        |k: usize, c: char| matches!(toks.get(k).map(|t| &t.tok), Some(Tok::Punct(p)) if *p == c);
    let named = |list: &[&'static str], s: &str| list.iter().copied().find(|x| *x == s);
    // the end (exclusive) of the current `use` item, and its root
    let mut use_tree: Option<(usize, &'static str)> = None;
    for (k, t) in toks.iter().enumerate() {
        let mut refuse = |kind| {
            out.push(Refusal {
                line: t.line,
                column: t.column,
                kind,
            })
        };
        if use_tree.is_some_and(|(end, _)| k >= end) {
            use_tree = None;
        }
        match &t.tok {
            Tok::Ident(s) => {
                let s = s.as_str();
                if let Some(m) = named(MACROS, s) {
                    refuse(RefusalKind::ForbiddenMacro(m));
                } else if let Some(a) = named(ATTRS_ANYWHERE, s) {
                    refuse(RefusalKind::ForbiddenAttribute(a));
                } else if s == "extern" {
                    refuse(RefusalKind::Extern);
                } else if s == "unsafe" {
                    refuse(RefusalKind::Unsafe);
                } else if s.starts_with("proc_macro") {
                    refuse(RefusalKind::ProcMacro);
                } else if s == "mod" && !(ident(k + 1).is_some() && punct(k + 2, '{')) {
                    refuse(RefusalKind::OutOfLineModule);
                } else if s == "use" {
                    // `use ::std::{fs, net}`: remember the root until the `;`
                    let mut j = k + 1;
                    if punct(j, ':') && punct(j + 1, ':') {
                        j += 2;
                    }
                    let root = ident(j).and_then(|r| named(ROOTS, r));
                    let end = (k..toks.len())
                        .find(|&e| punct(e, ';'))
                        .unwrap_or(toks.len());
                    use_tree = root.map(|r| (end, r));
                } else if let Some(root) = named(ROOTS, s) {
                    if punct(k + 1, ':') && punct(k + 2, ':') {
                        if let Some(p) = ident(k + 3).and_then(|p| named(PATHS, p)) {
                            refuse(RefusalKind::ForbiddenPath { root, item: p });
                        } else if punct(k + 3, '*') {
                            refuse(RefusalKind::ForbiddenPath { root, item: "*" });
                        }
                    } else if ident(k + 1) == Some("as") {
                        refuse(RefusalKind::ForbiddenPath { root, item: "self" });
                    }
                } else if let Some((_, root)) = use_tree {
                    if let Some(p) = named(PATHS, s) {
                        refuse(RefusalKind::ForbiddenPath { root, item: p });
                    } else if s == "self" {
                        refuse(RefusalKind::ForbiddenPath { root, item: "self" });
                    }
                }
            }
            Tok::Punct('#') => {
                let mut j = k + 1;
                let inner = punct(j, '!');
                if inner {
                    j += 1;
                }
                if punct(j, '$') {
                    refuse(RefusalKind::MacroBuiltAttribute);
                } else if punct(j, '[') {
                    if inner && !ident(j + 1).is_some_and(|a| INNER_ALLOWED.contains(&a)) {
                        refuse(RefusalKind::CrateAttribute);
                    }
                    // the attribute's path may be wrapped: #[cfg_attr(x, link(...))]
                    let mut depth = 0i32;
                    let mut m = j;
                    while let Some(t) = toks.get(m) {
                        match &t.tok {
                            Tok::Punct('[' | '(' | '{') => depth += 1,
                            Tok::Punct(']' | ')' | '}') => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            Tok::Punct('$') => refuse(RefusalKind::MacroBuiltAttribute),
                            Tok::Ident(a) => {
                                if let Some(a) = named(ATTRS, a) {
                                    refuse(RefusalKind::ForbiddenAttribute(a));
                                }
                            }
                            _ => {}
                        }
                        m += 1;
                    }
                }
            }
            _ => {}
        }
    }
    out.sort_by_key(|r| (r.line, r.column));
    out.dedup();
    if out.is_empty() {
        Ok(())
    } else {
        Err(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(usize, RefusalKind)> {
        check(src, 100_000)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.line, r.kind))
            .collect()
    }

    fn refused(src: &str) -> bool {
        check(src, 100_000).is_err()
    }

    #[test]
    fn clean_source_passes() {
        let src = r##"
            //! A strategy mentioning unsafe and include_str! in docs.
            #![allow(dead_code)]
            use guest_sdk::{signal, Action};
            use std::collections::BTreeMap;
            /* block /* nested */ unsafe */
            fn f<'a>(x: &'a str) -> char { let _s = "unsafe { include_str!(\"/etc/passwd\") }"; let _r = r#"extern "C""#; 'x' }
            mod inline { pub fn g() -> u8 { b'\'' } pub fn h() -> char { '\u{1F600}' } }
            #[derive(Default)] struct S;
            fn g() -> f64 { let v = [1.5f64, 2e3]; 'outer: for _ in 0..1 { break 'outer; } v[0] }
            fn s() -> &'static str { "é, \x41, \" ünïcode in strings is fine" } // and ünïcode in comments
        "##;
        assert_eq!(kinds(src), vec![]);
    }

    #[test]
    fn each_rule_is_reported_with_its_line_and_column() {
        let src = "fn a() {\n let p = include_str!(\"/etc/passwd\");\n unsafe { }\n}\nextern \"C\" { fn f(); }\n#[link(name = \"c\")]\n#[path = \"../x.rs\"]\nmod other;\nuse proc_macro::TokenStream;\nfn e() { let _ = env!(\"HOME\"); std::fs::read(\"x\"); }\n#[unsafe(no_mangle)]\nfn r() { let r#unsafe = 1; }\n";
        let got = kinds(src);
        let want = vec![
            (2, RefusalKind::ForbiddenMacro("include_str")),
            (3, RefusalKind::Unsafe),
            (5, RefusalKind::Extern),
            (6, RefusalKind::ForbiddenAttribute("link")),
            (7, RefusalKind::ForbiddenAttribute("path")),
            (8, RefusalKind::OutOfLineModule),
            (9, RefusalKind::ProcMacro),
            (10, RefusalKind::ForbiddenMacro("env")),
            (
                10,
                RefusalKind::ForbiddenPath {
                    root: "std",
                    item: "fs",
                },
            ),
            (11, RefusalKind::Unsafe),
            (11, RefusalKind::ForbiddenAttribute("no_mangle")),
            (12, RefusalKind::Unsafe),
        ];
        assert_eq!(got, want);
        let first = check(src, 100_000).unwrap_err()[0];
        assert_eq!((first.line, first.column), (2, 10));
        assert_eq!(
            first.to_string(),
            "line 2, column 10: `include_str!` reads files, the environment or emits machine code"
        );
    }

    #[test]
    fn macro_names_passed_as_arguments_and_asm_are_refused() {
        let got = kinds("macro_rules! m { ($x:ident) => { $x!(\"/etc/passwd\") } }\nfn f() { m!(include_bytes); core::arch::asm!(\"nop\"); }");
        assert!(
            got.contains(&(2, RefusalKind::ForbiddenMacro("include_bytes"))),
            "{got:?}"
        );
        assert!(
            got.contains(&(
                2,
                RefusalKind::ForbiddenPath {
                    root: "core",
                    item: "arch"
                }
            )),
            "{got:?}"
        );
        assert!(
            got.contains(&(2, RefusalKind::ForbiddenMacro("asm"))),
            "{got:?}"
        );
    }

    #[test]
    fn env_through_a_metavariable_is_refused() {
        // issue 16: env was refused only when directly followed by `!`
        let src = "macro_rules! m{($x:ident)=>{$x!(\"KRAKEN_API_SECRET\")}}\nfn f() -> &'static str { m!(env) }";
        assert_eq!(kinds(src), vec![(2, RefusalKind::ForbiddenMacro("env"))]);
        assert!(refused("fn f() { let env = 1; let _ = env; }"));
        assert!(refused(
            "fn f() -> Option<&'static str> { option_env!(\"X\") }"
        ));
    }

    #[test]
    fn an_escaped_quote_char_literal_does_not_hide_the_rest_of_the_line() {
        // issue 16: the tokenizer ended '\'' at its escaped quote
        let src = "fn f() -> (char, &'static str) { ('\\'', include_str!(\"/etc/passwd\")) }";
        assert_eq!(
            kinds(src),
            vec![(1, RefusalKind::ForbiddenMacro("include_str"))]
        );
        let src =
            "const C: [char; 3] = ['\\'', '\\\\', '\\x41']; const S: &str = include_str!(\"/x\");";
        assert_eq!(
            kinds(src),
            vec![(1, RefusalKind::ForbiddenMacro("include_str"))]
        );
        assert!(refused("const C: char = '\\q';"));
        assert!(refused("const C: char = 'ab';"));
    }

    #[test]
    fn attributes_and_modules_built_by_macros_are_refused() {
        // issue 16: #[$a = "..."] mod $n; built by a macro
        let src = "macro_rules! m { ($a:ident, $n:ident) => { #[$a = \"/etc/passwd\"] mod $n; } }\nm!(doc, x);";
        let got = kinds(src);
        assert!(
            got.contains(&(1, RefusalKind::MacroBuiltAttribute)),
            "{got:?}"
        );
        assert!(got.contains(&(1, RefusalKind::OutOfLineModule)), "{got:?}");
        assert!(refused(
            "macro_rules! m { ($m:meta) => { #[$m] fn f() {} } }\nm!(inline);"
        ));
        assert!(refused(
            "macro_rules! m { ($h:tt, $b:tt) => { $h $b fn f() {} } }\nm!(#, [path = \"x\"]);"
        ));
        assert!(refused(
            "macro_rules! m { ($($t:tt)*) => { $($t)* } }\nm!(mod x);"
        ));
        assert!(!refused("mod x { pub fn f() {} }"));
    }

    #[test]
    fn direction_marks_are_whitespace_and_non_ascii_code_is_refused() {
        // issue 16: U+200E/U+200F are whitespace to rustc
        let got = kinds("fn f() -> &'static str { env\u{200E}!(\"KRAKEN_API_SECRET\") }");
        assert!(
            got.contains(&(1, RefusalKind::ForbiddenMacro("env"))),
            "{got:?}"
        );
        let got = kinds("fn f() -> &'static str { include_str\u{200F}!(\"/etc/passwd\") }");
        assert!(
            got.contains(&(1, RefusalKind::ForbiddenMacro("include_str"))),
            "{got:?}"
        );
        assert!(got.contains(&(1, RefusalKind::NonAscii)), "{got:?}");
        assert_eq!(kinds("fn fé() {}"), vec![(1, RefusalKind::NonAscii)]);
    }

    #[test]
    fn debugger_visualizer_crate_attributes_and_std_paths_are_refused() {
        assert_eq!(
            kinds("#![debugger_visualizer(gdb_script_file = \"/etc/passwd\")]"),
            vec![
                (1, RefusalKind::CrateAttribute),
                (1, RefusalKind::ForbiddenAttribute("debugger_visualizer")),
            ]
        );
        assert!(refused("#![no_std]"));
        assert!(refused("#![recursion_limit = \"100000\"]"));
        assert!(!refused("#![allow(unused)]\n#![doc = \"x\"]"));
        for src in [
            "use std::{fs, collections::HashMap};",
            "use ::std::net::TcpStream;",
            "use std::*;",
            "use std as s;",
            "use std::{self as s};",
            "fn f() { std::process::exit(1) }",
        ] {
            assert!(refused(src), "{src}");
        }
        assert!(!refused(
            "use std::collections::{BTreeMap, HashMap};\nfn fs() {}"
        ));
    }

    #[test]
    fn refusals_never_echo_the_source() {
        let src = "mod secret_name_xyz;\n#[path = \"secret_value_xyz\"] fn f() {}\nmacro_rules! m{($x:ident)=>{$x!(\"secret_var_xyz\")}}";
        for r in check(src, 100_000).unwrap_err() {
            assert!(!r.to_string().contains("xyz"), "{r}");
            assert!(!serde_json::to_string(&r).unwrap().contains("xyz"), "{r}");
        }
    }

    #[test]
    fn unterminated_literals_and_size() {
        assert_eq!(
            kinds("fn f() {}\n/* open"),
            vec![(2, RefusalKind::Unterminated("block comment"))]
        );
        assert_eq!(
            kinds("\n\nlet s = \"open"),
            vec![(3, RefusalKind::Unterminated("string"))]
        );
        assert_eq!(
            kinds("r##\"x\"#"),
            vec![(1, RefusalKind::Unterminated("raw string"))]
        );
        assert_eq!(
            kinds("let c = '\\'"),
            vec![(1, RefusalKind::Unterminated("character literal"))]
        );
        let e = check("fn f() {}", 3).unwrap_err();
        assert_eq!(e[0].kind, RefusalKind::TooLarge { bytes: 9, max: 3 });
        assert_eq!(
            e[0].to_string(),
            "line 1, column 1: source is 9 bytes, more than 3"
        );
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // a cheap deterministic fuzz over awkward characters
        let alphabet: Vec<char> = "'\"\\/*#!$r b c{}[]()\n\u{200E}é;:mod env x0_."
            .chars()
            .collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5_000 {
            let mut s = String::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let _ = check(&s, 100_000);
        }
    }
}
