# make soak: the seeded chaos soak (issue 18; tools/soak/README.md).
#
#   make soak SEED=n K=k SECONDS=s [SOAK_BACKEND=electric|native] [SOAK_ARGS=--strict]
#                       one seed (default: from the clock; printed, with the replay command)
#   make soak-short     a few fixed seeds, about two minutes in all, then the hostile mode for
#                       SOAK_HOSTILE_SECONDS (one item of make check)
#   make soak-hostile   the hostile mode alone (SEED, SECONDS: tools/soak/README.md)
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
SOAK_HOSTILE_SECONDS ?= 30

SOAK_RUN = env BUILD=$(SOAK_BUILD) $(SOAK_LUA) tools/soak/soak.lua

.PHONY: soak soak-short soak-hostile soak-run

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
	done; \
	$(SOAK_RUN) --hostile --seed $(firstword $(SOAK_SHORT_SEEDS)) --seconds $(SOAK_HOSTILE_SECONDS) --quiet $(SOAK_ARGS)

# The hostile mode (issue 28): storm answers at random, the request budget and CPU checked.
soak-hostile:
	@$(MAKE) --no-print-directory LUA=$(SOAK_LUA) BUILD=$(SOAK_BUILD) all >/dev/null
	@$(SOAK_RUN) --hostile $(if $(SEED),--seed $(SEED)) --seconds $(SECONDS) \
	  $(if $(SOAK_BACKEND),--backend $(SOAK_BACKEND)) $(SOAK_ARGS)

# The item of make check (mk/check.mk lists it).
soak-run:
	@$(CHECK_ITEM) soak:short -- $(MAKE) --no-print-directory soak-short; exit 0
