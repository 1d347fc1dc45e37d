# Sourced by the benchmarks: the real projects' sources, fetched by cargo (never copied into
# the repository), each with a Makefile that builds its objects into obj/.
#
#   bench_sources DIR    writes DIR/lua (Lua 5.4.7) and DIR/zstd (zstd 1.5.x's lib, with .S)
bench_sources() {
  local B=$1
  mkdir -p "$B/fetch/src"
  cat > "$B/fetch/Cargo.toml" <<'TOML'
[package]
name = "fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
lua-src = "547"
zstd-sys = "2"
TOML
  echo 'fn main() {}' > "$B/fetch/src/main.rs"
  cargo fetch -q --manifest-path "$B/fetch/Cargo.toml"
  pkgdir() {
    cargo metadata -q --format-version 1 --manifest-path "$B/fetch/Cargo.toml" |
      python3 -c "import json,sys,os; m=json.load(sys.stdin); print([os.path.dirname(p['manifest_path']) for p in m['packages'] if p['name']==sys.argv[1]][0])" "$1"
  }
  mkdir -p "$B/lua" "$B/zstd"
  cp "$(pkgdir lua-src)"/lua-5.4.7/*.[ch] "$B/lua/"
  cp -r "$(pkgdir zstd-sys)"/zstd/lib "$B/zstd/"
  cat > "$B/lua/Makefile" <<'MK'
CFLAGS = -O2 -DLUA_USE_LINUX
SRCS := $(filter-out lua.c luac.c,$(wildcard *.c))
all: $(SRCS:%.c=obj/%.o)
obj/%.o: %.c
	@mkdir -p obj
	$(CC) $(CFLAGS) -MMD -c $< -o $@
clean:
	rm -rf obj
MK
  cat > "$B/zstd/Makefile" <<'MK'
CFLAGS = -O2
SRCS := $(wildcard lib/*/*.c) lib/decompress/huf_decompress_amd64.S
OBJS := $(patsubst lib/%,obj/%.o,$(SRCS))
all: $(OBJS)
obj/%.c.o: lib/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -c $< -o $@
obj/%.S.o: lib/%.S
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -c $< -o $@
clean:
	rm -rf obj
MK
}
