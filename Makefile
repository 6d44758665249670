# baremetal-ai — the two commands are `make lab` and `make test`; both install what is missing first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    := .venv
BIN     := $(VENV)/bin
NODES   ?= 3
LAB     ?= lab
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/collections
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0

.PHONY: help bootstrap lab lab-up lab-down converge later-stages pilot test lint unit molecule e2e bench clean

help:
	@echo "make lab    - install what is missing, bring up the lab ($(NODES) nodes), converge, summarize"
	@echo "make test   - lint + unit + Molecule per role + lab end-to-end (pytest summary at the end)"
	@echo "make pilot  - the controlled pilot + provider checklist on the lab (after make lab)"
	@echo "make lab-down, make lint, make unit, make molecule, make e2e, make bench, make clean"

bootstrap:
	@scripts/bootstrap.sh

lab: bootstrap lab-up converge later-stages
	@$(BIN)/baremetal lab status --name $(LAB)
	@echo
	@echo "Lab '$(LAB)' is converged and validated. Inventory: inventories/$(LAB)"
	@echo "Logs: results/$(LAB)/*.log; validation results (JSON, junit.xml, fleet.json): $$(ls -d results/2*/ 2>/dev/null | tail -1)"
	@echo "Drift report: $$(ls -t drift/*.md 2>/dev/null | head -1); fleet report (open in a browser): results/$(LAB)/report/report.html"
	@echo "Next: '$(BIN)/baremetal lab ssh node1 --name $(LAB)', 'make lab-down LAB=$(LAB)'"

lab-up:
	$(BIN)/baremetal lab up --name $(LAB) --nodes $(NODES)

converge:
	@mkdir -p results/$(LAB)
	$(BIN)/ansible-playbook -i inventories/$(LAB) site.yml | tee results/$(LAB)/converge.log

# Validation, then the drift check (check mode: it changes nothing; exit 2 drift, 4 unreachable) and the report,
# which is written even when the drift check fails; make then fails with the drift check's status.
later-stages:
	@for pb in playbooks/validate.yml; do \
	  if [ -f $$pb ]; then $(BIN)/ansible-playbook -i inventories/$(LAB) $$pb | tee results/$(LAB)/$$(basename $$pb .yml).log; \
	  else echo "[lab] $$pb does not exist yet: stage skipped"; fi; done
	@rc=0; ANSIBLE_STRATEGY=baremetal_linear ANSIBLE_CACHE_PLUGIN=memory $(BIN)/ansible-playbook -i inventories/$(LAB) playbooks/drift.yml --check --diff \
	  | tee results/$(LAB)/drift.log || rc=$$?; \
	  $(BIN)/baremetal report --out results/$(LAB)/report || true; \
	  echo "[lab] drift check exit $$rc (0 = no drift); report: results/$(LAB)/report/report.html"; exit $$rc

# The controlled pilot on the lab (CPU, tiny model: says so in its results), then the provider checklist.
pilot: bootstrap
	$(BIN)/ansible-playbook -i inventories/$(LAB) playbooks/pilot.yml
	$(BIN)/baremetal checklist -i inventories/$(LAB) --out results/$(LAB)/checklist.md

lab-down:
	$(BIN)/baremetal lab down --name $(LAB)

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/yamllint -s .
	ANSIBLE_INVENTORY=$(CURDIR)/inventories/example/hosts.yml $(BIN)/ansible-lint --profile production --offline

unit: bootstrap
	$(BIN)/pytest tests/unit tests/pulumi tests/integration

molecule: bootstrap
	$(BIN)/pytest tests/molecule

e2e: bootstrap
	$(BIN)/pytest tests/e2e

# One pytest session (unit, Pulumi mocks, Redfish provider against the emulator, Molecule scenarios, then the
# lab end-to-end tests), so CI reads one summary line.
test: bootstrap lint
	$(BIN)/pytest --durations=25 tests/unit tests/pulumi tests/integration tests/molecule tests/e2e

bench: bootstrap
	$(BIN)/python benchmarks/lab.py

clean:
	rm -rf .cache/ansible-facts .pytest_cache .ruff_cache results
