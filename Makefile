# The two commands of the README: `make demo` and `make test`.
GO ?= go

.PHONY: demo test unit integration screenshots stress services-up services-down bench bench-compare fuzz schemas ropa lint

demo: ## the zero-setup embedded demo (in-process Kafka and Redis)
	$(GO) run ./cmd/pipeline demo

test: ## everything: vet, unit tests, real Kafka + Redis, integration tests, demo check
	scripts/test

unit: ## unit tests only (no services needed)
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /internal/integration)

integration: ## integration tests against running services (eval "$$(scripts/services up)" first)
	CI=true $(GO) test -count=1 -v ./internal/integration/

screenshots: ## the privacy center's screenshots in docs/ (the browser test on real services; eval "$$(scripts/services up)" first)
	PIPELINE_CHROMIUM="$${PIPELINE_CHROMIUM:-$$(scripts/chromium)}" PIPELINE_SCREENSHOT_DIR=$(CURDIR)/docs CI=true $(GO) test -count=1 -run TestPrivacyCenterInABrowser -v ./internal/integration/

stress: ## the k-anonymity and bad-input integration tests 10 times with the CPU saturated (COUNT, BUSY, RUN)
	scripts/stress

services-up:
	scripts/services up

services-down:
	scripts/services down

bench: ## per-event cost of the privacy and k-anonymity paths, with same-run baselines
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./processors/privacy/ ./internal/fields/redact/ ./internal/codec/eventcodec/ ./internal/fields/pseudonym/
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./processors/kanonagg/ ./processors/kanonrec/ ./internal/kanon/aggregate/ ./internal/kanon/castle/ ./internal/codec/cleancodec/

bench-compare: ## the benchmarks of BASE=<revision> and of the work tree, interleaved in one run, through benchstat
	scripts/bench-compare $(BASE)

fuzz: ## a short run of every fuzz target (FUZZTIME=30s by default)
	scripts/fuzz $${FUZZTIME:-30s}

schemas: ## regenerate the derived clean schemas and the record of processing activities after a schema, policy, kanon.json or topology change
	$(GO) run ./cmd/pipeline schemas generate
	$(MAKE) ropa

ropa: ## regenerate docs/ropa.md and docs/ropa.json, the record of processing activities (GDPR Art. 30)
	$(GO) run ./cmd/pipeline ropa --format md --out docs/ropa.md
	$(GO) run ./cmd/pipeline ropa --format json --out docs/ropa.json
