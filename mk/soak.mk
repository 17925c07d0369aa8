# make soak: the seeded chaos soak (issue 18; tools/soak/README.md).
#
#   make soak SEED=n K=k SECONDS=s [SOAK_BACKEND=electric|native] [SOAK_ARGS=--strict]
#                       one seed (default: from the clock; printed, with the replay command)
#   make soak-short     a few fixed seeds, about two minutes in all (one item of make check)
#
# Runs on lua5.4 against the plain build (build/5.4), the local server as a child process.
SOAK_LUA     ?= lua5.4
SOAK_BUILD   ?= build/5.4
SEED         ?=
K            ?= 40
SECONDS      ?= 60
SOAK_BACKEND ?=
SOAK_ARGS    ?=
SOAK_SHORT_SEEDS ?= 11 12 13 14
SOAK_SHORT_SECONDS ?= 20

SOAK_RUN = env BUILD=$(SOAK_BUILD) $(SOAK_LUA) tools/soak/soak.lua

.PHONY: soak soak-short soak-run

soak:
	@$(MAKE) --no-print-directory LUA=$(SOAK_LUA) BUILD=$(SOAK_BUILD) all >/dev/null
	@$(SOAK_RUN) $(if $(SEED),--seed $(SEED)) --k $(K) --seconds $(SECONDS) \
	  $(if $(SOAK_BACKEND),--backend $(SOAK_BACKEND)) $(SOAK_ARGS)

# Each seed once, alternating the starting backend (flips happen in both).
soak-short:
	@$(MAKE) --no-print-directory LUA=$(SOAK_LUA) BUILD=$(SOAK_BUILD) all >/dev/null
	@set -e; b=electric; for s in $(SOAK_SHORT_SEEDS); do \
	  $(SOAK_RUN) --seed $$s --k 30 --seconds $(SOAK_SHORT_SECONDS) --backend $$b --quiet $(SOAK_ARGS); \
	  if [ $$b = electric ]; then b=native; else b=electric; fi; \
	done

# The item of make check (mk/check.mk lists it).
soak-run:
	@$(CHECK_ITEM) soak:short -- $(MAKE) --no-print-directory soak-short; exit 0
