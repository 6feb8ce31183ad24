package wiring

import (
	"cmp"
	"fmt"
	"os"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentstring"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// ConsentStrings loads the mapping of TCF and GPP consent strings
// (PIPELINE_CONSENT_STRINGS_FILE, or the checked-in
// schemas/consent-strings.json).
func ConsentStrings(cfg config.Config) (*consentstring.Mapping, error) {
	b := schemas.ConsentStringsJSON()
	if f := cfg.Consent.StringsFile; f != "" {
		var err error
		if b, err = os.ReadFile(f); err != nil {
			return nil, fmt.Errorf("consent strings mapping: %w", err)
		}
	}
	m, err := consentstring.Load(b)
	if err != nil {
		return nil, fmt.Errorf("consent strings mapping %s: %w", cmp.Or(cfg.Consent.StringsFile, "schemas/consent-strings.json"), err)
	}
	return m, nil
}
