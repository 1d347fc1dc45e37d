//! Real third-party C, fetched by cargo (the C sources that the crates `lua-src`,
//! `zstd-sys` and `libsqlite3-sys` bundle), copied into a test tree together with a Makefile
//! written here. Nothing third-party is kept in the repository.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cmd::Cmd;
use crate::paths::target_dir;

/// Where cargo put the sources.
#[derive(Debug, Clone)]
pub struct Sources {
    /// `lua-src-*/lua-5.4.*`: Lua's `.c` and `.h` files.
    pub lua: PathBuf,
    /// `zstd-sys-*/zstd/lib`.
    pub zstd_lib: PathBuf,
    /// `libsqlite3-sys-*/sqlite3`: `sqlite3.c` and `sqlite3.h`.
    pub sqlite: PathBuf,
}

const FETCH_MANIFEST: &str = r#"[package]
name = "offload-e2e-sources"
version = "0.0.0"
edition = "2021"
publish = false

[lib]
path = "lib.rs"

[dependencies]
lua-src = "547"
zstd-sys = "2"
libsqlite3-sys = { version = "0.30", features = ["bundled"] }

[workspace]
"#;

/// The sources, fetched once per test process (`cargo fetch` on a small manifest written
/// under the target directory, then `cargo metadata` for each package's directory).
pub fn sources() -> &'static Sources {
    static S: OnceLock<Sources> = OnceLock::new();
    S.get_or_init(fetch)
}

fn fetch() -> Sources {
    let dir = target_dir().join("offload-e2e-sources");
    std::fs::create_dir_all(&dir).expect("creating the fetch directory");
    std::fs::write(dir.join("Cargo.toml"), FETCH_MANIFEST).expect("writing the fetch manifest");
    std::fs::write(dir.join("lib.rs"), "").expect("writing lib.rs");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = dir.join("Cargo.toml");
    let run = |args: &[&str]| {
        Cmd::new(
            [cargo.as_str()]
                .iter()
                .map(|s| s.to_string())
                .chain(args.iter().map(|s| s.to_string()))
                .chain([
                    "--manifest-path".to_string(),
                    manifest.to_string_lossy().into_owned(),
                ]),
            &dir,
        )
        .env("CARGO_TARGET_DIR", &dir.join("target").to_string_lossy())
        .run()
    };
    let fetched = run(&["fetch"]);
    if fetched.status != crate::cmd::Status::Code(0) {
        // Without the network, the sources may still be in cargo's cache.
        let offline = run(&["fetch", "--offline"]);
        assert!(
            offline.status == crate::cmd::Status::Code(0),
            "cargo fetch failed:\n{}\nand offline:\n{}",
            fetched.describe(),
            offline.describe()
        );
    }
    let meta = run(&["metadata", "--format-version", "1", "--offline"]);
    meta.assert_success("cargo metadata");
    let v: serde_json::Value = serde_json::from_slice(&meta.stdout).expect("cargo metadata JSON");
    let pkg_dir = |name: &str| -> PathBuf {
        let pkgs = v["packages"].as_array().expect("packages");
        let p = pkgs
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("cargo metadata lists no package {name}"));
        Path::new(p["manifest_path"].as_str().expect("manifest_path"))
            .parent()
            .expect("package dir")
            .to_path_buf()
    };
    let lua_pkg = pkg_dir("lua-src");
    let lua = std::fs::read_dir(&lua_pkg)
        .expect("lua-src dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("lua-5.4"))
        })
        .max()
        .unwrap_or_else(|| panic!("no lua-5.4.* in {}", lua_pkg.display()));
    let s = Sources {
        lua,
        zstd_lib: pkg_dir("zstd-sys").join("zstd").join("lib"),
        sqlite: pkg_dir("libsqlite3-sys").join("sqlite3"),
    };
    for (what, p) in [
        ("lua", s.lua.join("lapi.c")),
        ("zstd", s.zstd_lib.join("zstd.h")),
        ("sqlite", s.sqlite.join("sqlite3.c")),
    ] {
        assert!(p.is_file(), "{what} sources: {} is missing", p.display());
    }
    s
}

/// Files of `dir` (not recursive) whose names end with one of `exts`, sorted.
fn files_with(dir: &Path, exts: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| exts.iter().any(|x| n.ends_with(x)))
        .collect();
    v.sort();
    v
}

fn copy_files(from: &Path, to: &Path, names: &[String]) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for n in names {
        std::fs::copy(from.join(n), to.join(n))
            .unwrap_or_else(|e| panic!("copying {}: {e}", from.join(n).display()));
    }
}

/// A C project tree and what building it must do.
#[derive(Debug, Clone)]
pub struct Project {
    /// For messages.
    pub name: String,
    /// The Makefile.
    pub makefile: String,
    /// (destination relative to the tree, source directory, file names) to copy.
    pub copies: Vec<(PathBuf, PathBuf, Vec<String>)>,
    /// Small files written here (relative path, content).
    pub extra: Vec<(String, String)>,
    /// Directories to create (for objects).
    pub dirs: Vec<String>,
    /// Compiler calls that produce one object each (all expected to run remotely).
    pub objects: usize,
    /// Compiler calls that link (expected to run locally).
    pub links: usize,
}

impl Project {
    /// Writes the tree at `root`.
    pub fn materialize(&self, root: &Path) {
        std::fs::create_dir_all(root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
        for (dest, from, names) in &self.copies {
            copy_files(from, &root.join(dest), names);
        }
        for (rel, text) in &self.extra {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
        for d in &self.dirs {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::write(root.join("Makefile"), &self.makefile).expect("writing the Makefile");
        crate::paths::fix_mtimes(root);
    }

    /// `make -s -jJOBS CC=CC` for this project.
    pub fn make_argv(&self, jobs: usize, cc: &str) -> Vec<String> {
        vec![
            "make".into(),
            "-s".into(),
            format!("-j{jobs}"),
            format!("CC={cc}"),
        ]
    }
}

const LUA_MAIN: &str = r#"/* offload e2e: a program that uses the library built remotely. */
#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

int main(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  int rc = luaL_dostring(L, "local t = {} for i = 1, 10 do t[i] = i * i end "
                            "return string.format('%d', t[6] + t[2] + 2)");
  const char *v = lua_tostring(L, -1);
  int ok = rc == 0 && v && v[0] == '4' && v[1] == '2' && v[2] == 0;
  lua_close(L);
  return ok ? 0 : 1;
}
"#;

/// Lua as a static library plus a small program linked against it (and run), objects in
/// `obj/` with `-MMD` dependency files. `flags` are the variant's flags (`-O2 -g`…); `c_std`
/// adds `-std=gnu99` (off for a C++ compiler).
pub fn lua(flags: &str, c_std: bool) -> Project {
    let src = &sources().lua;
    let all = files_with(src, &[".c", ".h"]);
    let c: Vec<String> = all
        .iter()
        .filter(|n| n.ends_with(".c") && *n != "lua.c" && *n != "luac.c")
        .cloned()
        .collect();
    let copied: Vec<String> = all
        .iter()
        .filter(|n| n.ends_with(".h") || c.contains(n))
        .cloned()
        .collect();
    let objs: Vec<String> = c
        .iter()
        .map(|n| format!("obj/{}.o", n.trim_end_matches(".c")))
        .collect();
    let std = if c_std { "-std=gnu99 " } else { "" };
    let mut mk = String::new();
    let _ = writeln!(mk, "# Written by offload's e2e tests for Lua's sources.");
    let _ = writeln!(mk, "CFLAGS = {std}-DLUA_USE_LINUX {flags}");
    let _ = writeln!(mk, "OBJS = {}", objs.join(" "));
    mk.push_str(
        "\nall: luatest\n\t./luatest\n\n\
         obj/%.o: lua/%.c\n\t$(CC) $(CFLAGS) -MMD -c $< -o $@\n\n\
         obj/main.o: main.c\n\t$(CC) $(CFLAGS) -Ilua -MMD -c $< -o $@\n\n\
         liblua.a: $(OBJS)\n\tar rcD $@ $(OBJS)\n\n\
         luatest: obj/main.o liblua.a\n\t$(CC) -o $@ obj/main.o liblua.a -lm\n\n\
         -include $(OBJS:.o=.d) obj/main.d\n",
    );
    Project {
        name: format!("lua {flags}"),
        makefile: mk,
        copies: vec![("lua".into(), src.clone(), copied)],
        extra: vec![("main.c".into(), LUA_MAIN.into())],
        dirs: vec!["obj".into()],
        objects: c.len() + 1,
        links: 1,
    }
}

const ZSTD_MAIN: &str = r#"/* offload e2e: a round trip through the library built remotely. */
#include <string.h>
#include "zstd.h"

int main(void) {
  char in[4096], packed[8192], out[4096];
  for (unsigned i = 0; i < sizeof in; i++) in[i] = (char)("offload"[i % 7] + i / 512);
  size_t n = ZSTD_compress(packed, sizeof packed, in, sizeof in, 3);
  if (ZSTD_isError(n) || n >= sizeof in) return 1;
  size_t m = ZSTD_decompress(out, sizeof out, packed, n);
  if (ZSTD_isError(m) || m != sizeof in) return 2;
  return memcmp(in, out, sizeof in) != 0;
}
"#;

/// zstd's library (common, compress, decompress with its `.S`, dictBuilder) as a static
/// library plus a round-trip program, objects in `obj/<dir>/` with `-MMD -MP`.
pub fn zstd(flags: &str) -> Project {
    let lib = &sources().zstd_lib;
    let mut copies = vec![(PathBuf::from("lib"), lib.clone(), files_with(lib, &[".h"]))];
    let mut objs = Vec::new();
    for d in ["common", "compress", "decompress", "dictBuilder"] {
        let names = files_with(&lib.join(d), &[".c", ".h", ".S"]);
        for n in names
            .iter()
            .filter(|n| n.ends_with(".c") || n.ends_with(".S"))
        {
            let stem = n.rsplit_once('.').expect("suffix").0;
            objs.push(format!("obj/{d}/{stem}.o"));
        }
        copies.push((PathBuf::from("lib").join(d), lib.join(d), names));
    }
    assert!(
        objs.iter().any(|o| o.ends_with("huf_decompress_amd64.o")),
        "zstd sources without huf_decompress_amd64.S"
    );
    let mut mk = String::new();
    let _ = writeln!(mk, "# Written by offload's e2e tests for zstd's sources.");
    let _ = writeln!(mk, "CFLAGS = -Ilib -Ilib/common {flags}");
    let _ = writeln!(mk, "OBJS = {}", objs.join(" "));
    mk.push_str(
        "\nall: zstdtest\n\t./zstdtest\n\n\
         obj/%.o: lib/%.c\n\t$(CC) $(CFLAGS) -MMD -MP -c $< -o $@\n\n\
         obj/%.o: lib/%.S\n\t$(CC) $(CFLAGS) -MMD -MP -c $< -o $@\n\n\
         obj/main.o: main.c\n\t$(CC) $(CFLAGS) -MMD -MP -c $< -o $@\n\n\
         libzstd.a: $(OBJS)\n\tar rcD $@ $(OBJS)\n\n\
         zstdtest: obj/main.o libzstd.a\n\t$(CC) -o $@ obj/main.o libzstd.a\n\n\
         -include $(OBJS:.o=.d) obj/main.d\n",
    );
    Project {
        name: format!("zstd {flags}"),
        makefile: mk,
        copies,
        extra: vec![("main.c".into(), ZSTD_MAIN.into())],
        dirs: [
            "obj/common",
            "obj/compress",
            "obj/decompress",
            "obj/dictBuilder",
        ]
        .map(String::from)
        .to_vec(),
        objects: objs.len() + 1,
        links: 1,
    }
}

const SQLITE_MAIN: &str = r#"/* offload e2e: a query through the library built remotely. */
#include <string.h>
#include "sqlite3.h"

static int row(void *out, int n, char **v, char **names) {
  (void)names;
  if (n == 1 && v[0]) strcpy((char *)out, v[0]);
  return 0;
}

int main(void) {
  sqlite3 *db;
  char got[32] = "";
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
  if (sqlite3_exec(db, "create table t(x); insert into t values (6), (7);", 0, 0, 0) != SQLITE_OK)
    return 2;
  if (sqlite3_exec(db, "select (select x from t where rowid = 1) * (select x from t where rowid = 2);",
                   row, got, 0) != SQLITE_OK)
    return 3;
  sqlite3_close(db);
  return strcmp(got, "42") != 0;
}
"#;

/// SQLite's amalgamation: one large object plus a small program.
pub fn sqlite(flags: &str) -> Project {
    let src = &sources().sqlite;
    let mut mk = String::new();
    let _ = writeln!(
        mk,
        "# Written by offload's e2e tests for SQLite's amalgamation."
    );
    let _ = writeln!(
        mk,
        "CFLAGS = -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_DEFAULT_MEMSTATUS=0 {flags}"
    );
    mk.push_str(
        "\nall: sqltest\n\t./sqltest\n\n\
         obj/sqlite3.o: sqlite3.c\n\t$(CC) $(CFLAGS) -MMD -c sqlite3.c -o $@\n\n\
         obj/main.o: main.c\n\t$(CC) $(CFLAGS) -MMD -c main.c -o $@\n\n\
         sqltest: obj/main.o obj/sqlite3.o\n\t$(CC) -o $@ obj/main.o obj/sqlite3.o -lm\n\n\
         -include obj/sqlite3.d obj/main.d\n",
    );
    Project {
        name: format!("sqlite {flags}"),
        makefile: mk,
        copies: vec![(
            PathBuf::new(),
            src.clone(),
            vec!["sqlite3.c".into(), "sqlite3.h".into()],
        )],
        extra: vec![("main.c".into(), SQLITE_MAIN.into())],
        dirs: vec!["obj".into()],
        objects: 2,
        links: 1,
    }
}

/// A small generated C project of `n` files plus a program that uses them (linked and run).
pub fn tiny(n: usize) -> Project {
    let mut extra = vec![(
        "inc/common.h".to_string(),
        "#ifndef COMMON_H\n#define COMMON_H\n#define SCALE 3\n".to_string()
            + &(0..n)
                .map(|i| format!("int f{i}(int);\n"))
                .collect::<String>()
            + "#endif\n",
    )];
    for i in 0..n {
        extra.push((
            format!("src/f{i}.c"),
            format!(
                "#include \"common.h\"\nstatic int table[4] = {{{i}, 1, 2, 3}};\n\
                 int f{i}(int x) {{ return table[x & 3] * SCALE + {i}; }}\n"
            ),
        ));
    }
    let calls: String = (0..n).map(|i| format!(" + f{i}({i})")).collect();
    let want: usize = (0..n).map(|i| [i, 1, 2, 3][i & 3] * 3 + i).sum();
    extra.push((
        "src/main.c".into(),
        format!(
            "#include \"common.h\"\nint main(void) {{ return (0{calls}) == {want} ? 0 : 1; }}\n"
        ),
    ));
    let objs: Vec<String> = (0..n).map(|i| format!("obj/f{i}.o")).collect();
    let mut mk = String::new();
    let _ = writeln!(mk, "# Written by offload's e2e tests.");
    let _ = writeln!(mk, "CFLAGS = -O1 -g -Iinc");
    let _ = writeln!(mk, "OBJS = {} obj/main.o", objs.join(" "));
    mk.push_str(
        "\nall: prog\n\t./prog\n\n\
         obj/%.o: src/%.c\n\t$(CC) $(CFLAGS) -MMD -MP -c $< -o $@\n\n\
         prog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n\n\
         -include $(OBJS:.o=.d)\n",
    );
    Project {
        name: format!("tiny({n})"),
        makefile: mk,
        copies: vec![],
        extra,
        dirs: vec!["obj".into()],
        objects: n + 1,
        links: 1,
    }
}
