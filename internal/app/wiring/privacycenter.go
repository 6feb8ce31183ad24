package wiring

import (
	"context"

	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentapi"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/privacycenter"
	"github.com/privacy-pipeline/pipeline/internal/privacycenter/link"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestapi"
	"github.com/privacy-pipeline/pipeline/internal/ropa"
	"github.com/privacy-pipeline/pipeline/topology"
)

// PrivacyCenter builds the privacy center of the consent API's server
// (nil when PIPELINE_PRIVACY_CENTER_LINK_KEY_FILE is unset): the link
// sealer from the key file, the record of processing of the configured
// policy (what 'pipeline ropa' prints), and the consent and requests API
// in process as privacycenter.Principal, with its sessions in rdb (the
// consent store's Redis).
func PrivacyCenter(cfg config.Config, api *consentapi.Server, rapi *requestapi.Server, guard *httpauth.Guard, rdb redis.UniversalClient,
	reg prometheus.Registerer, log *slog.Logger) (*privacycenter.Server, error) {
	pc := cfg.PrivacyCenter
	if pc.LinkKeyFile == "" {
		return nil, nil
	}
	sealer, err := LinkSealer(cfg)
	if err != nil {
		return nil, err
	}
	rec, err := Record(cfg)
	if err != nil {
		return nil, err
	}
	inner := http.NewServeMux()
	inner.Handle("/v1/", api.HandlerAs(privacycenter.Principal))
	rapi.RegisterAs(inner, privacycenter.Principal)
	return privacycenter.New(privacycenter.Config{Sealer: sealer, API: inner, Record: rec, Guard: guard,
		Sessions: privacycenter.NewSessions(rdb, pc.KeyPrefix), ClientIPHeader: pc.ClientIPHeader,
		MetricsURLs: pc.MetricsURLs, PublicURL: pc.PublicURL, SecureCookies: pc.SecureCookies, Registerer: reg, Log: log})
}

// LinkSealer opens PIPELINE_PRIVACY_CENTER_LINK_KEY_FILE (a Tink
// AES-256-GCM keyset, mode 0600, 'pipeline keys link new'); opts follow
// the configured maximum lifetime.
func LinkSealer(cfg config.Config, opts ...link.Option) (*link.Sealer, error) {
	k, err := subjectkey.LoadKEKFile(cfg.PrivacyCenter.LinkKeyFile)
	if err != nil {
		return nil, fmt.Errorf("privacy center link key: %w", err)
	}
	return link.New(aeadOf{k}, append([]link.Option{link.WithMaxTTL(cfg.PrivacyCenter.LinkMaxTTL)}, opts...)...)
}

// aeadOf is a key file as a tink.AEAD.
type aeadOf struct{ k *subjectkey.FileKMS }

func (a aeadOf) Encrypt(pt, ad []byte) ([]byte, error) {
	return a.k.EncryptWithContext(context.Background(), pt, ad)
}

func (a aeadOf) Decrypt(ct, ad []byte) ([]byte, error) {
	return a.k.DecryptWithContext(context.Background(), ct, ad)
}

// Record is the record of processing of the configuration (the policy,
// the raw schema, the names and the topology), without the controller's
// identity or transfers ('pipeline ropa' adds those).
func Record(cfg config.Config) (ropa.Record, error) {
	raw, pol, err := LoadPolicy(cfg)
	if err != nil {
		return ropa.Record{}, err
	}
	names, err := Names(cfg)
	if err != nil {
		return ropa.Record{}, err
	}
	t, err := Topology(cfg, topology.Options{})
	if err != nil {
		return ropa.Record{}, err
	}
	return ropa.Build(ropa.Inputs{Raw: raw, Policy: pol, Names: names, Topology: t})
}
