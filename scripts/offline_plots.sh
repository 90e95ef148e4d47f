#!/usr/bin/env bash
# Makes `dvc plots show` / `dvc plots diff` pages render offline: DVC's default page loads vega, vega-lite and
# vega-embed from a CDN (blank without network). This builds .dvc/plots/offline.html, an HTML template with the
# three libraries inline (from their npm packages, the versions DVC's own page asks for), and points this repo's
# local DVC config at it (`plots.html_template`, in .dvc/config.local: not committed). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.dvc/plots/offline.html
[ -s "$out" ] && { dvc config --local plots.html_template plots/offline.html; exit 0; }
command -v npm >/dev/null || { echo "offline_plots: npm not found; dvc plots pages will load vega from a CDN" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2 >/dev/null)
for pkg in vega vega-lite vega-embed; do
  tar -xzf "$tmp"/$pkg-[0-9]*.tgz -C "$tmp" package/build/$pkg.min.js
  mv "$tmp/package/build/$pkg.min.js" "$tmp/$pkg.js"
done
mkdir -p "$(dirname "$out")"
{
  printf '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>vlm-grpo: DVC plots</title>\n'
  for pkg in vega vega-lite vega-embed; do
    printf '<script type="text/javascript">\n'; cat "$tmp/$pkg.js"; printf '\n</script>\n'
  done
  printf '<style>body { font-family: sans-serif; } table { border-spacing: 15px; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n'
} > "$out.tmp"
grep -q '{plot_divs}' "$out.tmp" && mv "$out.tmp" "$out"
dvc config --local plots.html_template plots/offline.html
echo "offline_plots: wrote $out ($(du -k "$out" | cut -f1) KiB); dvc plots pages now render offline"
