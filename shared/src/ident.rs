//! The `.ident` directive of compiler-generated assembly: the compiler's name and version,
//! which the assembler stores in the object's `.comment` section.

/// The string of the first `.ident` directive in `asm`.
pub fn of_assembly(asm: &str) -> Option<String> {
    asm.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix(".ident")?;
        let rest = rest.trim();
        let inner = rest.strip_prefix('"')?.strip_suffix('"')?;
        Some(inner.to_owned())
    })
}

/// `asm` with every `.ident "from"` directive naming `to` instead; other lines unchanged.
pub fn rewrite(asm: &[u8], from: &str, to: &str) -> Vec<u8> {
    let old = format!("\t.ident\t\"{from}\"");
    let new = format!("\t.ident\t\"{to}\"");
    let mut out = Vec::with_capacity(asm.len() + 16);
    for line in asm.split_inclusive(|&c| c == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if body == old.as_bytes() {
            out.extend_from_slice(new.as_bytes());
            if body.len() < line.len() {
                out.push(b'\n');
            }
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_and_rewrite() {
        let asm = "\t.file\t\"a.c\"\n\t.ident\t\"GCC: (Debian 12.2.0-14) 12.2.0\"\n\t.section\t.note.GNU-stack,\"\",@progbits\n";
        assert_eq!(
            of_assembly(asm).as_deref(),
            Some("GCC: (Debian 12.2.0-14) 12.2.0")
        );
        let out = rewrite(
            asm.as_bytes(),
            "GCC: (Debian 12.2.0-14) 12.2.0",
            "GCC: (Debian 12.2.0-14+deb12u1) 12.2.0",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            asm.replace("12.2.0-14)", "12.2.0-14+deb12u1)")
        );
        // Only whole directives with exactly that text change.
        let other = b"\t.ident\t\"clang\"\nx .ident\t\"GCC: (Debian 12.2.0-14) 12.2.0\"";
        assert_eq!(
            rewrite(other, "GCC: (Debian 12.2.0-14) 12.2.0", "X"),
            other.to_vec()
        );
    }
}
