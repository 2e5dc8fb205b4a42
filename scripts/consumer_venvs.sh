#!/usr/bin/env bash
# The consumer venvs tests/output/test_export_venvs.py runs the trainers' own loaders in (each pins other releases of
# transformers / TRL / datasets than prefkit's, so none shares prefkit's environment). Usage:
#   bash scripts/consumer_venvs.sh DIR [NAME ...]  # makes DIR/llamafactory, torchtune, openrlhf, axolotl (or the NAMEs)
#   PREFKIT_CONSUMER_VENVS=DIR pytest -q tests/output/test_export_venvs.py
# CPU only, Python 3.11; torch is the CPU build (torch==2.13.0). A consumer that fails to install is skipped by
# the tests (its venv has no bin/python then).
set -uo pipefail
DIR=${1:?usage: consumer_venvs.sh DIR [NAME ...]}
shift
NAMES=" ${*:-llamafactory torchtune openrlhf axolotl} "
for name in $NAMES; do
  case $name in llamafactory|torchtune|openrlhf|axolotl) ;; *) echo "consumer_venvs.sh: unknown consumer $name" >&2; exit 2;; esac
done
wanted() { [[ $NAMES == *" $1 "* ]]; }
mkdir -p "$DIR"
venv() {  # venv NAME: a fresh venv with the CPU torch
  rm -rf "${DIR:?}/$1" && python3 -m venv "$DIR/$1" && "$DIR/$1/bin/pip" install -q torch==2.13.0
}
site() { "$DIR/$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

# LLaMA-Factory 0.9.5: its torchvision/torchaudio wheels do not match the CPU torch; transformers works without
# torchvision, and LLaMA-Factory imports torchaudio only for audio inputs (a stub module stands in)
wanted llamafactory && { venv llamafactory && "$DIR/llamafactory/bin/pip" install -q "llamafactory==0.9.5" \
  && "$DIR/llamafactory/bin/pip" uninstall -y -q torchvision torchaudio \
  && mkdir -p "$(site llamafactory)/torchaudio" && echo '"""stub: audio inputs only"""' > "$(site llamafactory)/torchaudio/__init__.py" \
  || rm -rf "${DIR:?}/llamafactory"; }

# torchtune 0.6.1 needs torchao < 0.11 (0.11 removed torchao.dtypes.nf4tensor)
wanted torchtune && { venv torchtune && "$DIR/torchtune/bin/pip" install -q "torchtune==0.6.1" "torchao<0.11" \
  || rm -rf "${DIR:?}/torchtune"; }

# OpenRLHF 0.11.2: its deepspeed / flash-attn / vllm do not build on CPU; the data code needs only these
wanted openrlhf && { venv openrlhf && "$DIR/openrlhf/bin/pip" install -q --no-deps "openrlhf==0.11.2" \
  && "$DIR/openrlhf/bin/pip" install -q transformers datasets pylatexenc || rm -rf "${DIR:?}/openrlhf"; }
# axolotl 0.19.0: its full install (flash-attn, deepspeed, bitsandbytes pins) does not finish on CPU; the DPO
# chat_template strategy needs only these
wanted axolotl && { venv axolotl && "$DIR/axolotl/bin/pip" install -q --no-deps "axolotl==0.19.0" \
  && "$DIR/axolotl/bin/pip" install -q transformers datasets jinja2 pydantic pyyaml colorama accelerate \
  || rm -rf "${DIR:?}/axolotl"; }
ls "$DIR"
