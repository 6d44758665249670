#!/usr/bin/env bash
# The nightly watch job (docs/drift.md): a quick validation, the drift check, and the report, for one inventory.
# Keeps the newest N drift runs, validation runs and reports; exits non-zero on drift.
#
#   scripts/nightly-watch.sh INVENTORY
#
# Environment:
#   BAREMETAL_OUT       where drift/, results/ and reports/ go (default: the repository)
#   BAREMETAL_KEEP      runs of each kind to keep (default 14)
#   BAREMETAL_VALIDATE  validation tier before the drift check: quick (default), standard, or none
#   BAREMETAL_BIN       directory with ansible-playbook and baremetal (default: <repo>/.venv/bin)
#   BAREMETAL_MITOGEN   0: run the drift check without Mitogen (default: over Mitogen, see plugins/strategy/)
#
# Exit status: 0 no drift and validation passed; 2 drift (or a task failed in the drift run); 3 validation
# failed, no drift; 4 a host was unreachable; 64 usage. The report is written in every case.
set -uo pipefail

usage() { echo "usage: $0 INVENTORY (see the header of this script)" >&2; exit 64; }
[ $# -eq 1 ] || usage
inventory=$1
[ -e "$inventory" ] || { echo "$0: inventory $inventory does not exist" >&2; exit 64; }

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${BAREMETAL_OUT:-$repo}
keep=${BAREMETAL_KEEP:-14}
tier=${BAREMETAL_VALIDATE:-quick}
bin=${BAREMETAL_BIN:-$repo/.venv/bin}
case $keep in ''|*[!0-9]*|0) echo "$0: BAREMETAL_KEEP must be a positive integer (got '$keep')" >&2; exit 64;; esac
case $tier in quick|standard|none) ;; *) echo "$0: BAREMETAL_VALIDATE must be quick, standard or none (got '$tier')" >&2; exit 64;; esac

export ANSIBLE_CONFIG=${ANSIBLE_CONFIG:-$repo/ansible.cfg}
run_id=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out/drift" "$out/results" "$out/reports"
cd "$repo"

validate_rc=0
if [ "$tier" != none ]; then
  "$bin/ansible-playbook" -i "$inventory" playbooks/validate.yml -e "validation_tier=$tier" \
    -e "validation_run_id=$run_id" -e "validation_results_dir=$out/results" || validate_rc=$?
fi
drift_rc=0
# The drift check runs over Mitogen (plugins/strategy/baremetal_linear.py; BAREMETAL_MITOGEN=0 turns it off),
# with facts kept in memory: it gathers them fresh anyway, and the on-disk cache costs a decode per task and host.
ANSIBLE_STRATEGY=${ANSIBLE_STRATEGY:-baremetal_linear} ANSIBLE_CACHE_PLUGIN=${ANSIBLE_CACHE_PLUGIN:-memory} \
  "$bin/ansible-playbook" -i "$inventory" playbooks/drift.yml --check --diff \
    -e "drift_run_id=$run_id" -e "drift_dir=$out/drift" || drift_rc=$?
"$bin/baremetal" report --results "$out/results" --drift "$out/drift" --out "$out/reports/$run_id" \
  --last "$keep" || true

# Keep the newest $keep of each kind (run ids are UTC timestamps: they sort by time).
prune() {  # prune GLOB... : newest $keep stay
  local items
  mapfile -t items < <(ls -1d "$@" 2>/dev/null | sort)
  local n=$(( ${#items[@]} - keep ))
  for ((i = 0; i < n; i++)); do rm -rf -- "${items[$i]}"; done
}
for suffix in json md junit.xml; do prune "$out"/drift/2*Z."$suffix"; done
prune "$out"/results/2*Z
prune "$out"/reports/2*Z

echo "nightly watch $run_id: drift exit $drift_rc, validation exit $validate_rc; report $out/reports/$run_id/report.html"
if [ "$drift_rc" -eq 4 ]; then exit 4; fi
if [ "$drift_rc" -ne 0 ]; then exit 2; fi
if [ "$validate_rc" -eq 4 ]; then exit 4; fi
if [ "$validate_rc" -ne 0 ]; then exit 3; fi
exit 0
