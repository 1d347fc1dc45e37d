//! Parses the make-rule output of `gcc -M` into the list of files the compile reads.

/// The prerequisites of every rule in `text` (targets dropped), unescaped, in order,
/// without duplicates. gcc escapes a space as `\ `, `#` as `\#` and `$` as `$$`, and
/// continues lines with a backslash-newline.
pub fn prerequisites(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut word = String::new();
    let mut in_prereqs = false;
    let mut chars = text.chars().peekable();
    let mut push = |w: &mut String, in_prereqs: bool, out: &mut Vec<String>| {
        if !w.is_empty() {
            if in_prereqs && seen.insert(w.clone()) {
                out.push(w.clone());
            }
            w.clear();
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some('\n') => {
                    chars.next();
                    push(&mut word, in_prereqs, &mut out);
                }
                Some('\r') => {
                    chars.next();
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    push(&mut word, in_prereqs, &mut out);
                }
                Some(' ') | Some('#') | Some('\\') => {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                _ => word.push('\\'),
            },
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                word.push('$');
            }
            ':' if !in_prereqs && matches!(chars.peek(), None | Some(' ' | '\t' | '\n' | '\\')) => {
                push(&mut word, false, &mut out);
                in_prereqs = true;
            }
            ' ' | '\t' => push(&mut word, in_prereqs, &mut out),
            '\n' => {
                push(&mut word, in_prereqs, &mut out);
                in_prereqs = false;
            }
            _ => word.push(c),
        }
    }
    push(&mut word, in_prereqs, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let cases: &[(&str, &[&str])] = &[
            ("a.o: a.c lib.h\n", &["a.c", "lib.h"]),
            (
                "a.o: a.c \\\n /usr/include/stdio.h \\\n lib.h\n",
                &["a.c", "/usr/include/stdio.h", "lib.h"],
            ),
            ("my\\ file.o: my\\ file.c lib.h\n", &["my file.c", "lib.h"]),
            ("x.o: x$$y.c a\\#b.h\n", &["x$y.c", "a#b.h"]),
            ("a.o: a.c\nb.h:\nlib.h:\n", &["a.c"]),
            ("C:/x.o: a.c a.c\n", &["a.c"]),
        ];
        for (text, want) in cases {
            assert_eq!(prerequisites(text), *want, "{text:?}");
        }
    }
}
