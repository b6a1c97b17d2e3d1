#!/usr/bin/env bash
# Runs ON the GPU machine (sourced), after `source tools/gpu/device-setup.sh env`: installs the
# carried reference wheels (mlx 0.32.2 for cp312, mlx-vlm 0.7.10, mlx-lm 0.32.2; the machine's own
# Python has transformers, tokenizers, numpy, Pillow, safetensors, jinja2, sentencepiece...) into
# /tmp/site, and points Python's mlx at the same CUDA libmlx.so (and JIT headers) that vlmbench uses,
# so both programs run on one MLX build.
#   source tools/gpu/python-setup.sh WHEEL_DIR
wheels="${1:?usage: source python-setup.sh WHEEL_DIR}"
lib=/tmp/vlmbench-gpu/wheel/mlx
if [ ! -d /tmp/site/mlx_vlm ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl \
    || { echo "error: pip could not install the wheels in $wheels"; return 1 2>/dev/null || exit 1; }
  mkdir -p /tmp/site/mlx/lib
  ln -sf "$lib/lib/libmlx.so" /tmp/site/mlx/lib/libmlx.so
  ln -sfn "$lib/include" /tmp/site/mlx/include
fi
export PYTHONPATH=/tmp/site
