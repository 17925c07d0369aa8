# make deps: install what mk/packages.txt lists and is missing (apt-get as root; otherwise the
# command to run). make demo and make test depend on it; so does CI (.ci/run). See mk/deps.sh.
.PHONY: deps
deps:
	@sh mk/deps.sh
