# webhookd — see README.md.
CHDB_VERSION := 26.7.3-stable.1
CHDB_LIB     := $(CURDIR)/.cache/chdb/$(CHDB_VERSION)/libchdb.so
GO           ?= go
export WEBHOOKD_CHDB_LIBRARY ?= $(CHDB_LIB)
# helm, built from source with go install (pinned) into .cache; deploy/helm's test runs it.
HELM_VERSION := v3.22.0
HELM_K8S     := 1.37
export HELM  ?= $(CURDIR)/.cache/helm/$(HELM_VERSION)/helm
CHART        := deploy/helm/webhookd

.PHONY: run test test-reliability build chdb deps test-tools helm helm-check fuzz bench bench-go bench-stats lint clean

## run: install what is needed, build, and start `webhookd dev` (Kafka on :9092, admin API on :8080).
run: build chdb
	./bin/webhookd dev

## test: everything — unit, fuzz seeds, integration on kfake + chDB + real HTTP receivers, with -race.
test: deps chdb test-tools helm-check
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 40m ./...

build: deps
	$(GO) build -o bin/webhookd ./cmd/webhookd

deps:
	$(GO) mod download

## test-reliability: crashes under load (3 SIGKILLs during 50,000 events × 2 pipelines), a rebalance
## between replicas with a takeover, and the receiver fault matrix; a few minutes.
test-reliability: deps chdb
	$(GO) vet -tags reliability ./e2e
	$(GO) test -race -count=1 -timeout 30m -tags reliability -run Reliability -v ./e2e

## chdb: fetch libchdb.so into .cache (once).
chdb: $(CHDB_LIB)
$(CHDB_LIB):
	./scripts/fetch-chdb.sh $(CHDB_VERSION)

## helm: build the pinned helm v3 into .cache (once; a few minutes on a fresh machine).
helm: $(HELM)
$(HELM):
	GOBIN=$(dir $(HELM)) GOFLAGS=-mod=mod $(GO) install -ldflags "-s -w \
		-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
		-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$(word 1,$(subst ., ,$(HELM_K8S))) \
		-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(word 2,$(subst ., ,$(HELM_K8S))) \
		-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$(word 1,$(subst ., ,$(HELM_K8S))) \
		-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(word 2,$(subst ., ,$(HELM_K8S)))" \
		helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

## helm-check: helm lint --strict and helm template of the chart with its defaults and each ci/*.yaml value set.
## (deploy/helm's Go test decodes what they render into the Kubernetes API types.)
helm-check: helm
	$(HELM) lint --strict $(CHART)
	@set -e; for f in $(CHART)/ci/*.yaml; do \
		echo "helm lint/template -f $$f"; \
		$(HELM) lint --strict $(CHART) -f $$f >/dev/null; \
		$(HELM) template webhookd $(CHART) -f $$f >/dev/null; \
	done

## test-tools: the spec's verification snippets run in Node, Python and PHP; jsonwebtoken verifies JWTs, standardwebhooks (the reference library) Standard Webhooks signatures.
test-tools:
	./scripts/test-tools.sh

## fuzz: run each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./template -run '^$$' -fuzz FuzzParseBody -fuzztime $(FUZZTIME)
	$(GO) test ./template -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./template -run '^$$' -fuzz FuzzQuoteJSON -fuzztime $(FUZZTIME)
	$(GO) test ./event -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./event -run '^$$' -fuzz FuzzFastEnvelopeMatchesEncodingJSON -fuzztime $(FUZZTIME)
	$(GO) test ./pipeline -run '^$$' -fuzz FuzzDecodePipeline -fuzztime $(FUZZTIME)
	$(GO) test ./filter -run '^$$' -fuzz FuzzParseFilter -fuzztime $(FUZZTIME)
	$(GO) test ./strictjson -run '^$$' -fuzz FuzzStrictDecode -fuzztime $(FUZZTIME)
	$(GO) test ./delivery -run '^$$' -fuzz FuzzDecodeTask -fuzztime $(FUZZTIME)
	$(GO) test ./delivery -run '^$$' -fuzz FuzzRecordJSON -fuzztime $(FUZZTIME)
	$(GO) test ./jobs -run '^$$' -fuzz FuzzDecodeJob -fuzztime $(FUZZTIME)
	$(GO) test ./ordering -run '^$$' -fuzz FuzzDecodeEntry -fuzztime $(FUZZTIME)
	$(GO) test ./dispatcher -run '^$$' -fuzz FuzzRedact -fuzztime $(FUZZTIME)
	$(GO) test ./app -run '^$$' -fuzz FuzzAdminAPI -fuzztime $(FUZZTIME)
	$(GO) test ./dispatcher -run '^$$' -fuzz FuzzInetAton -fuzztime $(FUZZTIME)
	$(GO) test ./dispatcher -run '^$$' -fuzz FuzzCheckHost -fuzztime $(FUZZTIME)
	$(GO) test ./signing -run '^$$' -fuzz FuzzParseSecret -fuzztime $(FUZZTIME)
	$(GO) test ./opevents -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./config -run '^$$' -fuzz FuzzParseYAML -fuzztime $(FUZZTIME)
	$(GO) test ./analytics -run '^$$' -fuzz FuzzWithOrigin -fuzztime $(FUZZTIME)
	$(GO) test ./analytics -run '^$$' -fuzz FuzzFeedRow -fuzztime $(FUZZTIME)
	$(GO) test ./analytics -run '^$$' -fuzz FuzzRangeParams -fuzztime $(FUZZTIME)
	$(GO) test ./analytics -run '^$$' -fuzz FuzzParseTTL -fuzztime $(FUZZTIME)
	$(GO) test ./analytics -run '^$$' -fuzz FuzzCanonicalRecord -fuzztime $(FUZZTIME)
	$(GO) test ./analytics -run '^$$' -fuzz FuzzHistQuantiles -fuzztime $(FUZZTIME)
	$(GO) test ./analytics -run '^$$' -fuzz FuzzDecodeCompactRows -fuzztime $(FUZZTIME)
	$(GO) test ./lease -run '^$$' -fuzz FuzzApply -fuzztime $(FUZZTIME)
	$(GO) test ./memlimit -run '^$$' -fuzz FuzzParseCgroupLimit -fuzztime $(FUZZTIME)
	$(GO) test ./memlimit -run '^$$' -fuzz FuzzCgroupPaths -fuzztime $(FUZZTIME)

## bench: webhookd end to end (broker, receiver, webhookd and load generator as separate processes)
## against a bare HTTP client in the same run; prints a table and writes bench-results.json.
## BENCHFLAGS: e.g. -events 50000 -backlog 100000 for a shorter run.
BENCHFLAGS ?=
bench: build chdb
	$(GO) build -o bin/ ./cmd/devkafka ./cmd/bench
	./bin/bench run -bin bin -out bench-results.json $(BENCHFLAGS)

## bench-stats: loads 10 M attempt rows (and their executions) into chDB and reports the
## median of the stats, time series, pipeline and log queries, and the load rate (not in `make test`).
## WEBHOOKD_BENCH_STATS_DIR=dir keeps the load and reuses it (same size; an older schema is migrated): only the queries run.
## WEBHOOKD_BENCH_STATS_RUNS=n runs each query n times (5); wall and process CPU medians are reported.
bench-stats: chdb
	WEBHOOKD_BENCH_STATS_ATTEMPTS=$${ATTEMPTS:-10000000} $(GO) test -run '^$$' -bench BenchmarkStatsQueries -benchtime 1x -timeout 60m -v ./analytics

## bench-go: the Go micro-benchmarks (render, sign, encode).
bench-go: chdb
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin data
