#!/usr/bin/env bash
# Copies an exported training model (model.tflite + manifest.json) into the
# app's assets, after checking that it is a builtin-mode export and that the
# file's sha256 matches its manifest.
#
# Usage: android_demo/copy_model.sh EXPORT_DIR [ASSETS_DIR]
#   EXPORT_DIR  the --out_dir of `python -m export` (its training/ folder is
#               used) or a folder holding model.tflite + manifest.json
#   ASSETS_DIR  default: android_demo/app/src/main/assets
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 EXPORT_DIR [ASSETS_DIR]" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_dir="$1"
assets="${2:-$here/app/src/main/assets}"
[[ -f "$source_dir/training/manifest.json" ]] && source_dir="$source_dir/training"
for name in model.tflite manifest.json; do
  if [[ ! -f "$source_dir/$name" ]]; then
    echo "error: $source_dir/$name not found; expected a directory written by \`python -m export\`" >&2
    exit 1
  fi
done

python3 - "$source_dir" <<'PY'
import hashlib, json, os, sys
directory = sys.argv[1]
with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as f:
  manifest = json.load(f)
if manifest.get("kind") != "training" or manifest.get("mode") != "builtin":
  sys.exit(f"error: {directory} holds a {manifest.get('mode')} {manifest.get('kind')} "
           f"model; the app needs a builtin training export (python -m export --mode builtin)")
with open(os.path.join(directory, "model.tflite"), "rb") as f:
  digest = hashlib.sha256(f.read()).hexdigest()
if digest != manifest["file"]["sha256"]:
  sys.exit(f"error: {directory}/model.tflite has sha256 {digest}, its manifest says "
           f"{manifest['file']['sha256']}: the two files are from different exports")
PY

mkdir -p "$assets"
for name in model.tflite manifest.json; do
  cp "$source_dir/$name" "$assets/.$name.tmp"
  mv -f "$assets/.$name.tmp" "$assets/$name"
done
echo "copied $source_dir/{model.tflite,manifest.json} to $assets"
