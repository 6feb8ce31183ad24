package wiring

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/tlsfiles"
)

// APIGuard builds the consent API's guard (authentication, scopes, rate
// limits, access log; metrics on reg when set) and, when a certificate is
// configured, its TLS listener configuration (nil: plain HTTP), from
// PIPELINE_CONSENT_API_*. Mutual TLS needs TLS and a client CA.
func APIGuard(c config.ConsentAPI, log *slog.Logger, reg prometheus.Registerer) (*httpauth.Guard, *tls.Config, error) {
	mode, err := httpauth.ParseMode(c.Auth)
	if err != nil {
		return nil, nil, fmt.Errorf("PIPELINE_CONSENT_API_AUTH: %w", err)
	}
	var tc *tls.Config
	if c.TLSCertFile != "" || c.TLSKeyFile != "" {
		tc, err = tlsfiles.Server(c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile, func(err error) {
			log.Error("consent API certificate not reloaded; the previous one is served", "err", err)
		})
		if err != nil {
			return nil, nil, fmt.Errorf("PIPELINE_CONSENT_API_TLS_*: %w", err)
		}
	} else if c.TLSClientCAFile != "" {
		return nil, nil, errors.New("PIPELINE_CONSENT_API_TLS_CLIENT_CA_FILE needs PIPELINE_CONSENT_API_TLS_CERT_FILE and _KEY_FILE")
	}
	if mode.MTLS && (tc == nil || c.TLSClientCAFile == "") {
		return nil, nil, errors.New("PIPELINE_CONSENT_API_AUTH=mtls needs TLS with a client CA (PIPELINE_CONSENT_API_TLS_CERT_FILE, _KEY_FILE, _TLS_CLIENT_CA_FILE)")
	}
	var key []byte
	if c.LogKeyFile != "" {
		k, err := tlsfiles.Secret(c.LogKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("PIPELINE_CONSENT_API_LOG_KEY_FILE: %w", err)
		}
		key = []byte(k)
	}
	var m *httpauth.Metrics
	if reg != nil {
		m = httpauth.NewMetrics(reg)
	}
	g, err := httpauth.New(httpauth.Config{Mode: mode, File: c.AuthFile, Rate: c.RateLimit, Burst: c.RateBurst, LogKey: key, Log: log, Metrics: m})
	if err != nil {
		return nil, nil, err
	}
	if mode.None() {
		log.Warn("the consent API authenticates nobody (PIPELINE_CONSENT_API_AUTH=none): anyone who reaches it can change any subject's consent")
	}
	return g, tc, nil
}
