#!/usr/bin/env bash
# Writes the man pages and shell completions of the three tools, generated
# from their clap definitions (`TOOL --generate KIND`), into DIR:
#   DIR/man/man1/TOOL.1
#   DIR/completions/bash/TOOL  DIR/completions/zsh/_TOOL  DIR/completions/fish/TOOL.fish
# Usage: scripts/gen-man.sh [DIR] [BINDIR]   (defaults: target/doc-gen, target/release
# if it holds the binaries, else target/debug after a cargo build)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/doc-gen}"
bindir="${2:-}"
if [ -z "$bindir" ]; then
  if [ -x target/release/siemparse ]; then bindir=target/release
  else cargo build -q --bins --locked; bindir=target/debug; fi
fi
mkdir -p "$out/man/man1" "$out/completions/bash" "$out/completions/zsh" "$out/completions/fish"
for tool in siemparse siemquery siemtrigger; do
  "$bindir/$tool" --generate man >"$out/man/man1/$tool.1"
  "$bindir/$tool" --generate complete-bash >"$out/completions/bash/$tool"
  "$bindir/$tool" --generate complete-zsh >"$out/completions/zsh/_$tool"
  "$bindir/$tool" --generate complete-fish >"$out/completions/fish/$tool.fish"
done
echo "man pages and completions in $out"
