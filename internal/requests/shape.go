package requests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Filing is what a caller asks for, in either accepted shape, before it
// becomes a Request (the subject is named by the API route, never by the
// body).
type Filing struct {
	Kind   Kind
	Regime Regime
	// ID is the request id: from the caller's id (idempotency key) or the
	// agent's request id, else empty (a fresh one is made).
	ID string
	// Verified: the caller vouches that it verified the subject.
	Verified bool
	// Source is "api" or "drp".
	Source         string
	AgentRequestID string
	StatusCallback string
}

// OwnShape is our request body:
//
//	{"kind": "erasure", "regime": "gdpr", "id": "ticket-123", "verified": true}
//
// kind defaults to the route's (erasure or access), regime to the
// configured default, verified to false.
type OwnShape struct {
	Kind     Kind   `json:"kind,omitempty"`
	Regime   Regime `json:"regime,omitempty"`
	ID       string `json:"id,omitempty"`
	Verified bool   `json:"verified,omitempty"`
}

// DRPShape is a Data Rights Protocol (1.0 / 0.9.4) exercise request. Only
// the fields below are read; the identity attributes the protocol carries
// (name, email, phone_number, address, ...) are personal data the
// pipeline does not need and never stores: the deploying company has
// matched them to the subject id of the route.
type DRPShape struct {
	Version        string          `json:"drp.version"`
	Exercise       json.RawMessage `json:"exercise"`
	Regime         string          `json:"regime,omitempty"`
	AgentRequestID string          `json:"agent-request-id,omitempty"`
	StatusCallback string          `json:"status_callback,omitempty"`
}

// drpExercises maps the protocol's rights to our kinds.
var drpExercises = map[string]Kind{
	"deletion": Erasure, "access": Access, "access:categories": Access, "access:specific": Access,
}

// ParseFiling reads a request body in our shape or the Data Rights
// Protocol's (told apart by its "drp.version" or "exercise" field).
// defKind is the route's kind (empty: the body must name it), defRegime the
// configured default regime.
func ParseFiling(body []byte, defKind Kind, defRegime Regime) (Filing, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return Filing{}, fmt.Errorf("%w: body is not a JSON object: %w", ErrInvalid, err)
	}
	_, v := probe["drp.version"]
	_, ex := probe["exercise"]
	if v || ex {
		return parseDRP(body, defKind)
	}
	var o OwnShape
	if err := decodeStrict(body, &o); err != nil {
		return Filing{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	f := Filing{Kind: o.Kind, Regime: o.Regime, Verified: o.Verified, Source: "api"}
	if f.Kind == "" {
		f.Kind = defKind
	}
	if f.Regime == "" {
		f.Regime = defRegime
	}
	if o.ID != "" {
		id, err := ClientID(o.ID)
		if err != nil {
			return Filing{}, err
		}
		f.ID = id
	}
	return f, f.check(defKind)
}

func parseDRP(body []byte, defKind Kind) (Filing, error) {
	var d DRPShape
	if err := json.Unmarshal(body, &d); err != nil {
		return Filing{}, fmt.Errorf("%w: Data Rights Protocol request: %w", ErrInvalid, err)
	}
	// exercise is a string (1.0) or a list of one (0.5 and earlier).
	var ex string
	if err := json.Unmarshal(d.Exercise, &ex); err != nil {
		var list []string
		if err := json.Unmarshal(d.Exercise, &list); err != nil || len(list) != 1 {
			return Filing{}, fmt.Errorf("%w: Data Rights Protocol request: exercise must be one right", ErrInvalid)
		}
		ex = list[0]
	}
	kind, ok := drpExercises[ex]
	if !ok {
		if ex == "sale:opt-out" || ex == "sale:opt-in" {
			return Filing{}, fmt.Errorf("%w: exercise %q is a consent choice: use PUT /v1/subjects/{subject}/consents/third_party_sharing", ErrInvalid, ex)
		}
		return Filing{}, fmt.Errorf("%w: exercise %q (want deletion, access, access:categories or access:specific)", ErrInvalid, ex)
	}
	f := Filing{Kind: kind, Source: "drp", AgentRequestID: d.AgentRequestID, StatusCallback: d.StatusCallback}
	switch d.Regime {
	case "", "voluntary":
		f.Regime = Voluntary
	case "ccpa":
		f.Regime = CCPA
	default:
		if !isRegime(Regime(d.Regime)) {
			return Filing{}, fmt.Errorf("%w: regime %q (want ccpa or voluntary, or one of %v)", ErrInvalid, d.Regime, Regimes)
		}
		f.Regime = Regime(d.Regime)
	}
	if d.AgentRequestID != "" {
		id, err := ClientID("drp-" + d.AgentRequestID)
		if err != nil {
			return Filing{}, fmt.Errorf("%w: agent-request-id must be 1 to 60 characters of A-Z a-z 0-9 . _ -", ErrInvalid)
		}
		f.ID = id
	}
	if len(d.StatusCallback) > 2048 {
		return Filing{}, fmt.Errorf("%w: status_callback longer than 2048 bytes", ErrInvalid)
	}
	return f, f.check(defKind)
}

func isRegime(r Regime) bool {
	for _, x := range Regimes {
		if x == r {
			return true
		}
	}
	return false
}

func (f Filing) check(route Kind) error {
	switch {
	case f.Kind == "":
		return fmt.Errorf("%w: kind missing (want one of %v)", ErrInvalid, Kinds)
	case !(f.Kind == Erasure || f.Kind == Access || f.Kind == Portability):
		return fmt.Errorf("%w: kind %q (want one of %v)", ErrInvalid, f.Kind, Kinds)
	case route == Erasure && f.Kind != Erasure, route == Access && !f.Kind.Exports():
		return fmt.Errorf("%w: kind %q on the %s route", ErrInvalid, f.Kind, route)
	case !isRegime(f.Regime):
		return fmt.Errorf("%w: regime %q (want one of %v)", ErrInvalid, f.Regime, Regimes)
	}
	return nil
}

// DRPStatus is a request's status in the Data Rights Protocol's response
// shape.
type DRPStatus struct {
	RequestID         string `json:"request_id"`
	AgentRequestID    string `json:"agent-request-id,omitempty"`
	Status            string `json:"status"`
	Reason            string `json:"reason,omitempty"`
	ReceivedAt        string `json:"received_at"`
	ExpectedBy        string `json:"expected_by"`
	ProcessingDetails string `json:"processing_details,omitempty"`
}

// DRP returns r in the protocol's response shape.
func (r Request) DRP() DRPStatus {
	st := map[Status]string{Received: "open", Verified: "open", InProgress: "in_progress", Extended: "in_progress",
		Done: "fulfilled", Refused: "denied"}[r.Status]
	s := DRPStatus{RequestID: r.ID, AgentRequestID: r.AgentRequestID, Status: st,
		ReceivedAt: time.UnixMilli(r.ReceivedMS).UTC().Format(time.RFC3339), ExpectedBy: r.Deadline().UTC().Format(time.RFC3339)}
	switch r.Status {
	case Refused:
		s.Reason, s.ProcessingDetails = "other", r.Reason
	case Extended:
		s.ProcessingDetails = "deadline extended: " + r.Reason
	case Received:
		s.ProcessingDetails = "awaiting verification of the subject's identity"
	}
	return s
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
