#!/usr/bin/env bash
# One read-only pass over a real GPU machine (benchmarks/gpu/README.md): captures tool outputs as test fixtures,
# measures PyTorch's reference numbers, builds and runs gpubench directly, then runs playbooks/validate.yml
# (standard and quick tiers) and the nvidia_driver/cuda roles in check mode with a local connection.
# Nothing here changes GPU settings, installs drivers or writes outside /tmp, /var/lib/baremetal-ai and $OUT.
#
# Run from the repository root:  OUT=/tmp/gpu-out benchmarks/gpu/run_on_gpu.sh
# Needs: nvidia-smi, nvcc, python3 with torch (for the baseline only); ansible-core wheels in .whl/ when the
# machine has no ansible (pip install --target /tmp/site, no index).
set -u
OUT=${OUT:-/tmp/gpu-out}
W=/tmp/gpuwork
rm -rf "$W"
mkdir -p "$OUT" "$W/cap" "$W/res" "$W/gb"
exec > >(tee "$OUT/log.txt") 2>&1
step() { echo; echo "=== $(date -u +%H:%M:%S) $*"; }
T0=$(date +%s)

step "machine"
uname -a; head -3 /etc/os-release; nproc; free -g | head -2
command -v nvidia-smi nvcc numactl lspci python3 /usr/bin/python3
nvcc --version | tail -2; python3 --version; /usr/bin/python3 --version
/usr/bin/python3 -c 'import apt; print("system python3 has python3-apt")' || true
ls -d /usr/local/cuda* 2>&1; ls /usr/local/cuda/lib64 2>/dev/null | grep -E '^libcublas' | head

step "captures (fixtures)"
nvidia-smi > "$W/cap/nvidia-smi.txt" 2>&1
nvidia-smi -q -x > "$W/cap/nvidia-smi-q-x.xml" 2>&1
nvidia-smi -q > "$W/cap/nvidia-smi-q.txt" 2>&1
nvidia-smi topo -m > "$W/cap/nvidia-smi-topo-m.txt" 2>&1
nvidia-smi nvlink -s > "$W/cap/nvidia-smi-nvlink-s.txt" 2>&1
nvidia-smi --query-gpu=index,pci.bus_id,name,compute_cap,pcie.link.gen.max,pcie.link.width.max \
  --format=csv,noheader,nounits > "$W/cap/query-gpubench.csv" 2>&1
nvidia-smi --query-gpu=index,name,uuid,serial,driver_version,pci.bus_id,memory.total,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max,clocks_event_reasons.active,ecc.mode.current,persistence_mode \
  --format=csv > "$W/cap/query-gpu.csv" 2>&1
(lspci -vvv || echo "lspci: not available") > "$W/cap/lspci-vvv.txt" 2>&1
(dmesg 2>&1 | grep -i -E 'nvrm|xid' | tail -50) > "$W/cap/dmesg-nvrm.txt" 2>&1
# sysfs as topology_facts reads it: every PCI device with its path and link files, NUMA nodes, net and RDMA.
for d in /sys/bus/pci/devices/*; do
  printf '%s|%s' "${d##*/}" "$(readlink -f "$d")"
  for f in vendor device class numa_node local_cpulist current_link_speed current_link_width max_link_speed \
           max_link_width; do printf '|%s=%s' "$f" "$(cat "$d/$f" 2>/dev/null | tr '\n' ' ')"; done
  echo
done > "$W/cap/sysfs-pci-devices.txt"
for n in /sys/devices/system/node/node*; do echo "${n##*/} cpulist=$(cat "$n/cpulist")"; done \
  > "$W/cap/sysfs-nodes.txt" 2>&1
for c in net infiniband; do
  for i in /sys/class/$c/*; do echo "$c ${i##*/} $(readlink -f "$i") device=$(readlink -f "$i/device" 2>/dev/null)"; done
done > "$W/cap/sysfs-class.txt" 2>&1
cat "$W/cap/query-gpubench.csv" "$W/cap/nvidia-smi-topo-m.txt"
grep -E "$(cut -d, -f2 "$W/cap/query-gpubench.csv" | sed 's/^ *0000//' | tr 'A-F' 'a-f' | head -1)" \
  "$W/cap/sysfs-pci-devices.txt" || true

step "installed GPU packages and apt sources (which names NVIDIA's packages really have)"
dpkg-query -W -f='${binary:Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\n' \
  | grep -E '^(cuda|libcu|libnccl|libnv|nvidia|libcublas|nsight|libnpp|libcufft|libcurand|libcusolver|libcusparse)' \
  > "$W/cap/dpkg-query-gpu.txt"; wc -l < "$W/cap/dpkg-query-gpu.txt"; head -30 "$W/cap/dpkg-query-gpu.txt"
(ls -l /etc/apt/sources.list.d/ /usr/share/keyrings/ 2>&1; cat /etc/apt/sources.list.d/*cuda* 2>&1;
 ls /var/lib/apt/lists/ 2>&1 | head -40) > "$W/cap/apt-sources.txt"; cat "$W/cap/apt-sources.txt" | head -30

step "PyTorch reference"
timeout 150 python3 benchmarks/gpu/torch_baseline.py > "$W/res/torch_baseline.json"; echo "rc=$?"
cat "$W/res/torch_baseline.json" | head -12

step "gpubench built and run by hand"
# cuBLAS: the toolkit's own, else wherever the image keeps it (e.g. pip's nvidia/cu13 beside PyTorch).
NVFLAGS=()
LT=$(ls "$(dirname "$(readlink -f "$(command -v nvcc)")")"/../lib64/libcublasLt.so* 2>/dev/null | head -1)
if [ -z "$LT" ]; then
  LT=$(find /usr /opt -xdev -name 'libcublasLt.so*' 2>/dev/null | head -1)
  INC=$(find /usr /opt -xdev -name cublasLt.h 2>/dev/null | head -1)
  NVFLAGS=("-I$(dirname "$INC")" "-L$(dirname "$LT")")
fi
echo "cuBLASLt: $LT; extra nvcc flags: ${NVFLAGS[*]:-none}"
NVJSON="[]"
[ ${#NVFLAGS[@]} -gt 0 ] && NVJSON="[\"${NVFLAGS[0]}\", \"${NVFLAGS[1]}\"]"
s=$(date +%s%N)
nvcc -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 -o "$W/gb/gpubench" validation/gpubench/gpubench.cu \
  "${NVFLAGS[@]}" -Xlinker=-rpath="$(dirname "$LT")" -l:"$(basename "$LT")"
echo "nvcc rc=$? in $(( ($(date +%s%N) - s) / 1000000 )) ms"
"$W/gb/gpubench" --list | tee "$W/res/gpubench-list.json"
s=$(date +%s%N)
CUDA_DEVICE_ORDER=PCI_BUS_ID timeout 180 "$W/gb/gpubench" --device 0 > "$W/res/gpubench-device0.json"
echo "rc=$? in $(( ($(date +%s%N) - s) / 1000000 )) ms"; cat "$W/res/gpubench-device0.json"
"$W/gb/gpubench" --p2p > "$W/res/gpubench-p2p.json"; cat "$W/res/gpubench-p2p.json"
"$W/gb/gpubench" --device 0 --tests nope > "$W/res/gpubench-bad-arg.json"; echo "rc=$?"

step "ansible-core from carried wheels"
if ! command -v ansible-playbook >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
fi
ansible-playbook --version | head -3
MODEL=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
COUNT=$(nvidia-smi -L | grep -c '^GPU ')
EXTRA="{\"node_gpu_model\": \"$MODEL\", \"node_gpu_count\": $COUNT, \"validation_results_dir\": \"$W/results\",
        \"validation_textfile_dir\": \"$W/textfile\", \"validation_nvcc_flags\": $NVJSON}"

for tier in standard quick extended; do
  ARGS=()
  # extended: a 45 s BF16 GEMM burn-in only (first and last 10% windows), not the whole extended tier
  [ $tier = extended ] && ARGS=(--tags gpu -e validation_duration_s=45 -e '{"validation_gpu_tests": ["gemm_bf16"]}')
  step "validate.yml tier $tier"
  s=$(date +%s%N)
  timeout 400 ansible-playbook -i benchmarks/gpu/inventory.yml playbooks/validate.yml -e "$EXTRA" \
    -e validation_tier=$tier -e validation_run_id=gpu-$tier "${ARGS[@]}"
  echo "validate $tier rc=$? wall $(( ($(date +%s%N) - s) / 1000000 )) ms"
  cp "$W/textfile/baremetal_validation.prom" "$W/results/gpu-$tier/" 2>/dev/null
done

step "nvidia_driver + cuda roles, check mode, local connection"
PY=python3
/usr/bin/python3 -c 'import apt' 2>/dev/null && PY=/usr/bin/python3
timeout 200 ansible-playbook -i benchmarks/gpu/inventory.yml benchmarks/gpu/gpu_stack_check.yml --check --diff \
  -e "{\"node_gpu_count\": $COUNT, \"nvidia_driver_branch\": \"580\", \"cuda_version\": \"13.0\",
       \"nvidia_driver_cuda_repo_manage\": false, \"cuda_repo_manage\": false,
       \"ansible_python_interpreter\": \"$(command -v $PY)\"}" > "$W/res/gpu_stack_check.log" 2>&1
echo "roles check rc=$?"; tail -60 "$W/res/gpu_stack_check.log"

step "pack"
tar -C "$W" -czf "$OUT/captures.tgz" cap
tar -C "$W" -czf "$OUT/results.tgz" res results textfile 2>/dev/null
ls -la "$OUT"; echo "total $(( $(date +%s) - T0 )) s"
