//! Source safety: a small Rust tokenizer (comments, strings, raw strings,
//! chars and lifetimes handled) and the rules a generated strategy must pass
//! before it is compiled. Every refusal names its line and a typed reason.

use std::fmt;

/// Why a piece of source is refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum RefusalKind {
    /// `include!`, `include_str!`, `include_bytes!`, `env!`, `option_env!`, `asm!`, `global_asm!`.
    ForbiddenMacro(String),
    /// `extern` (blocks, functions, crates).
    Extern,
    /// `unsafe` anywhere.
    Unsafe,
    /// `#[link]`, `#[path]`, `#[no_mangle]`, `#[export_name]`, `#[link_section]`, `#[link_name]`.
    ForbiddenAttribute(String),
    /// `mod name;`: a module in another file.
    OutOfLineModule(String),
    /// `proc_macro` and its attributes.
    ProcMacro,
    /// A path reaching host facilities (`std::fs`, `std::net`, `std::process`, `std::env`, `std::os`, `core::arch`).
    ForbiddenPath(String),
    /// A string, char or comment that never ends.
    Unterminated(&'static str),
    /// Larger than the configured source limit.
    TooLarge { bytes: usize, max: usize },
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalKind::ForbiddenMacro(m) => write!(
                f,
                "`{m}` reads files, the environment or emits machine code"
            ),
            RefusalKind::Extern => f.write_str("`extern` declares foreign code or crates"),
            RefusalKind::Unsafe => f.write_str("`unsafe` is not allowed in strategies"),
            RefusalKind::ForbiddenAttribute(a) => {
                write!(f, "attribute `#[{a}]` links or relocates code")
            }
            RefusalKind::OutOfLineModule(m) => {
                write!(f, "`mod {m};` reads another file; write the module inline")
            }
            RefusalKind::ProcMacro => f.write_str("`proc_macro` runs code in the compiler"),
            RefusalKind::ForbiddenPath(p) => write!(f, "`{p}` reaches outside the sandbox"),
            RefusalKind::Unterminated(what) => write!(f, "unterminated {what}"),
            RefusalKind::TooLarge { bytes, max } => {
                write!(f, "source is {bytes} bytes, more than {max}")
            }
        }
    }
}

/// One refusal: where and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    pub line: usize,
    pub kind: RefusalKind,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
    Literal,
}

const MACROS: &[&str] = &[
    "include",
    "include_str",
    "include_bytes",
    "env",
    "option_env",
    "asm",
    "global_asm",
    "naked_asm",
];
/// Identifiers refused wherever they appear (also as macro arguments, so a
/// `macro_rules!` cannot assemble them).
const ALWAYS: &[&str] = &[
    "include",
    "include_str",
    "include_bytes",
    "option_env",
    "asm",
    "global_asm",
    "naked_asm",
];
const ATTRS: &[&str] = &[
    "link",
    "path",
    "no_mangle",
    "export_name",
    "link_section",
    "link_name",
    "link_args",
];
const PATHS: &[&str] = &["fs", "net", "process", "env", "os", "arch", "ffi"];

/// Splits `src` into tokens with line numbers, skipping comments and literals.
fn tokenize(src: &str) -> Result<Vec<(usize, Tok)>, Refusal> {
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0usize, 1usize);
    let n = b.len();
    let unterminated = |line, what| Refusal {
        line,
        kind: RefusalKind::Unterminated(what),
    };
    while i < n {
        let c = b[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && b.get(i + 1) == Some(&'/') {
            while i < n && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            let start = line;
            let mut depth = 1;
            i += 2;
            while depth > 0 {
                if i >= n {
                    return Err(unterminated(start, "block comment"));
                }
                if b[i] == '\n' {
                    line += 1;
                }
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
        } else if let Some(len) = raw_string_start(&b, i) {
            // r"..", r#".."#, br#".."#, cr".."
            let hashes = len.1;
            let start = line;
            i += len.0;
            loop {
                if i >= n {
                    return Err(unterminated(start, "raw string"));
                }
                if b[i] == '\n' {
                    line += 1;
                }
                if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push((start, Tok::Literal));
        } else if c == '"' || ((c == 'b' || c == 'c') && b.get(i + 1) == Some(&'"')) {
            let start = line;
            i += if c == '"' { 1 } else { 2 };
            loop {
                if i >= n {
                    return Err(unterminated(start, "string"));
                }
                match b[i] {
                    '\\' => {
                        if b.get(i + 1) == Some(&'\n') {
                            line += 1;
                        }
                        i += 2;
                    }
                    '"' => {
                        i += 1;
                        break;
                    }
                    '\n' => {
                        line += 1;
                        i += 1;
                    }
                    _ => i += 1,
                }
            }
            out.push((start, Tok::Literal));
        } else if c == '\'' || (c == 'b' && b.get(i + 1) == Some(&'\'')) {
            let j = if c == '\'' { i + 1 } else { i + 2 };
            // char literal: 'x', '\n', '\u{..}'; otherwise a lifetime or label.
            if b.get(j) == Some(&'\\') {
                let mut k = j + 1;
                while k < n && b[k] != '\'' && b[k] != '\n' {
                    k += 1;
                }
                if b.get(k) != Some(&'\'') {
                    return Err(unterminated(line, "character literal"));
                }
                i = k + 1;
                out.push((line, Tok::Literal));
            } else if b.get(j + 1) == Some(&'\'') && b.get(j).is_some_and(|ch| *ch != '\n') {
                i = j + 2;
                out.push((line, Tok::Literal));
            } else {
                // lifetime: skip the quote and the identifier
                i = j;
                while i < n && (b[i].is_alphanumeric() || b[i] == '_') {
                    i += 1;
                }
                out.push((line, Tok::Punct('\'')));
            }
        } else if c.is_alphabetic() || c == '_' {
            let mut s = String::new();
            // raw identifier r#name is the identifier `name`
            if c == 'r'
                && b.get(i + 1) == Some(&'#')
                && b.get(i + 2).is_some_and(|x| x.is_alphabetic() || *x == '_')
            {
                i += 2;
            }
            while i < n && (b[i].is_alphanumeric() || b[i] == '_') {
                s.push(b[i]);
                i += 1;
            }
            out.push((line, Tok::Ident(s)));
        } else if c.is_ascii_digit() {
            while i < n
                && (b[i].is_alphanumeric()
                    || b[i] == '_'
                    || (b[i] == '.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())))
            {
                i += 1;
            }
            out.push((line, Tok::Literal));
        } else {
            out.push((line, Tok::Punct(c)));
            i += 1;
        }
    }
    Ok(out)
}

/// `Some((prefix length, hashes))` when a raw string starts at `i`.
fn raw_string_start(b: &[char], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if matches!(b.get(j), Some('b') | Some('c')) {
        j += 1;
    }
    if b.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while b.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (b.get(j) == Some(&'"')).then_some((j + 1 - i, hashes))
}

/// Checks `src` against the rules; `Ok` or every refusal found, in line order.
pub fn check(src: &str, max_bytes: usize) -> Result<(), Vec<Refusal>> {
    if src.len() > max_bytes {
        return Err(vec![Refusal {
            line: 1,
            kind: RefusalKind::TooLarge {
                bytes: src.len(),
                max: max_bytes,
            },
        }]);
    }
    let toks = tokenize(src).map_err(|r| vec![r])?;
    let mut out = Vec::new();
    let ident = |k: usize| match toks.get(k) {
        Some((_, Tok::Ident(s))) => Some(s.as_str()),
        _ => None,
    };
    let punct = |k: usize, c: char| matches!(toks.get(k), Some((_, Tok::Punct(p))) if *p == c);
    for (k, (line, tok)) in toks.iter().enumerate() {
        let line = *line;
        let mut refuse = |kind| out.push(Refusal { line, kind });
        match tok {
            Tok::Ident(s) => {
                let s = s.as_str();
                if MACROS.contains(&s) && (punct(k + 1, '!') || ALWAYS.contains(&s)) {
                    refuse(RefusalKind::ForbiddenMacro(format!("{s}!")));
                } else if s == "extern" {
                    refuse(RefusalKind::Extern);
                } else if s == "unsafe" {
                    refuse(RefusalKind::Unsafe);
                } else if s.starts_with("proc_macro") {
                    refuse(RefusalKind::ProcMacro);
                } else if s == "mod" && ident(k + 1).is_some() && punct(k + 2, ';') {
                    refuse(RefusalKind::OutOfLineModule(
                        ident(k + 1).unwrap_or_default().to_string(),
                    ));
                } else if matches!(s, "std" | "core" | "alloc")
                    && punct(k + 1, ':')
                    && punct(k + 2, ':')
                {
                    if let Some(p) = ident(k + 3).filter(|p| PATHS.contains(p)) {
                        refuse(RefusalKind::ForbiddenPath(format!("{s}::{p}")));
                    }
                }
            }
            Tok::Punct('#') => {
                let mut j = k + 1;
                if punct(j, '!') {
                    j += 1;
                }
                if punct(j, '[') {
                    // the attribute's path may be wrapped: #[cfg_attr(x, link(...))], #[unsafe(no_mangle)]
                    let mut depth = 0i32;
                    let mut m = j;
                    while let Some((_, t)) = toks.get(m) {
                        match t {
                            Tok::Punct('[') | Tok::Punct('(') => depth += 1,
                            Tok::Punct(']') | Tok::Punct(')') => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            Tok::Ident(a) if ATTRS.contains(&a.as_str()) => {
                                refuse(RefusalKind::ForbiddenAttribute(a.clone()));
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

    #[test]
    fn clean_source_passes() {
        let src = r##"
            //! A strategy mentioning unsafe and include_str! in docs.
            use guest_sdk::{signal, Action};
            /* block /* nested */ unsafe */
            fn f<'a>(x: &'a str) -> char { let _s = "unsafe { include_str!(\"/etc/passwd\") }"; let _r = r#"extern "C""#; 'x' }
            mod inline { pub fn g() -> u8 { b'\'' } }
            #[derive(Default)] struct S;
        "##;
        assert_eq!(kinds(src), vec![]);
    }

    #[test]
    fn each_rule_is_reported_with_its_line() {
        let src = "fn a() {\n let p = include_str!(\"/etc/passwd\");\n unsafe { }\n}\nextern \"C\" { fn f(); }\n#[link(name = \"c\")]\n#[path = \"../x.rs\"]\nmod other;\nuse proc_macro::TokenStream;\nfn e() { let _ = env!(\"HOME\"); std::fs::read(\"x\"); }\n#[unsafe(no_mangle)]\nfn r() { let r#unsafe = 1; }\n";
        let got = kinds(src);
        let want = vec![
            (2, RefusalKind::ForbiddenMacro("include_str!".into())),
            (3, RefusalKind::Unsafe),
            (5, RefusalKind::Extern),
            (6, RefusalKind::ForbiddenAttribute("link".into())),
            (7, RefusalKind::ForbiddenAttribute("path".into())),
            (8, RefusalKind::OutOfLineModule("other".into())),
            (9, RefusalKind::ProcMacro),
            (10, RefusalKind::ForbiddenMacro("env!".into())),
            (10, RefusalKind::ForbiddenPath("std::fs".into())),
            (11, RefusalKind::ForbiddenAttribute("no_mangle".into())),
            (11, RefusalKind::Unsafe),
            (12, RefusalKind::Unsafe),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn macro_names_passed_as_arguments_and_asm_are_refused() {
        let got = kinds("macro_rules! m { ($x:ident) => { $x!(\"/etc/passwd\") } }\nfn f() { m!(include_bytes); core::arch::asm!(\"nop\"); }");
        assert!(
            got.contains(&(2, RefusalKind::ForbiddenMacro("include_bytes!".into()))),
            "{got:?}"
        );
        assert!(
            got.contains(&(2, RefusalKind::ForbiddenPath("core::arch".into()))),
            "{got:?}"
        );
        assert!(
            got.contains(&(2, RefusalKind::ForbiddenMacro("asm!".into()))),
            "{got:?}"
        );
        // a variable called env is fine; the macro is not
        assert_eq!(kinds("fn f() { let env = 1; let _ = env; }"), vec![]);
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
        let e = check("fn f() {}", 3).unwrap_err();
        assert_eq!(e[0].kind, RefusalKind::TooLarge { bytes: 9, max: 3 });
        assert_eq!(e[0].to_string(), "line 1: source is 9 bytes, more than 3");
    }
}
